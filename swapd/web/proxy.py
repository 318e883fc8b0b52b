"""Forwarding one request to a leased upstream and relaying its answer as it arrives.

Each model-dispatched request carries a `Tally` (swapd/web/tally.py) that the relay fills.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import hdrs, web

from swapd.errors import UpstreamError
from swapd.obs.tokens import JsonTokens, SseTokens, sniffer_for
from swapd.web.ports import Lease
from swapd.web.tally import Tally
from swapd.web.upstream import UpstreamBroke, UpstreamConnection, UpstreamPool

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
WHOLE_BODY_MAX = 1024 * 1024
"""Bodies with a Content-Length up to this are read whole, then answered in one write."""

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# The body is already read (Expect: 100-continue is done); the pool sets Host and Content-Length.
_REQUEST_DROP = _HOP_BY_HOP | {"host", "expect"}
ERROR_BODY_MAX = 64 * 1024
"""Most bytes of an upstream error body read to turn it into an SSE error event."""
_SSE = "text/event-stream"


def new_session() -> UpstreamPool:
    # No cookies, redirects, decompression or headers of its own: the pool does none of these.
    return UpstreamPool(connect_timeout=CONNECT_TIMEOUT_S)


def _filtered(
    headers: Iterable[tuple[str, str]],
    connection: str | None,
    drop: frozenset[str],
    also: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    named = (
        frozenset(token.strip().lower() for token in connection.split(","))
        if connection
        else frozenset()
    )
    return [
        (name, value)
        for name, value in headers
        if not (
            (lower := name.lower()) in drop
            or lower in also
            or lower in named
            or lower.startswith("proxy-")
        )
    ]


async def forward(
    request: web.Request,
    session: UpstreamPool,
    lease: Lease,
    target: str,
    body: bytes,
    drop_headers: frozenset[str],
    tally: Tally,
) -> web.StreamResponse:
    """Send the request to `lease.upstream + target` (path and query, still percent-encoded).

    Raises UpstreamError when no response head arrives; after that, failures end the response.
    """
    upstream = await _send(request, session, lease, target, body, drop_headers)
    try:
        return await _relay(request, upstream, lease, tally)
    finally:
        # Cut short (client left, upstream broke off, or cancelled), the connection is closed:
        # that is how llama-server learns nobody is listening, so it stops generating.
        session.release(upstream)


async def _send(
    request: web.Request,
    session: UpstreamPool,
    lease: Lease,
    target: str,
    body: bytes,
    drop_headers: frozenset[str],
) -> UpstreamConnection:
    headers = _filtered(
        request.headers.items(), request.headers.get(hdrs.CONNECTION), _REQUEST_DROP, drop_headers
    )
    try:
        return await session.request(lease.upstream, request.method, target, headers, body)
    except OSError as exc:
        raise UpstreamError(
            f"model {lease.model!r}: no response from its server at {lease.upstream}: "
            f"{exc or type(exc).__name__}"
        ) from None


def _media_type(value: str) -> str:
    return value.partition(";")[0].strip().lower()


async def _relay(
    request: web.Request, upstream: UpstreamConnection, lease: Lease, tally: Tally
) -> web.StreamResponse:
    length: int | None = None
    media = ""
    connection = None
    for name, value in upstream.headers:
        lower = name.lower()
        if lower == "content-length":
            length = int(value)
        elif lower == "content-type":
            media = _media_type(value)
        elif lower == "connection" and connection is None:
            connection = value
    sse = media == _SSE
    headers = _filtered(upstream.headers, connection, _HOP_BY_HOP)
    status, reason = upstream.status, upstream.reason or None
    tally.status = status
    tally.streamed = sse
    if request.method == hdrs.METH_HEAD or status in (204, 304):
        if length is not None and status != 204:
            headers.append((hdrs.CONTENT_LENGTH, str(length)))
        tally.first_byte = time.monotonic()
        return web.Response(status=status, reason=reason, headers=headers)
    if not sse and length is not None and length <= WHOLE_BODY_MAX:
        try:
            payload = await upstream.read_all()
        except UpstreamBroke as exc:
            raise UpstreamError(
                f"model {lease.model!r}: its server at {lease.upstream} broke off the response: "
                f"{exc}"
            ) from None
        tally.first_byte = time.monotonic()
        if media == "application/json" or media.endswith("+json"):
            tally.payload = payload
        return web.Response(status=status, reason=reason, headers=headers, body=payload)

    out = web.StreamResponse(status=status, reason=reason, headers=headers)
    if sse:
        # Tells nginx and similar front proxies not to hold the events back.
        out.headers["X-Accel-Buffering"] = "no"
    if length is not None:
        out.content_length = length
    sniffer = tally.sniffer = sniffer_for(media)
    try:
        await out.prepare(request)
        broke = await _pump(out, upstream, tally, sniffer)
        if broke is None:
            await out.write_eof()
            return out
    except ConnectionError:
        log.debug("model=%s client left during a streamed response", lease.model)
        tally.client_left()
        return out
    if sse:
        await _end_broken_event_stream(out, lease, tally, broke)
        return out
    tally.error = _broke_off(out, lease, broke)
    _abort(request)
    return out


async def _pump(
    out: web.StreamResponse,
    upstream: UpstreamConnection,
    tally: Tally,
    sniffer: SseTokens | JsonTokens | None,
) -> UpstreamBroke | None:
    """Relay body bytes until the upstream's body ends (None) or it breaks off (the error).

    Raises ConnectionError when the client is gone. Each chunk goes to the client first and
    to the token sniffer after.
    """
    while True:
        try:
            chunk = await upstream.read()
        except UpstreamBroke as exc:
            return exc
        if not chunk:
            return None
        await out.write(chunk)
        if tally.first_byte is None:
            tally.first_byte = time.monotonic()
        if sniffer is not None:
            sniffer.feed(chunk)


async def forward_into(
    request: web.Request,
    out: web.StreamResponse,
    session: UpstreamPool,
    lease: Lease,
    target: str,
    body: bytes,
    drop_headers: frozenset[str],
    tally: Tally,
) -> None:
    """Forward a streaming request whose event-stream response `out` is already under way.

    The upstream's status and headers cannot be sent any more: a 200 event stream is relayed
    into `out` as it comes, anything else (and any failure) ends `out` with an SSE error
    event and `data: [DONE]`. Returns normally when the client left (tally says 499).
    """
    tally.status = 200
    try:
        upstream = await _send(request, session, lease, target, body, drop_headers)
    except UpstreamError as exc:
        tally.fail(exc.status, str(exc))
        await end_with_error(out, tally, exc.body())
        return
    try:
        media = ""
        for name, value in upstream.headers:
            if name.lower() == "content-type":
                media = _media_type(value)
        if upstream.status != 200 or media != _SSE:
            await _upstream_refused(out, upstream, lease, tally, media)
            return
        sniffer = tally.sniffer = SseTokens()
        broke = await _pump(out, upstream, tally, sniffer)
        if broke is None:
            await out.write_eof()
            return
        await _end_broken_event_stream(out, lease, tally, broke)
    except ConnectionError:
        log.debug("model=%s client left during a streamed response", lease.model)
        tally.client_left()
    finally:
        session.release(upstream)


async def _upstream_refused(
    out: web.StreamResponse,
    upstream: UpstreamConnection,
    lease: Lease,
    tally: Tally,
    media: str,
) -> None:
    parts: list[bytes] = []
    size = 0
    try:
        while size <= ERROR_BODY_MAX and (chunk := await upstream.read()):
            parts.append(chunk)
            size += len(chunk)
    except UpstreamBroke:
        pass
    payload = b"".join(parts)[:ERROR_BODY_MAX]
    status = upstream.status
    error: Any = None
    if media == "application/json" or media.endswith("+json"):
        try:
            error = json.loads(payload).get("error")
        except (ValueError, AttributeError, RecursionError):
            error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message = error["message"]
        body = {"error": error}
    else:
        detail = payload.decode("utf-8", "replace").strip()[:500]
        if status == 200:
            what = f"a {media or 'untyped'} body instead of an event stream"
        else:
            what = f"HTTP {status} {upstream.reason}".rstrip()
        message = f"model {lease.model!r}: its server answered {what}" + (
            f": {detail}" if detail else ""
        )
        body = UpstreamError(message).body()
    tally.fail(status if status != 200 else 502, message)
    await end_with_error(out, tally, body)


async def end_with_error(
    out: web.StreamResponse, tally: Tally, body: dict[str, Any], *, mid_event: bool = False
) -> None:
    """End an event stream with an error event and [DONE] (what OpenAI's clients expect)."""
    event = b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\ndata: [DONE]\n\n"
    if mid_event:
        # The upstream may have stopped inside an event: end that one first.
        event = b"\n\n" + event
    try:
        await out.write(event)
        await out.write_eof()
    except ConnectionError:
        tally.client_left()


def _broke_off(out: web.StreamResponse, lease: Lease, broke: UpstreamBroke) -> str:
    """Log a response its upstream broke off; the message for the client and the record."""
    log.warning(
        "model=%s upstream=%s broke off a streamed response after %d bytes: %s",
        lease.model,
        lease.upstream,
        out.body_length,
        broke,
    )
    return f"model {lease.model!r}: its server broke off the response: {broke}"


async def _end_broken_event_stream(
    out: web.StreamResponse, lease: Lease, tally: Tally, broke: UpstreamBroke
) -> None:
    # An event stream can still end well-formed: clients see an error event, then [DONE].
    message = _broke_off(out, lease, broke)
    tally.fail(502, message)
    await end_with_error(out, tally, UpstreamError(message).body(), mid_event=True)


def _abort(request: web.Request) -> None:
    # The status line is gone already; dropping the connection without the final chunk is
    # the only way left to tell the client its response is incomplete.
    transport = request.transport
    if transport is not None:
        transport.close()
