"""GET /logs, /logs/stream[/source] and /api/events, against the web fakes."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from swapd.core.state import ModelSnapshot, ModelState
from swapd.obs.activity import RequestRecord
from swapd.obs.hub import Observer
from swapd.obs.logs import CHILD_LOGGER
from swapd.web import streams
from swapd.web.context import CONTEXT

from .fake_router import FakeRouter

Client = TestClient[Any, Any]
CONFIG_ORDER = ["llama", "org", "org/qwen:7b", "hidden", "renamed", "filtered"]


def _obs(client: Client) -> Observer:
    obs = client.app[CONTEXT].obs
    obs.logs.bind(asyncio.get_running_loop())  # as app.serve() does when it installs the hub
    return obs


def _say(obs: Observer, msg: str, *, model: str | None = None) -> None:
    """Feed the hub one record, as swapd's logging would."""
    if model is None:
        record = logging.makeLogRecord(
            {"name": "swapd.router", "levelno": 20, "levelname": "INFO", "msg": msg}
        )
    else:
        record = logging.makeLogRecord(
            {
                "name": CHILD_LOGGER,
                "levelno": 20,
                "levelname": "INFO",
                "msg": "%s | %s",
                "args": (model, msg),
                "model": model,
            }
        )
    obs.logs.handle(record)


async def _line(resp: ClientResponse) -> str:
    async with asyncio.timeout(5):
        raw = await resp.content.readline()
    return raw.decode().rstrip("\n")


async def _eof(resp: ClientResponse) -> bytes:
    async with asyncio.timeout(5):
        return await resp.content.read()


def _snap(model: str, state: ModelState, in_flight: int = 0, queued: int = 0) -> ModelSnapshot:
    return ModelSnapshot(model=model, state=state, in_flight=in_flight, queued=queued)


# --- GET /logs -----------------------------------------------------------------------------------


async def test_logs_is_the_combined_history_as_text(client: Client) -> None:
    obs = _obs(client)
    _say(obs, "listening")
    _say(obs, "main: server is listening", model="llama")
    resp = await client.get("/logs")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    lines = (await resp.text()).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO    swapd.router: listening")
    assert lines[1].endswith(" INFO    swapd.child: llama | main: server is listening")


@pytest.mark.parametrize("name", ["org/qwen:7b", "qwen"])
async def test_logs_of_one_model_are_its_own_lines(client: Client, name: str) -> None:
    obs = _obs(client)
    _say(obs, "a", model="org/qwen:7b")
    _say(obs, "swapd line")
    _say(obs, "other", model="llama")
    _say(obs, "b", model="org/qwen:7b")
    resp = await client.get("/logs", params={"model": name})
    assert resp.status == 200
    assert await resp.text() == "a\nb\n"


async def test_logs_proxy_and_upstream_halves(client: Client) -> None:
    obs = _obs(client)
    _say(obs, "swapd line")
    _say(obs, "model line", model="llama")
    proxy = await (await client.get("/logs?model=proxy")).text()
    upstream = await (await client.get("/logs?model=upstream")).text()
    assert proxy.endswith("swapd.router: swapd line\n")
    assert proxy.count("\n") == 1
    assert upstream.endswith("swapd.child: llama | model line\n")
    assert upstream.count("\n") == 1


async def test_logs_of_an_unknown_model_is_an_openai_404(client: Client) -> None:
    resp = await client.get("/logs", params={"model": "lama"})
    assert resp.status == 404
    error = (await resp.json())["error"]
    assert error["code"] == "model_not_found"
    assert "'llama'" in error["message"]


async def test_a_model_that_never_printed_has_an_empty_log(client: Client) -> None:
    resp = await client.get("/logs?model=org")
    assert resp.status == 200
    assert await resp.text() == ""


# --- /logs/stream --------------------------------------------------------------------------------


async def test_stream_sends_history_then_live_lines(client: Client) -> None:
    obs = _obs(client)
    _say(obs, "old")
    async with client.get("/logs/stream") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert (await _line(resp)).endswith("swapd.router: old")
        _say(obs, "new", model="llama")
        assert (await _line(resp)).endswith("swapd.child: llama | new")
        _say(obs, "newer")
        assert (await _line(resp)).endswith("swapd.router: newer")
        obs.bus.close()  # shutdown: the stream ends cleanly
        assert await _eof(resp) == b""


async def test_stream_without_history(client: Client) -> None:
    obs = _obs(client)
    _say(obs, "old")
    async with client.get("/logs/stream?no-history") as resp:
        assert resp.status == 200
        await _subscribed(obs)
        _say(obs, "new")
        assert (await _line(resp)).endswith("swapd.router: new")
        obs.bus.close()
        assert await _eof(resp) == b""


async def _subscribed(obs: Observer, count: int = 1) -> None:
    """Wait until the handler subscribed (it does so before answering, but a client may see
    the headers only once the handler sends its first bytes)."""
    async with asyncio.timeout(5):
        while obs.bus.subscribers < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    "path", ["/logs/stream/org/qwen:7b", "/logs/stream/qwen", "/logs/stream?model=org/qwen:7b"]
)
async def test_stream_of_one_model_has_only_its_raw_output(client: Client, path: str) -> None:
    obs = _obs(client)
    _say(obs, "history line", model="org/qwen:7b")
    _say(obs, "not mine", model="org")
    async with client.get(path) as resp:
        assert resp.status == 200
        assert await _line(resp) == "history line"
        _say(obs, "swapd line")
        _say(obs, "other model", model="llama")
        _say(obs, "srv  update_slots: all slots are idle", model="org/qwen:7b")
        assert await _line(resp) == "srv  update_slots: all slots are idle"
        obs.bus.close()
        assert await _eof(resp) == b""


async def test_stream_of_an_unknown_model_is_an_openai_404(client: Client) -> None:
    resp = await client.get("/logs/stream/nope/nothing")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"


async def test_proxy_stream_has_only_swapds_lines(client: Client) -> None:
    obs = _obs(client)
    async with client.get("/logs/stream/proxy?no-history") as resp:
        await _subscribed(obs)
        _say(obs, "model line", model="llama")
        _say(obs, "swapd line")
        assert (await _line(resp)).endswith("swapd.router: swapd line")


async def test_a_slow_log_reader_is_cut_off_with_a_note(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "LOG_QUEUE", 3)
    obs = _obs(client)
    async with client.get("/logs/stream?no-history") as resp:
        await _subscribed(obs)
        for i in range(10):  # all before the handler runs again: its queue overflows
            _say(obs, f"line {i}")
        body = (await _eof(resp)).decode().splitlines()
    assert body[-1].startswith("swapd: this stream fell too far behind")
    assert [line.rsplit(" ", 1)[1] for line in body[:-1]] == ["1", "2"]
    assert obs.bus.subscribers == 0


async def test_a_client_that_stops_reading_is_dropped(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(streams, "WRITE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(streams, "LOG_QUEUE", 100_000)
    obs = _obs(client)
    obs.logs._lines = type(obs.logs._lines)(maxlen=10)  # keep memory small: only live lines
    chunk = "x" * 16_000
    async with client.get("/logs/stream?no-history") as resp:
        await _subscribed(obs)
        # Far more than the socket buffers hold, and the client reads none of it.
        async with asyncio.timeout(20):
            while obs.bus.subscribers:
                for _ in range(100):
                    _say(obs, chunk)
                await asyncio.sleep(0.01)
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):  # cut, not ended
            await _eof(resp)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_client_leaving_unsubscribes(client: Client) -> None:
    obs = _obs(client)
    resp = await client.get("/logs/stream")
    await _subscribed(obs)
    resp.close()
    async with asyncio.timeout(5):
        while obs.bus.subscribers:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


# --- /api/events ---------------------------------------------------------------------------------


@dataclass
class Event:
    event: str | None = None
    data: Any = None
    id: int | None = None
    comments: list[str] = field(default_factory=list)
    retry: int | None = None


async def _event(resp: ClientResponse) -> Event:
    ev = Event()
    data: list[str] = []
    while True:
        line = await _line(resp)
        if line == "":
            if ev.event is None and not data and not ev.comments and ev.retry is None:
                raise EOFError("stream ended")
            if data:
                ev.data = json.loads("\n".join(data))
            return ev
        if line.startswith(":"):
            ev.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(": ")
        if name == "event":
            ev.event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ev.id = int(value)
        elif name == "retry":
            ev.retry = int(value)
        else:
            raise AssertionError(f"unexpected SSE line {line!r}")


async def _until_snapshot(resp: ClientResponse) -> tuple[list[Event], Event]:
    events: list[Event] = []
    first = await _event(resp)
    assert first.retry == 3000
    while (ev := await _event(resp)).event != "snapshot":
        assert ev.id is None, "snapshot events carry no id"
        events.append(ev)
    return events, ev


class _Gpus:
    def model_view(self, model: str) -> dict[str, Any]:
        return {"gpus": None}

    def gpus_view(self, running: frozenset[str]) -> dict[str, Any]:
        return {"monitor": "nvml", "gpus": [{"index": 0, "models": sorted(running)}]}


async def test_events_start_with_a_snapshot_of_every_model_and_the_gpus(
    client: Client, router: FakeRouter
) -> None:
    router.snapshots = {
        "llama": _snap("llama", ModelState.READY, in_flight=2, queued=1),
        "org": ModelSnapshot(
            model="org", state=ModelState.FAILED, in_flight=0, queued=0, reason="exit 1"
        ),
    }
    router.gpu = _Gpus()
    async with client.get("/api/events") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Accel-Buffering"] == "no"
        snapshot, marker = await _until_snapshot(resp)
    models = [e for e in snapshot if e.event == "model"]
    queues = [e for e in snapshot if e.event == "queue"]
    assert [e.data["model"] for e in models] == CONFIG_ORDER
    assert [e.data["model"] for e in queues] == CONFIG_ORDER
    assert models[0].data == {"model": "llama", "state": "ready", "reason": None}
    assert models[1].data == {"model": "org", "state": "failed", "reason": "exit 1"}
    assert models[2].data["state"] == "stopped"
    assert queues[0].data == {"model": "llama", "in_flight": 2, "queued": 1}
    assert queues[2].data == {"model": "org/qwen:7b", "in_flight": 0, "queued": 0}
    (gpu,) = [e for e in snapshot if e.event == "gpu"]
    assert gpu.data == {"monitor": "nvml", "gpus": [{"index": 0, "models": ["llama"]}]}
    assert {e.event for e in snapshot} == {"model", "queue", "gpu"}, "no log lines by default"
    assert marker.data["kinds"] == ["activity", "gpu", "model", "queue", "swap"]


async def test_events_then_deliver_live_notices_with_ids(client: Client) -> None:
    obs = _obs(client)
    async with client.get("/api/events") as resp:
        _, marker = await _until_snapshot(resp)
        obs.models_changed({"llama": _snap("llama", ModelState.STARTING, queued=1)})
        obs.swap_started("llama", ("org",), "group")
        _say(obs, "not sent: log is not asked for")
        obs.models_changed({"llama": _snap("llama", ModelState.READY, in_flight=1)})
        obs.request_finished(
            RequestRecord(
                at=1.0,
                model="llama",
                endpoint="/v1/chat/completions",
                status=200,
                streamed=False,
                queue_wait_s=0.1,
                ttfb_s=0.2,
                total_s=0.3,
            )
        )
        got = [await _event(resp) for _ in range(6)]
    assert [(e.event, e.data.get("state")) for e in got] == [
        ("model", "starting"),
        ("queue", None),
        ("swap", None),
        ("model", "ready"),
        ("queue", None),
        ("activity", None),
    ]
    ids = [e.id for e in got]
    assert all(i is not None and i > marker.data["seq"] for i in ids)
    assert ids == sorted(ids)
    assert got[1].data == {"model": "llama", "in_flight": 0, "queued": 1}
    assert got[2].data["evict"] == ["org"]
    assert got[5].data["status"] == 200


async def test_events_kinds_filter_and_log_history(client: Client) -> None:
    obs = _obs(client)
    _say(obs, "before", model="llama")
    async with client.get("/api/events?kinds=log,swap") as resp:
        snapshot, marker = await _until_snapshot(resp)
        assert [e.event for e in snapshot] == ["log"]
        assert snapshot[0].data["model"] == "llama"
        assert snapshot[0].data["output"] == "before"
        assert marker.data["kinds"] == ["log", "swap"]
        obs.models_changed({"llama": _snap("llama", ModelState.STARTING)})
        _say(obs, "after")
        live = await _event(resp)
    assert live.event == "log"
    assert live.data["model"] is None
    assert live.data["line"].endswith("swapd.router: after")


async def test_events_replay_recent_swaps_so_a_new_page_has_swap_history(
    client: Client,
) -> None:
    obs = _obs(client)
    obs.swap_started("llama", (), "")
    obs.swap_finished("llama", (), evict_s=0.0, ready_s=0.5, error=None)
    async with client.get("/api/events?kinds=swap") as resp:
        snapshot, _ = await _until_snapshot(resp)
    assert [(e.event, e.data["phase"]) for e in snapshot] == [("swap", "start"), ("swap", "done")]
    async with client.get("/api/events?kinds=swap&no-history") as resp:
        snapshot, _ = await _until_snapshot(resp)
    assert snapshot == []


async def test_queue_and_activity_notices_are_only_made_for_listeners(client: Client) -> None:
    obs = _obs(client)
    obs.models_changed({"llama": _snap("llama", ModelState.READY, in_flight=1)})
    assert [n.kind for n in obs.bus.recent()] == ["model"]
    listener = obs.bus.subscribe(("queue",))
    obs.models_changed({"llama": _snap("llama", ModelState.READY, in_flight=0)})
    assert [n.kind for n in obs.bus.recent()] == ["model", "queue"]
    listener.close()


async def test_events_log_without_history(client: Client) -> None:
    obs = _obs(client)
    _say(obs, "before")
    async with client.get("/api/events?kinds=log&no-history") as resp:
        snapshot, _ = await _until_snapshot(resp)
    assert snapshot == []


@pytest.mark.parametrize("kinds", ["model,bogus", "", ","])
async def test_events_unknown_kinds_are_a_400(client: Client, kinds: str) -> None:
    resp = await client.get("/api/events", params={"kinds": kinds})
    assert resp.status == 400
    assert "choose from" in (await resp.json())["error"]["message"]


async def test_events_ping_while_idle(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "PING_S", 0.05)
    obs = _obs(client)
    async with client.get("/api/events?kinds=swap") as resp:
        await _until_snapshot(resp)
        ping = await _event(resp)
        assert ping.comments == ["ping"]
        obs.swap_started("llama", (), "")
        assert (await _event(resp)).event == "swap"


async def test_events_end_when_the_bus_closes(client: Client) -> None:
    obs = _obs(client)
    async with client.get("/api/events") as resp:
        await _until_snapshot(resp)
        obs.bus.close()
        assert await _eof(resp) == b""
    assert obs.bus.subscribers == 0


async def test_a_slow_event_reader_gets_lost_and_the_end(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "EVENT_QUEUE", 2)
    obs = _obs(client)
    async with client.get("/api/events?kinds=swap") as resp:
        await _until_snapshot(resp)
        for _ in range(5):
            obs.swap_started("llama", (), "")
        got = [await _event(resp)]
        got.append(await _event(resp))
        assert await _eof(resp) == b""
    assert [e.event for e in got] == ["swap", "lost"]
    assert got[1].id is None
