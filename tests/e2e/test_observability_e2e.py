"""Metrics, activity and the loading status end to end: the real CLI, real llama-server children."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.daemon import Daemon, start_daemon, wait_gone

pytestmark = pytest.mark.real_llama

FLAGS = "--host 127.0.0.1 --port ${PORT} -np 2 -t 1 -c 1024 --no-webui --sse-ping-interval 1"
CHAT = "/v1/chat/completions"


@pytest.fixture
def daemon(tmp_path: Path, llama_server_bin: Path, tiny_models: Path) -> Iterator[Daemon]:
    # tiny-b loads in ~20 ms, below the loading status's grace period: the sleep makes its load
    # long enough to be reported (sh execs llama-server, so swapd still stops the server itself).
    text = f"""
healthCheckTimeout: 20
startPort: 21400
sendLoadingState: false
models:
  tiny-a:
    cmd: {llama_server_bin} -m {tiny_models}/tiny-a.gguf {FLAGS}
  tiny-b:
    cmd: /bin/sh -c "sleep 1.5; exec {llama_server_bin} -m {tiny_models}/tiny-b.gguf {FLAGS}"
    sendLoadingState: true
"""
    config = tmp_path / "swapd.yaml"
    config.write_text(text)
    d = start_daemon(config, tmp_path)
    yield d
    rc = d.stop()
    assert rc == 0, d.log()
    assert wait_gone(d.children_seen) == [], "a model process outlived swapd"


def _chat(model: str, **kw: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 6,
        "temperature": 0,
    }
    body.update(kw)
    return body


async def _events(resp: aiohttp.ClientResponse) -> list[str]:
    """Every event's data, checking the stream is well-formed SSE on the way."""
    events: list[str] = []
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                events.append("\n".join(data))
                data = []
            continue
        assert line.startswith("data:"), f"not an SSE data line: {line!r}"
        data.append(line[5:].strip())
    assert data == [], "the stream ended inside an event"
    return events


async def _metrics(s: aiohttp.ClientSession, url: str) -> dict[tuple[str, frozenset[Any]], float]:
    async with s.get(url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _get(series: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


async def test_e2e_metrics_and_activity_show_requests_swaps_and_tokens(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(daemon.url + CHAT, json=_chat("tiny-a")) as r:
            assert r.status == 200, await r.text()
            usage = (await r.json())["usage"]
        async with s.post(daemon.url + CHAT, json=_chat("tiny-a", stream=True)) as r:
            assert r.status == 200
            events = await _events(r)
        assert events[-1] == "[DONE]"
        assert not any(_reasoning(e) for e in events[:-1]), "tiny-a has no loading status"

        series = await _metrics(s, daemon.url)
        chat = {"model": "tiny-a", "endpoint": CHAT}
        assert _get(series, "swapd_requests_total", status="200", **chat) == 2
        assert _get(series, "swapd_request_ttfb_seconds_count", **chat) == 2
        assert _get(series, "swapd_request_duration_seconds_count", **chat) == 2
        assert _get(series, "swapd_queue_wait_seconds_count", model="tiny-a") == 2
        assert _get(series, "swapd_swaps_total", model="tiny-a", result="ok") == 1
        assert _get(series, "swapd_swap_duration_seconds_count", model="tiny-a") == 1
        assert _get(series, "swapd_swap_ready_seconds_sum", model="tiny-a") > 0
        assert _get(series, "swapd_model_state", model="tiny-a", state="ready") == 1
        assert _get(series, "swapd_model_state", model="tiny-b", state="stopped") == 1
        # The plain answer's usage plus the stream's (counted from llama.cpp's timings).
        assert _get(series, "swapd_tokens_in_total", model="tiny-a") == 2 * usage["prompt_tokens"]
        assert _get(series, "swapd_tokens_out_total", model="tiny-a") == 6 + 6
        assert _get(series, "swapd_generation_tokens_per_second_count", model="tiny-a") == 2

        async with s.get(daemon.url + "/api/activity?model=tiny-a") as r:
            records = (await r.json())["activity"]
        assert [(r["status"], r["streamed"]) for r in records] == [(200, True), (200, False)]
        for record in records:
            assert record["tokens_in"] == usage["prompt_tokens"]
            assert record["tokens_out"] == 6
            assert record["tokens_per_s"] > 0
            assert record["ttfb_s"] <= record["total_s"]
        # The first request waited for tiny-a to load; the second found it ready.
        assert records[1]["queue_wait_s"] > records[0]["queue_wait_s"]


async def test_e2e_loading_status_then_the_answer_in_one_stream(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        body = _chat("tiny-b", stream=True, stream_options={"include_usage": True})
        async with s.post(daemon.url + CHAT, json=body) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            events = await _events(r)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert all("error" not in c for c in chunks), chunks
        reasoning = [t for c in chunks if (t := _reasoning_of(c))]
        content = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert reasoning[0].startswith("━━━━━\nswapd loading model: tiny-b\n")
        assert len(reasoning) >= 2, reasoning  # a tick at least every second of the 1.5 s load
        assert reasoning[-1].startswith("Done! (")
        # Every progress chunk comes before the model's first chunk.
        first_answer = next(i for i, c in enumerate(chunks) if not _reasoning_of(c))
        assert all(not _reasoning_of(c) for c in chunks[first_answer:])
        assert content
        assert chunks[-1]["usage"]["completion_tokens"] == 6

        async with s.get(daemon.url + "/api/activity?model=tiny-b") as r:
            (record,) = (await r.json())["activity"]
        assert (record["status"], record["streamed"]) == (200, True)
        assert record["tokens_out"] == 6
        assert record["queue_wait_s"] > 1.0
        series = await _metrics(s, daemon.url)
        assert _get(series, "swapd_swaps_total", model="tiny-b", result="ok") == 1
        assert _get(series, "swapd_swap_ready_seconds_sum", model="tiny-b") > 1.0
        assert _get(series, "swapd_tokens_out_total", model="tiny-b") == 6


def _reasoning_of(chunk: dict[str, Any]) -> str | None:
    choices = chunk.get("choices") or [{}]
    text = choices[0].get("delta", {}).get("reasoning_content")
    return text if isinstance(text, str) and text else None


def _reasoning(event: str) -> str | None:
    return None if event == "[DONE]" else _reasoning_of(json.loads(event))
