"""Forwarding one request to a leased upstream and relaying its answer as it arrives."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import hdrs, web

from swapd.errors import UpstreamError
from swapd.web.ports import Lease
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
) -> web.StreamResponse:
    """Send the request to `lease.upstream + target` (path and query, still percent-encoded).

    Raises UpstreamError when no response head arrives; after that, failures end the response.
    """
    headers = _filtered(
        request.headers.items(), request.headers.get(hdrs.CONNECTION), _REQUEST_DROP, drop_headers
    )
    try:
        upstream = await session.request(lease.upstream, request.method, target, headers, body)
    except OSError as exc:
        raise UpstreamError(
            f"model {lease.model!r}: no response from its server at {lease.upstream}: "
            f"{exc or type(exc).__name__}"
        ) from None
    try:
        return await _relay(request, upstream, lease)
    finally:
        # Cut short (client left, upstream broke off, or cancelled), the connection is closed:
        # that is how llama-server learns nobody is listening, so it stops generating.
        session.release(upstream)


async def _relay(
    request: web.Request, upstream: UpstreamConnection, lease: Lease
) -> web.StreamResponse:
    length: int | None = None
    sse = False
    connection = None
    for name, value in upstream.headers:
        lower = name.lower()
        if lower == "content-length":
            length = int(value)
        elif lower == "content-type":
            sse = value.partition(";")[0].strip().lower() == "text/event-stream"
        elif lower == "connection" and connection is None:
            connection = value
    headers = _filtered(upstream.headers, connection, _HOP_BY_HOP)
    status, reason = upstream.status, upstream.reason or None
    if request.method == hdrs.METH_HEAD or status in (204, 304):
        if length is not None and status != 204:
            headers.append((hdrs.CONTENT_LENGTH, str(length)))
        return web.Response(status=status, reason=reason, headers=headers)
    if not sse and length is not None and length <= WHOLE_BODY_MAX:
        try:
            payload = await upstream.read_all()
        except UpstreamBroke as exc:
            raise UpstreamError(
                f"model {lease.model!r}: its server at {lease.upstream} broke off the response: "
                f"{exc}"
            ) from None
        return web.Response(status=status, reason=reason, headers=headers, body=payload)

    out = web.StreamResponse(status=status, reason=reason, headers=headers)
    if sse:
        # Tells nginx and similar front proxies not to hold the events back.
        out.headers["X-Accel-Buffering"] = "no"
    if length is not None:
        out.content_length = length
    await out.prepare(request)
    while True:
        try:
            chunk = await upstream.read()
        except UpstreamBroke as exc:
            log.warning(
                "model=%s upstream=%s broke off a streamed response after %d bytes: %s",
                lease.model,
                lease.upstream,
                out.body_length,
                exc,
            )
            _abort(request)
            return out
        try:
            if not chunk:
                await out.write_eof()
                return out
            await out.write(chunk)
        except ConnectionError:
            log.debug("model=%s client left during a streamed response", lease.model)
            return out


def _abort(request: web.Request) -> None:
    # The status line is gone already; dropping the connection without the final chunk is
    # the only way left to tell the client its response is incomplete.
    transport = request.transport
    if transport is not None:
        transport.close()
