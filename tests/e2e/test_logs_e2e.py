"""Logs and events end to end: the real CLI, a real llama-server child, a real tiny model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.daemon import Daemon, start_daemon, wait_gone

pytestmark = pytest.mark.real_llama

FLAGS = "--host 127.0.0.1 --port ${PORT} -np 2 -t 1 -c 1024 --no-webui --sse-ping-interval 1"


@pytest.fixture
def daemon(tmp_path: Path, llama_server_bin: Path, tiny_models: Path) -> Iterator[Daemon]:
    config = tmp_path / "swapd.yaml"
    config.write_text(
        f"""
healthCheckTimeout: 20
models:
  tiny-a:
    cmd: {llama_server_bin} -m {tiny_models}/tiny-a.gguf {FLAGS}
    aliases: [alpha]
  org/tiny-b:
    cmd: {llama_server_bin} -m {tiny_models}/tiny-b.gguf {FLAGS}
"""
    )
    d = start_daemon(config, tmp_path)
    yield d
    rc = d.stop()
    assert rc == 0, d.log()
    assert wait_gone(d.children_seen) == [], "a model process outlived swapd"


def _chat(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 4,
        "temperature": 0,
    }


async def _post_chat(session: aiohttp.ClientSession, url: str, model: str) -> None:
    async with session.post(url + "/v1/chat/completions", json=_chat(model)) as r:
        assert r.status == 200, await r.text()
        await r.read()


async def _next_event(resp: aiohttp.ClientResponse) -> tuple[str, Any]:
    event, data = "", None
    while True:
        line = (await resp.content.readline()).decode()
        assert line, "the event stream ended"
        if line == "\n" and event:
            return event, data
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: "):
            data = json.loads(line[6:])


async def test_e2e_events_show_a_model_loading_for_a_request(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s, s.get(daemon.url + "/api/events") as events:
        assert events.status == 200
        assert events.content_type == "text/event-stream"
        states: list[str] = []
        async with asyncio.timeout(30):
            while (ev := await _next_event(events))[0] != "snapshot":
                if ev[0] == "model" and ev[1]["model"] == "org/tiny-b":
                    states.append(ev[1]["state"])
            request = asyncio.get_running_loop().create_task(
                _post_chat(s, daemon.url, "org/tiny-b")
            )
            activity = None
            while activity is None:
                kind, data = await _next_event(events)
                if kind == "model" and data["model"] == "org/tiny-b":
                    states.append(data["state"])
                elif kind == "activity":
                    activity = data
            await request
    assert states == ["stopped", "starting", "ready"]
    assert activity["model"] == "org/tiny-b"
    assert activity["status"] == 200


async def test_e2e_logs_hold_llama_servers_own_output(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        await _post_chat(s, daemon.url, "alpha")
        async with s.get(daemon.url + "/logs") as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            combined = await r.text()
        async with s.get(daemon.url + "/logs", params={"model": "tiny-a"}) as r:
            assert r.status == 200
            own = (await r.text()).splitlines()
    # swapd's own records and the child's lines, in one log.
    assert "swapd.app: listening on http://127.0.0.1:" in combined
    assert "swapd.child: tiny-a | " in combined
    # The model's log is llama-server's output as it printed it.
    assert any("listening on http://127.0.0.1:" in line for line in own), own[-20:]
    assert not any(line.startswith("tiny-a | ") for line in own)
    assert any("tiny-a | " + line in combined for line in own[-3:])


async def test_e2e_model_log_stream_delivers_a_new_line_live(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        await _post_chat(s, daemon.url, "org/tiny-b")  # loaded; its startup lines are history
        async with s.get(daemon.url + "/logs/stream/org/tiny-b?no-history") as stream:
            assert stream.status == 200
            await _post_chat(s, daemon.url, "org/tiny-b")
            async with asyncio.timeout(20):
                line = (await stream.content.readline()).decode()
        async with s.get(daemon.url + "/logs/stream/not-a-model") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "model_not_found"
    assert line.endswith("\n")
    assert not line.startswith("org/tiny-b | "), "a model's stream is its raw output"
    async with aiohttp.ClientSession() as s, s.get(daemon.url + "/logs?model=org/tiny-b") as r:
        assert line.rstrip("\n") in (await r.text()).splitlines()


async def test_e2e_shutdown_ends_open_streams(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        stream = await s.get(daemon.url + "/logs/stream")
        events = await s.get(daemon.url + "/api/events")
        await stream.content.readline()
        await events.content.readline()
        rc = await asyncio.get_running_loop().run_in_executor(None, daemon.stop)
        assert rc == 0
        async with asyncio.timeout(5):
            rest = (await stream.content.read()).decode()
            await events.content.read()
        stream.close()
        events.close()
    assert "swapd.app: shutting down" in rest
