"""The real llama-server with the real tiny model, no swapd in between.

These pin the facts the swapd end-to-end tests rely on: requests run exactly to max_tokens,
streams end with [DONE], embeddings work next to chat, bad models fail fast, SIGTERM on an
idle server exits 0. If one fails after a llama.cpp upgrade, the swapd e2e tests will too.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import (
    LlamaServer,
    free_port,
    make_tiny_gguf,
    start_llama_server,
)

pytestmark = pytest.mark.real_llama

N_EMBD = 64


@pytest.fixture(scope="module")
def server(
    llama_server_bin: Path, tiny_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    srv = start_llama_server(
        llama_server_bin, tiny_models / "tiny-a.gguf", tmp_path_factory.mktemp("direct")
    )
    yield srv
    assert srv.stop() == 0, srv.log()


def _chat(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "anything",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": max_tokens,
        **extra,
    }


async def _post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.status, await resp.json()


async def test_health_is_ok(server: LlamaServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + "/health") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def _model_ids(url: str) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(url + "/v1/models") as resp:
        assert resp.status == 200
        data = await resp.json()
    return [model["id"] for model in data["data"]]


async def test_model_id_is_the_m_argument_verbatim(server: LlamaServer, tiny_models: Path) -> None:
    # Not the base name: the path exactly as passed to -m.
    assert await _model_ids(server.url) == [str(tiny_models / "tiny-a.gguf")]


async def test_model_id_is_the_alias_when_given(
    llama_servers: Callable[..., LlamaServer], tiny_models: Path
) -> None:
    srv = llama_servers(tiny_models / "tiny-c.gguf", ["--alias", "tiny-c"])
    assert await _model_ids(srv.url) == ["tiny-c"]


@pytest.mark.parametrize("max_tokens", [1, 24])
@pytest.mark.parametrize("temperature", [0.0, None])
async def test_chat_runs_exactly_to_max_tokens(
    server: LlamaServer, max_tokens: int, temperature: float | None
) -> None:
    extra = {} if temperature is None else {"temperature": temperature}
    status, data = await _post(server.url + "/v1/chat/completions", _chat(max_tokens, **extra))
    assert status == 200, data
    assert data["object"] == "chat.completion"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == max_tokens
    content = choice["message"]["content"]
    assert content
    assert content.isascii()
    assert content.isprintable()


async def test_greedy_chat_is_deterministic(server: LlamaServer) -> None:
    texts = set()
    for _ in range(2):
        status, data = await _post(
            server.url + "/v1/chat/completions", _chat(16, temperature=0, cache_prompt=False)
        )
        assert status == 200, data
        texts.add(data["choices"][0]["message"]["content"])
    assert len(texts) == 1


async def test_chat_stream_has_one_content_chunk_per_token(server: LlamaServer) -> None:
    max_tokens = 20
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions", json=_chat(max_tokens, stream=True)
        ) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        body = (await resp.read()).decode()
    events = [
        line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([text for text in contents if text]) == max_tokens


async def test_stream_include_usage_reports_tokens(server: LlamaServer) -> None:
    body = _chat(5, stream=True, stream_options={"include_usage": True})
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/v1/chat/completions", json=body) as resp,
    ):
        text = (await resp.read()).decode()
    chunks = [
        json.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert usage[-1]["completion_tokens"] == 5


async def test_stream_end_closes_the_connection_despite_keep_alive(server: LlamaServer) -> None:
    """Upstream quirk swapd's proxy must cope with (found while writing these tests).

    llama-server answers a stream with "Keep-Alive: timeout=5" but closes the socket right
    after the last chunk. A pooled client (aiohttp) that reuses that connection at once fails
    with ServerDisconnectedError / "Can not write request body". Sending "Connection: close"
    on streaming requests (or not pooling them) avoids it.
    """
    payload = json.dumps(_chat(3, stream=True)).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # read() returns at EOF
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"Keep-Alive" in head
    assert b"Connection: close" not in head
    assert b"data: [DONE]" in rest


async def test_text_completion_runs_to_max_tokens(server: LlamaServer) -> None:
    status, data = await _post(
        server.url + "/v1/completions", {"prompt": "the world", "max_tokens": 16}
    )
    assert status == 200, data
    assert data["object"] == "text_completion"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 16


async def test_embeddings_are_unit_vectors(server: LlamaServer) -> None:
    status, data = await _post(server.url + "/v1/embeddings", {"input": ["hello world", "x"]})
    assert status == 200, data
    assert [item["index"] for item in data["data"]] == [0, 1]
    for item in data["data"]:
        vector = item["embedding"]
        assert len(vector) == N_EMBD
        assert math.sqrt(sum(x * x for x in vector)) == pytest.approx(1.0, abs=1e-3)


async def test_metrics_are_exposed(server: LlamaServer) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    assert "llamacpp:prompt_tokens_total" in text


def test_ready_quickly_and_sigterm_exits_zero(
    llama_server_bin: Path, tiny_models: Path, tmp_path: Path
) -> None:
    srv = start_llama_server(llama_server_bin, tiny_models / "tiny-b.gguf", tmp_path, wait=False)
    try:
        assert srv.wait_ready() < 5.0
    finally:
        assert srv.stop() == 0, srv.log()


def test_missing_model_exits_nonzero_quickly(llama_server_bin: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    result = subprocess.run(
        [
            str(llama_server_bin),
            "-m",
            str(tmp_path / "does-not-exist.gguf"),
            "--host",
            "127.0.0.1",
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert time.monotonic() - start < 5.0


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    first = make_tiny_gguf(tmp_path / "a.gguf", seed=7).read_bytes()
    again = make_tiny_gguf(tmp_path / "b.gguf", seed=7).read_bytes()
    other = make_tiny_gguf(tmp_path / "c.gguf", seed=8).read_bytes()
    assert first == again
    assert first != other
