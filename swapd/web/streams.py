"""Logs and events: GET /logs, /logs/stream, /logs/stream/{source}, /api/events.

Formats (docs/observability.md, "Logs" and "Events", has the user's version):

* GET /logs[?model=SOURCE]: text/plain, the history, one line per record, oldest first.
* GET /logs/stream[/SOURCE][?no-history] (or ?model=SOURCE): chunked text/plain; the history (unless
  `no-history`), then each new line as it is logged, until the client leaves or swapd stops.
* SOURCE: none, the combined log (swapd's own records and every model's output, formatted like
  swapd's stderr); a model id or alias (may contain "/"), that model's output exactly as its
  child printed it; "proxy", swapd's own records only; "upstream", every model's output only
  (the two llama-swap names, used only when no model has that name). Anything else: 404.
* GET /api/events[?kinds=model,queue,...][&no-history]: text/event-stream. First a snapshot:
  `model` and `queue` per configured model, `gpu` (when swapd has a GPU view), and, only when
  `log` was asked for, the combined log history as `log` events (unless `no-history`); then a
  `snapshot` event {"kinds": [...], "seq": N}; then live notices, each with `id: <seq>`. Every
  event's data is one line of JSON. A `: ping` comment goes out after PING_S of silence. A
  client that falls too far behind gets `event: lost` and the stream ends (EventSource
  reconnects and gets a fresh snapshot).

Every stream is bounded: the bus cuts off a subscriber whose queue fills up, a write that the
client does not take within WRITE_TIMEOUT_S drops the connection, and the bus's close() at
shutdown ends every stream, so the server's shutdown never waits on one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import hdrs, web

from swapd.core.state import ModelState
from swapd.errors import BadRequest
from swapd.obs.bus import KINDS, Notice
from swapd.obs.logs import LogHub
from swapd.web.context import CONTEXT, WebContext

PING_S = 15.0
"""A comment line after this long without an event keeps proxies from closing the stream."""
WRITE_TIMEOUT_S = 30.0
"""A client that takes nothing for this long is dropped (its notices were cut off long before)."""
LOG_QUEUE = 2000
"""Lines a log stream may fall behind before it is cut off."""
EVENT_QUEUE = 1000
"""Notices an event stream may fall behind before it is cut off."""
DEFAULT_EVENT_KINDS = KINDS - {"log"}
"""Log lines only when asked for (`?kinds=...,log`): a busy model's output would crowd out the
state changes the UI is waiting for; the UI reads the log from /logs/stream."""
PROXY_SOURCE = "proxy"
UPSTREAM_SOURCE = "upstream"
_NOT_LOADED = frozenset({ModelState.STOPPED, ModelState.FAILED})
_STREAM_HEADERS = {
    hdrs.CACHE_CONTROL: "no-cache",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "X-Content-Type-Options": "nosniff",  # browsers: show text/plain as it comes, no sniffing
}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/logs", logs_text)
    router.add_get("/logs/stream", logs_stream)
    router.add_get("/logs/stream/{source:.+}", logs_stream)
    router.add_get("/api/events", events)


# --- logs --------------------------------------------------------------------------------------


class _LogSource:
    """Which lines a log request wants, from history and from live "log" notices."""

    def __init__(self, model: str | None, only: str | None) -> None:
        self.model = model
        """A model id: that model's raw output."""
        self.only = only
        """PROXY_SOURCE or UPSTREAM_SOURCE: that half of the combined log; None: all of it."""

    def _keep(self, model: str | None) -> bool:
        if self.only == PROXY_SOURCE:
            return model is None
        if self.only == UPSTREAM_SOURCE:
            return model is not None
        return True

    def history(self, hub: LogHub) -> list[str]:
        if self.model is not None:
            return hub.history(self.model)
        if self.only is None:
            return hub.history()
        return [e.line for e in hub.entries() if self._keep(e.model)]

    def pick(self, notice: Notice) -> str | None:
        model = notice.data.get("model")
        if self.model is not None:
            return notice.data.get("output") if model == self.model else None
        return notice.data.get("line") if self._keep(model) else None


def _log_source(ctx: WebContext, name: str | None) -> _LogSource:
    if not name:
        return _LogSource(None, None)
    model_id = ctx.catalog.resolve(name)
    if model_id is not None:
        return _LogSource(model_id, None)
    if name in (PROXY_SOURCE, UPSTREAM_SOURCE):
        return _LogSource(None, name)
    raise ctx.catalog.not_found(
        name,
        subject=f"no model or log source {name!r} (the sources are the model ids and aliases, "
        f"{PROXY_SOURCE!r} and {UPSTREAM_SOURCE!r})",
    )


def _text(lines: Iterable[str]) -> str:
    return "".join(line + "\n" for line in lines)


async def logs_text(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    source = _log_source(ctx, request.query.get("model"))
    return web.Response(
        text=_text(source.history(ctx.obs.logs)),
        content_type="text/plain",
        charset="utf-8",
        headers={hdrs.CACHE_CONTROL: "no-cache"},
    )


async def logs_stream(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    source = _log_source(ctx, request.match_info.get("source") or request.query.get("model"))
    # Subscribe and read the history with no await in between: nothing is missed or repeated.
    sub = ctx.obs.bus.subscribe(("log",), maxsize=LOG_QUEUE)
    try:
        history = [] if "no-history" in request.query else source.history(ctx.obs.logs)
        resp = web.StreamResponse(headers=_STREAM_HEADERS)
        resp.content_type = "text/plain"
        resp.charset = "utf-8"
        await resp.prepare(request)
        if history and not await _send(request, resp, _text(history)):
            return resp
        while notices := await sub.batch():
            text = _text(line for n in notices if (line := source.pick(n)) is not None)
            if text and not await _send(request, resp, text):
                return resp
        if sub.lost:
            note = "swapd: this stream fell too far behind and was cut off; reconnect\n"
            if not await _send(request, resp, note):
                return resp
        await resp.write_eof()
        return resp
    finally:
        sub.close()


# --- events ------------------------------------------------------------------------------------


def _event_kinds(request: web.Request) -> frozenset[str]:
    asked = request.query.get("kinds")
    if asked is None:
        return DEFAULT_EVENT_KINDS
    kinds = frozenset(k.strip() for k in asked.split(",") if k.strip())
    unknown = sorted(kinds - KINDS)
    if unknown or not kinds:
        raise BadRequest(
            f"unknown event kinds {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"choose from {', '.join(sorted(KINDS))}"
        )
    return kinds


def _sse(kind: str, data: Mapping[str, Any], seq: int | None = None) -> str:
    payload = json.dumps(data, separators=(",", ":"), default=str)
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {kind}\ndata: {payload}\n\n"


def _snapshot(ctx: WebContext, kinds: frozenset[str], history: bool) -> list[str]:
    """The current state, as the same events live changes arrive as (without ids)."""
    out: list[str] = []
    snapshots = ctx.router.snapshot()
    for model_id in ctx.config.models:
        snap = snapshots.get(model_id)
        state = snap.state if snap is not None else ModelState.STOPPED
        if "model" in kinds:
            reason = snap.reason if snap is not None else None
            out.append(_sse("model", {"model": model_id, "state": state.value, "reason": reason}))
        if "queue" in kinds:
            in_flight, queued = (snap.in_flight, snap.queued) if snap is not None else (0, 0)
            out.append(_sse("queue", {"model": model_id, "in_flight": in_flight, "queued": queued}))
    gpu = ctx.router.gpu_view()
    if "gpu" in kinds and gpu is not None:
        live = frozenset(m for m, s in snapshots.items() if s.state not in _NOT_LOADED)
        out.append(_sse("gpu", gpu.gpus_view(live)))
    if "swap" in kinds and history:
        # Recent swaps, so a page opened now still shows the swap history.
        out.extend(_sse("swap", dict(n.data)) for n in ctx.obs.bus.recent(("swap",)))
    if "log" in kinds and history:
        for entry in ctx.obs.logs.entries():
            data: dict[str, Any] = {"model": entry.model, "line": entry.line}
            if entry.output is not None:
                data["output"] = entry.output
            out.append(_sse("log", data))
    return out


async def events(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    kinds = _event_kinds(request)
    # Subscribe and take the snapshot with no await in between: nothing is missed.
    sub = ctx.obs.bus.subscribe(kinds, maxsize=EVENT_QUEUE)
    try:
        first = _snapshot(ctx, kinds, history="no-history" not in request.query)
        first.append(_sse("snapshot", {"kinds": sorted(kinds), "seq": ctx.obs.bus.last_seq}))
        resp = web.StreamResponse(headers=_STREAM_HEADERS)
        resp.content_type = "text/event-stream"
        resp.charset = "utf-8"
        await resp.prepare(request)
        if not await _send(request, resp, "retry: 3000\n\n" + "".join(first)):
            return resp
        while True:
            try:
                async with asyncio.timeout(PING_S):
                    notices = await sub.batch()
            except TimeoutError:
                if not await _send(request, resp, ": ping\n\n"):
                    return resp
                continue
            if not notices:
                break
            text = "".join(_sse(n.kind, n.data, n.seq) for n in notices)
            if not await _send(request, resp, text):
                return resp
        if sub.lost:
            lost = {"reason": "this client fell too far behind; reconnect for a fresh snapshot"}
            if not await _send(request, resp, _sse("lost", lost)):
                return resp
        await resp.write_eof()
        return resp
    finally:
        sub.close()


# --- writing -----------------------------------------------------------------------------------


async def _send(request: web.Request, resp: web.StreamResponse, text: str) -> bool:
    """Write, bounded: False (and the connection dropped) when the client stopped taking data."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await resp.write(text.encode("utf-8", "replace"))
    except TimeoutError:
        _drop(request)
        return False
    except ConnectionError:
        return False
    return True


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
