"""Forwarding one request to a leased upstream and relaying its answer as it arrives."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import aiohttp
from aiohttp import hdrs, web

from swapd.errors import UpstreamError
from swapd.web.ports import Lease

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
# The body is already read (Expect: 100-continue is done) and aiohttp sets Host from the URL.
_REQUEST_DROP = _HOP_BY_HOP | {"host", "expect"}


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        # No pool limit: the router's concurrency limits are the only admission control.
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        # No total or read timeout: a queued llama-server request sends no headers until a slot
        # frees, and generations can run for many minutes.
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
        auto_decompress=False,
        # Cookies set by one upstream response must not follow other clients' requests.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Forward exactly the headers the client sent: none invented by aiohttp.
        skip_auto_headers=(hdrs.USER_AGENT, hdrs.ACCEPT_ENCODING, hdrs.ACCEPT, hdrs.CONTENT_TYPE),
    )


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get(hdrs.CONNECTION)
    if not value:
        return frozenset()
    return frozenset(token.strip().lower() for token in value.split(","))


def _filtered(
    headers: Mapping[str, str], drop: frozenset[str], also: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    named = _connection_tokens(headers)
    return [
        (name, value)
        for name, value in headers.items()
        if not (
            (lower := name.lower()) in drop
            or lower in also
            or lower in named
            or lower.startswith("proxy-")
        )
    ]


async def forward(
    request: web.Request,
    session: aiohttp.ClientSession,
    lease: Lease,
    target: str,
    body: bytes,
    drop_headers: frozenset[str],
) -> web.StreamResponse:
    """Send the request to `lease.upstream + target` (path and query, still percent-encoded).

    Raises UpstreamError when no response head arrives; after that, failures end the response.
    """
    # Parsing a str would re-quote the path and resolve dot segments; encoded=True forwards the
    # client's bytes. The URL type is taken from the request: swapd.web imports only aiohttp.
    url = type(request.rel_url)(lease.upstream + target, encoded=True)
    headers = _filtered(request.headers, _REQUEST_DROP, drop_headers)
    try:
        upstream = await session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamError(
            f"model {lease.model!r}: no response from its server at {lease.upstream}: "
            f"{exc or type(exc).__name__}"
        ) from None
    try:
        return await _relay(request, upstream, lease)
    finally:
        if upstream.content.is_eof():
            upstream.release()
        else:
            # Cut short (client left, upstream broke off, or cancelled): closing the connection
            # is how llama-server learns nobody is listening, so it stops generating.
            upstream.close()


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, lease: Lease
) -> web.StreamResponse:
    headers = _filtered(upstream.headers, _HOP_BY_HOP)
    length = upstream.content_length
    if request.method == hdrs.METH_HEAD or upstream.status in (204, 304):
        if length is not None and upstream.status != 204:
            headers.append((hdrs.CONTENT_LENGTH, str(length)))
        return web.Response(status=upstream.status, reason=upstream.reason, headers=headers)
    sse = upstream.content_type == "text/event-stream"
    if not sse and length is not None and length <= WHOLE_BODY_MAX:
        try:
            payload = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamError(
                f"model {lease.model!r}: its server at {lease.upstream} broke off the response: "
                f"{exc or type(exc).__name__}"
            ) from None
        return web.Response(
            status=upstream.status, reason=upstream.reason, headers=headers, body=payload
        )

    out = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    if sse:
        # Tells nginx and similar front proxies not to hold the events back.
        out.headers["X-Accel-Buffering"] = "no"
    if length is not None:
        out.content_length = length
    await out.prepare(request)
    content = upstream.content
    while True:
        try:
            chunk = await content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "model=%s upstream=%s broke off a streamed response after %d bytes: %s",
                lease.model,
                lease.upstream,
                out.body_length,
                exc or type(exc).__name__,
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
