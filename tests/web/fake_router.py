"""A RouterPort that records every call, and an in-process upstream that tests drive step by step.

FakeUpstream answers by the `X-Fake-Mode` request header (which swapd forwards like any other):
  (none)    echo the request as JSON: method, raw path, raw query, headers, body (latin-1)
  sse       text/event-stream; writes each chunk the test feeds with `send()`, ends on `end()`
  chunked   the same, as chunked text/plain
  hang      never sends headers (until the client leaves)
  status    status from `X-Fake-Status`, extra response headers, empty body
  gzip      a gzip body with Content-Encoding: gzip
  big       a body larger than swapd reads whole, with a Content-Length
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from swapd.core.state import ModelSnapshot
from swapd.errors import SwapdHttpError
from swapd.web.ports import GpuViewPort, Lease
from swapd.web.proxy import WHOLE_BODY_MAX

_ABORT = object()


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: Any
    """The client address of the connection it came on: reveals connection reuse."""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class FakeUpstream:
    seen: list[Seen] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a streaming/hanging handler has sent its headers (or began hanging)."""
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when swapd closed the connection while a streaming/hanging handler ran."""
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    _chunks: asyncio.Queue[bytes | object] = field(default_factory=asyncio.Queue)
    url: str = ""

    def send(self, chunk: bytes) -> None:
        self._chunks.put_nowait(chunk)

    def end(self) -> None:
        self._chunks.put_nowait(b"")

    def abort(self) -> None:
        """Drop the connection mid-response, without the final chunk."""
        self._chunks.put_nowait(_ABORT)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(
                method=request.method,
                path=request.rel_url.raw_path,
                query=request.rel_url.raw_query_string,
                headers=list(request.headers.items()),
                body=body,
                peer=request.transport.get_extra_info("peername") if request.transport else None,
            )
        )
        mode = request.headers.get("X-Fake-Mode", "")
        try:
            if mode in ("sse", "chunked"):
                return await self._stream(request, mode)
            if mode == "hang":
                self.started.set()
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        if mode == "status":
            return web.Response(
                status=int(request.headers["X-Fake-Status"]),
                headers=[
                    ("X-Upstream", "yes"),
                    ("Set-Cookie", "a=1"),
                    ("Set-Cookie", "b=2"),
                    ("Connection", "X-Secret-Hop"),
                    ("X-Secret-Hop", "hidden"),
                ],
            )
        if mode == "gzip":
            return web.Response(
                body=gzip.compress(b"compressed words" * 10),
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
            )
        if mode == "big":
            return web.Response(body=b"x" * (WHOLE_BODY_MAX + 10), content_type="text/plain")
        echo = {
            "method": request.method,
            "path": request.rel_url.raw_path,
            "query": request.rel_url.raw_query_string,
            "headers": list(request.headers.items()),
            "body": body.decode("latin-1"),
        }
        return web.json_response(echo, headers={"X-Upstream": "yes"})

    async def _stream(self, request: web.Request, mode: str) -> web.StreamResponse:
        out = web.StreamResponse()
        out.content_type = "text/event-stream" if mode == "sse" else "text/plain"
        await out.prepare(request)
        self.started.set()
        while True:
            chunk = await self._chunks.get()
            if chunk is _ABORT:
                assert request.transport is not None
                request.transport.close()
                return out
            assert isinstance(chunk, bytes)
            if not chunk:
                break
            await out.write(chunk)
        await out.write_eof()
        self.finished.set()
        return out


class FakeRouter:
    """RouterPort double. Leases point at `upstream`; every call is recorded."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.acquired: list[str] = []
        self.leases: list[Lease] = []
        self.released: list[Lease] = []
        self.unloaded: list[tuple[str, ...] | None] = []
        self.snapshots: dict[str, ModelSnapshot] = {}
        self.error: SwapdHttpError | None = None
        """Raised by acquire() (after the gate, if any)."""
        self.gate: asyncio.Event | None = None
        """When set, acquire() waits for this event before granting."""
        self.waiting = asyncio.Event()
        self.withdrawn = asyncio.Event()
        """Set when a caller was cancelled while acquire() waited."""
        self._release_seen = asyncio.Event()
        self.problems: list[str] = []
        self.gpu: GpuViewPort | None = None
        self.lost: list[Lease] = []
        self.resets: list[str] = []
        self.revive: Callable[[], None] | None = None

    async def acquire(self, model: str) -> Lease:
        self.acquired.append(model)
        if self.gate is not None:
            self.waiting.set()
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.withdrawn.set()
                raise
        if self.error is not None:
            raise self.error
        lease = Lease(req_id=len(self.leases) + 1, model=model, upstream=self.upstream)
        self.leases.append(lease)
        return lease

    def release(self, lease: Lease) -> None:
        if lease not in self.leases:
            self.problems.append(f"release of a lease never granted: {lease}")
        if lease in self.released:
            self.problems.append(f"second release of {lease}")
        self.released.append(lease)
        self._release_seen.set()

    async def wait_released(self, count: int) -> None:
        """Return once `count` releases happened (the server may finish after the client)."""
        async with asyncio.timeout(5):
            while len(self.released) < count:
                self._release_seen.clear()
                await self._release_seen.wait()

    async def unload(self, models: tuple[str, ...] | None) -> None:
        self.unloaded.append(models)

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        return self.snapshots

    def recent_output(self, model: str, lines: int = 20) -> list[str]:
        return []

    def gpu_view(self) -> GpuViewPort | None:
        return self.gpu

    def reset(self, model: str) -> None:
        self.resets.append(model)

    async def lost_child(self, lease: Lease) -> bool:
        """Calls `revive` when set (the test's stand-in for a restarted model)."""
        self.lost.append(lease)
        if self.revive is None:
            return False
        self.revive()
        return True

    @property
    def outstanding(self) -> list[Lease]:
        return [lease for lease in self.leases if lease not in self.released]


def echo_of(payload: Any) -> dict[str, Any]:
    """The echo JSON, with headers turned into a case-insensitive lookup."""
    assert isinstance(payload, dict)
    payload["header"] = {k.lower(): v for k, v in payload["headers"]}
    return payload


def dumps(obj: Any) -> bytes:
    return json.dumps(obj).encode()
