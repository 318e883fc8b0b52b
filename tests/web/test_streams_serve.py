"""Logs and events through app.serve(): the hub on the root logger, real (fake-upstream)
children, and a shutdown that does not wait on open streams."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import aiohttp
import pytest

from swapd.app import SHUTDOWN_GRACE_S
from swapd.obs.logs import LogHub
from tests.fakes.fake_nvml import GIB, FakeGpu, FakeNvml
from tests.gpu.harness import chat, model, running_swapd, write_config


@pytest.fixture(autouse=True)
def info_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # as the CLI's default logLevel; pytest leaves WARNING


def _hubs() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, LogHub)]


async def _sse_events(resp: aiohttp.ClientResponse, until: str) -> list[tuple[str, dict]]:
    """(event, data) pairs up to and including the first `until` event."""
    found: list[tuple[str, dict]] = []
    event = ""
    async with asyncio.timeout(10):
        while True:
            line = (await resp.content.readline()).decode()
            assert line, "stream ended early"
            if line.startswith("event: "):
                event = line[7:].strip()
            elif line.startswith("data: "):
                found.append((event, json.loads(line[6:])))
                if event == until:
                    return found


async def test_logs_and_events_of_a_model_start_and_a_quick_shutdown(tmp_path: Path) -> None:
    nvml = FakeNvml(gpus=[FakeGpu(total=24 * GIB)], live=True)
    config = write_config(tmp_path, model("a", 1024) + model("b", 1024))
    async with aiohttp.ClientSession() as http:
        async with running_swapd(config, nvml) as (base, call):
            assert len(_hubs()) == 1
            events = await http.get(base + "/api/events")
            snapshot = await _sse_events(events, "snapshot")
            assert ("model", {"model": "a", "state": "stopped", "reason": None}) in snapshot
            assert [e for e, _ in snapshot].count("gpu") == 1
            log_stream = await http.get(base + "/logs/stream/a")

            assert (await call("POST", "/v1/chat/completions", chat("a")))[0] == 200

            states = [
                d["state"]
                for e, d in await _sse_events(events, "activity")
                if e == "model" and d["model"] == "a"
            ]
            assert states == ["starting", "ready"]
            async with asyncio.timeout(10):
                first = (await log_stream.content.readline()).decode()
            assert first.startswith("listening on http://127.0.0.1:")

            async with http.get(base + "/logs") as resp:
                text = await resp.text()
            assert "swapd.app: listening on http://127.0.0.1:" in text
            assert "swapd.child: a | listening on http://127.0.0.1:" in text
            async with http.get(base + "/logs?model=a") as resp:
                assert (await resp.text()).startswith("listening on http://127.0.0.1:")
            started = time.monotonic()
        # serve() has returned, with both streams still open.
        took = time.monotonic() - started
        assert took < SHUTDOWN_GRACE_S / 2, f"shutdown waited {took:.1f}s on open streams"
        async with asyncio.timeout(5):
            await events.content.read()  # ended cleanly: no payload error
            await log_stream.content.read()
        events.close()
        log_stream.close()
    assert _hubs() == []
