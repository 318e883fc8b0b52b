"""swapd end to end: the real CLI, real llama-server children, real tiny GGUF models."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.e2e.daemon import Daemon, start_daemon, wait_gone

pytestmark = pytest.mark.real_llama

FLAGS = "--host 127.0.0.1 --port ${PORT} -np 2 -t 1 -c 1024 --no-webui --sse-ping-interval 1"


def _write_config(tmp: Path, bin_path: Path, models: Path, extra_models: str = "") -> Path:
    text = f"""
healthCheckTimeout: 20
startPort: 21000
models:
  tiny-a:
    cmd: |
      {bin_path} -m {models}/tiny-a.gguf
      {FLAGS}
    aliases: [alpha]
  tiny-b:
    cmd: {bin_path} -m {models}/tiny-b.gguf {FLAGS} --embeddings --pooling mean
    name: Tiny B
    description: the embedding-capable one
  hidden:
    cmd: {bin_path} -m {models}/tiny-c.gguf {FLAGS}
    unlisted: true
  broken:
    cmd: {bin_path} -m {models}/does-not-exist.gguf {FLAGS}
{extra_models}
"""
    path = tmp / "swapd.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def daemon(tmp_path: Path, llama_server_bin: Path, tiny_models: Path) -> Iterator[Daemon]:
    d = start_daemon(_write_config(tmp_path, llama_server_bin, tiny_models), tmp_path)
    yield d
    rc = d.stop()
    assert rc == 0, d.log()
    assert wait_gone(d.children_seen) == [], "a model process outlived swapd"


def _chat(model: str, **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    body.update(kw)
    return body


async def _running(session: aiohttp.ClientSession, url: str) -> dict[str, str]:
    async with session.get(url + "/running") as r:
        assert r.status == 200
        data = await r.json()
    return {e["model"]: e["state"] for e in data["running"]}


async def test_e2e_cold_start_chat_then_swap(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        assert await _running(s, daemon.url) == {}
        async with s.post(daemon.url + "/v1/chat/completions", json=_chat("tiny-a")) as r:
            assert r.status == 200, await r.text()
            data = await r.json()
        assert data["object"] == "chat.completion"
        assert data["choices"][0]["finish_reason"] == "length"
        assert data["usage"]["completion_tokens"] == 8
        assert await _running(s, daemon.url) == {"tiny-a": "ready"}
        pids_a = {p.pid for p in daemon.descendants()}
        assert len(pids_a) == 1

        async with s.post(
            daemon.url + "/v1/completions",
            json={"model": "tiny-b", "prompt": "Hi", "max_tokens": 4},
        ) as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["object"] == "text_completion"
        assert await _running(s, daemon.url) == {"tiny-b": "ready"}
        assert wait_gone(pids_a) == [], "tiny-a's llama-server was not stopped by the swap"


async def test_e2e_alias_and_streaming_chat(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        body = _chat("alpha", stream=True, max_tokens=6)
        async with s.post(daemon.url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            events = []
            async for line in r.content:
                text = line.decode().strip()
                if text.startswith("data: "):
                    events.append(text[6:])
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
        assert len(content) == 6
        assert await _running(s, daemon.url) == {"tiny-a": "ready"}


async def test_e2e_back_to_back_streams_reuse_no_dead_connection(daemon: Daemon) -> None:
    # llama-server may close a kept-alive connection right after a stream ends; swapd must never
    # hand such a connection to the next request (that would surface as a 502).
    async with aiohttp.ClientSession() as s:
        for i in range(30):
            body = _chat("tiny-a", stream=i % 2 == 0, max_tokens=2)
            async with s.post(daemon.url + "/v1/chat/completions", json=body) as r:
                assert r.status == 200, (i, await r.text())
                text = await r.text()
            if i % 2 == 0:
                assert text.rstrip().endswith("data: [DONE]"), (i, text)
            else:
                assert json.loads(text)["usage"]["completion_tokens"] == 2


async def test_e2e_embeddings(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        body = {"model": "tiny-b", "input": ["hello", "world"]}
        async with s.post(daemon.url + "/v1/embeddings", json=body) as r:
            assert r.status == 200, await r.text()
            data = await r.json()
    vectors = [d["embedding"] for d in data["data"]]
    assert len(vectors) == 2
    assert all(len(v) == 64 for v in vectors)
    assert sum(x * x for x in vectors[0]) == pytest.approx(1.0, abs=1e-3)


async def test_e2e_models_listing_and_unload(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.url + "/v1/models") as r:
            listing = await r.json()
        ids = [m["id"] for m in listing["data"]]
        assert ids == ["broken", "tiny-a", "tiny-b"], "sorted, unlisted hidden"
        b = next(m for m in listing["data"] if m["id"] == "tiny-b")
        assert b["name"] == "Tiny B"
        assert b["status"]["value"] == "unloaded"

        async with s.post(daemon.url + "/v1/chat/completions", json=_chat("tiny-b")) as r:
            assert r.status == 200
        async with s.get(daemon.url + "/v1/models") as r:
            listing = await r.json()
        b = next(m for m in listing["data"] if m["id"] == "tiny-b")
        assert b["status"]["value"] == "loaded"
        assert b["meta"]["swapd"]["state"] == "ready"

        pids = {p.pid for p in daemon.descendants()}
        async with s.post(daemon.url + "/models/unload/tiny-b") as r:
            assert r.status == 200
        assert await _running(s, daemon.url) == {}
        assert wait_gone(pids) == []

        async with s.post(daemon.url + "/v1/chat/completions", json=_chat("hidden")) as r:
            assert r.status == 200, "unlisted models are still routable"
        async with s.get(daemon.url + "/unload") as r:
            assert r.status == 200
        assert await _running(s, daemon.url) == {}


async def test_e2e_child_that_fails_to_start(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(daemon.url + "/v1/chat/completions", json=_chat("broken")) as r:
            assert r.status == 503
            err = (await r.json())["error"]
        assert "broken" in err["message"]
        assert "exited with code 1" in err["message"]
        assert "does-not-exist.gguf" in err["message"], "the child's last log lines are quoted"
        async with s.get(daemon.url + "/v1/models") as r:
            listing = await r.json()
        broken = next(m for m in listing["data"] if m["id"] == "broken")
        assert broken["meta"]["swapd"]["state"] == "failed"
        # Another model still works afterwards.
        async with s.post(daemon.url + "/v1/chat/completions", json=_chat("tiny-a")) as r:
            assert r.status == 200


async def test_e2e_errors_are_openai_shaped(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(daemon.url + "/v1/chat/completions", json=_chat("nope")) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "model_not_found"
        async with s.post(
            daemon.url + "/v1/chat/completions",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ) as r:
            assert r.status == 400
            assert "error" in await r.json()


def test_e2e_sigkill_of_swapd_leaves_no_child(
    tmp_path: Path, llama_server_bin: Path, tiny_models: Path
) -> None:
    import urllib.request

    d = start_daemon(_write_config(tmp_path, llama_server_bin, tiny_models), tmp_path)
    req = urllib.request.Request(
        d.url + "/v1/chat/completions",
        data=json.dumps(_chat("tiny-a")).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    children = {p.pid for p in d.descendants()}
    assert children, "a llama-server child should be running"
    assert all("llama-server" in psutil.Process(p).name() for p in children)
    d.stop(signal.SIGKILL)
    assert wait_gone(children) == [], "llama-server survived swapd's SIGKILL"
