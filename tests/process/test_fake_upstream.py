"""The fake upstream itself, as other test suites rely on it (run under a ModelProcess)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.process.conftest import MakeProcess, fake_spec


async def test_fake_upstream_endpoints(make_process: MakeProcess) -> None:
    spec = fake_spec("--chunks", "4", model="qwen")
    await make_process(spec).start()
    base = spec.proxy
    async with aiohttp.ClientSession() as http:
        chat = {"model": "q", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(base + "/v1/chat/completions", json=chat) as resp:
            body = await resp.json()
        assert body["object"] == "chat.completion"
        assert body["usage"]["total_tokens"] == 8
        assert body["served_by"] == "qwen"

        async with http.post(base + "/v1/chat/completions", json={**chat, "stream": True}) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            events = [line async for line in resp.content if line.startswith(b"data: ")]
        assert len(events) == 5
        assert events[-1] == b"data: [DONE]\n"
        first = json.loads(events[0].removeprefix(b"data: "))
        assert first["object"] == "chat.completion.chunk"
        assert first["choices"][0]["delta"]["role"] == "assistant"

        async with http.post(base + "/v1/completions", json={"prompt": "x"}) as resp:
            assert (await resp.json())["object"] == "text_completion"
        async with http.post(base + "/v1/embeddings", json={"input": ["a", "b"]}) as resp:
            assert len((await resp.json())["data"]) == 2

        headers = {"X-Probe": "1"}
        async with http.put(base + "/upstream/x?a=b", data="raw", headers=headers) as resp:
            echo = await resp.json()
        assert (echo["path"], echo["method"], echo["query"], echo["body"]) == (
            "/upstream/x",
            "PUT",
            "a=b",
            "raw",
        )
        assert echo["headers"]["X-Probe"] == "1"
        assert echo["model_served"] == echo["served_by"] == "qwen"


async def test_fake_upstream_crash_mid_stream(make_process: MakeProcess) -> None:
    exits: list[int] = []
    crashed = asyncio.Event()

    def on_exit(generation: int, detail: str) -> None:
        exits.append(generation)
        crashed.set()

    spec = fake_spec("--chunks", "10", "--crash-after-chunks", "2")
    await make_process(spec, on_unexpected_exit=on_exit).start()
    chat = {"messages": [], "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(spec.proxy + "/v1/chat/completions", json=chat) as resp,
    ):
        with pytest.raises(aiohttp.ClientPayloadError):
            async for _ in resp.content:
                pass
    async with asyncio.timeout(10):
        await crashed.wait()
    assert exits == [1]
