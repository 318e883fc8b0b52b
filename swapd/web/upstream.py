"""A lean HTTP/1.1 client for the upstream servers: keep-alive connections parsed by llhttp.

aiohttp's client machinery was a large share of swapd's CPU per proxied request. This does only
what the proxy needs: one request at a time per connection, bodies sent whole in one write, the
response parsed by httptools (llhttp) and handed over as its bytes arrive.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import cast
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

IDLE_TIMEOUT_S = 4.0
"""llama-server closes connections idle for 5 s; reusing one it is closing would race."""
HIGH_WATER = 256 * 1024
"""Body bytes buffered for a slow client before the upstream is no longer read."""
# As aiohttp's client did: other methods always say how long their (maybe empty) body is.
_NO_LENGTH_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_Key = tuple[str, int, bool]


class UpstreamBroke(ConnectionError):
    """The connection ended early, or what came back is not an HTTP/1.1 response."""


class _Origin:
    __slots__ = ("host", "key", "prefix")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        self.key: _Key = (parts.hostname or "", parts.port or (443 if tls else 80), tls)
        self.host = parts.netloc.rpartition("@")[2]
        self.prefix = parts.path.rstrip("/")


class UpstreamConnection(asyncio.Protocol):
    """One connection, and the response to the request in flight on it."""

    _transport: asyncio.Transport

    def __init__(self, pool: UpstreamPool, key: _Key) -> None:
        self.key = key
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.idle_since = 0.0
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._parser = HttpResponseParser(self)
        self._reason = b""
        self._head_done = False
        self._head_only = False
        self._complete = True
        """No response is outstanding: anything the server sends now is unasked for."""
        self._informational = False
        self._keep_alive = False
        self._chunked = False
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self._error: UpstreamBroke | None = None
        self._waiter: asyncio.Future[None] | None = None

    def usable(self) -> bool:
        return self._error is None and not self._transport.is_closing()

    def reusable(self) -> bool:
        """The response was read to its end and the server keeps the connection open."""
        return self._complete and self._keep_alive and not self._chunks and self.usable()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    async def exchange(self, data: Iterable[bytes], head_only: bool) -> None:
        """Send a request; return once the head of its final response is in."""
        self._head_done = self._complete = self._keep_alive = self._chunked = False
        self._head_only = head_only
        self._transport.writelines(data)
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        """The body bytes that arrived since the last read; b"" once the body is complete."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        chunks = self._chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._buffered = 0
        if self._paused:
            self._paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()
        return data

    async def read_all(self) -> bytes:
        parts: list[bytes] = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamBroke) -> None:
        if self._error is None:
            self._error = error
        self._transport.close()
        self._wake()

    def _ends_with_connection(self) -> bool:
        # Neither chunked nor with a length, a body ends when the connection does (RFC 9112 6.3);
        # llhttp cannot be told the connection ended, so this is decided here.
        if self.status in (204, 304):
            return False
        framed = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "transfer-encoding":
                return value.rpartition(",")[2].strip().lower() != "chunked"
            framed = framed or lower == "content-length"
        return not framed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._pool._open.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade) as exc:
            self._fail(UpstreamBroke(f"malformed response: {exc or type(exc).__name__}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._forget(self)
        if not self._complete and self._head_done and self._ends_with_connection():
            self._complete = True
        reason = str(exc) if exc else ""
        self._fail(UpstreamBroke(reason or "the server closed the connection"))

    def on_message_begin(self) -> None:
        if self._complete:
            # Bytes nobody asked for: this connection's framing can no longer be trusted.
            self._transport.close()
        self._reason = b""
        self.headers = []

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._complete:
            self.headers.append(
                (name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape"))
            )

    def on_headers_complete(self) -> None:
        if self._complete:
            return
        status = self._parser.get_status_code()
        if status < 200:
            self._informational = True
            return
        self.status = status
        self.reason = self._reason.decode("latin-1")
        self._head_done = True
        if self._head_only:
            # llhttp cannot be told the request was HEAD: it would wait for the body the headers
            # describe, so this response ends here and its connection is not reused.
            self._complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_chunk_header(self) -> None:
        self._chunked = True

    def on_message_complete(self) -> None:
        if self._complete:
            return
        if self._informational:
            self._informational = False
            return
        # llama-server closes the connection right after every chunked (streamed) response
        # without saying so; its FIN comes ~0.1 ms later, and a request sent meanwhile fails.
        # should_keep_alive() is only valid now: llhttp clears its flags after this callback.
        self._keep_alive = not self._chunked and self._parser.should_keep_alive()
        self._complete = True
        self._wake()


class UpstreamPool:
    """Keep-alive connections per upstream (host, port), reused last-in first-out.

    No size limit: the router's concurrency limits are the only admission control. No read
    timeout: a queued llama-server request sends no headers until a slot frees.
    """

    def __init__(self, connect_timeout: float = 10.0, idle_timeout: float = IDLE_TIMEOUT_S) -> None:
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._origins: dict[str, _Origin] = {}
        self._idle: dict[_Key, list[UpstreamConnection]] = {}
        self._open: set[UpstreamConnection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._tls: ssl.SSLContext | None = None
        self._all_lost: asyncio.Future[None] | None = None

    async def __aenter__(self) -> UpstreamPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(
        self,
        upstream: str,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> UpstreamConnection:
        """Send a request to the server at URL `upstream`; `target` is sent as it is.

        Returns once the response head is in: hand the connection to release() when done with it.
        Raises OSError (UpstreamBroke, TimeoutError, ...) when no response head arrives.
        """
        origin = self._origins.get(upstream)
        if origin is None:
            origin = self._origins[upstream] = _Origin(upstream)
        conn = self._take(origin.key) or await self._connect(origin)
        lines = [f"{method} {origin.prefix}{target} HTTP/1.1\r\nHost: {origin.host}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if body or method not in _NO_LENGTH_METHODS:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        head = "".join(lines).encode("utf-8", "surrogateescape")
        try:
            await conn.exchange((head, body) if body else (head,), method == "HEAD")
        except BaseException:
            conn.close()
            raise
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Keep the connection for the next request if its response was read whole, else close.

        Closing one cut short is how llama-server learns nobody listens and stops generating.
        """
        if not conn.reusable():
            conn.close()
            return
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.key, []).append(conn)
        if self._sweep is None:
            self._sweep = loop.call_later(self._idle_timeout, self._expire)

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._idle.clear()
        if self._open:
            self._all_lost = asyncio.get_running_loop().create_future()
            for conn in list(self._open):
                # Not close(): that waits for unsent bytes a stuck server may never take.
                conn.abort()
            await self._all_lost

    def _take(self, key: _Key) -> UpstreamConnection | None:
        conns = self._idle.get(key)
        if conns:
            fresh_since = asyncio.get_running_loop().time() - self._idle_timeout
            while conns:
                conn = conns.pop()
                if conn.idle_since > fresh_since and conn.usable():
                    return conn
                conn.close()
        return None

    async def _connect(self, origin: _Origin) -> UpstreamConnection:
        host, port, tls = origin.key
        if tls and self._tls is None:
            self._tls = ssl.create_default_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(self, origin.key),
                    host,
                    port,
                    ssl=self._tls if tls else None,
                )
        except TimeoutError:
            raise TimeoutError(f"connecting took over {self._connect_timeout:g} s") from None
        return conn

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        fresh_since = loop.time() - self._idle_timeout
        for key, conns in list(self._idle.items()):
            live = []
            for conn in conns:
                if conn.idle_since > fresh_since and conn.usable():
                    live.append(conn)
                else:
                    conn.close()
            if live:
                self._idle[key] = live
            else:
                del self._idle[key]
        # _take() never hands out a stale connection; this only frees the idle ones' sockets.
        self._sweep = loop.call_later(self._idle_timeout, self._expire) if self._idle else None

    def _forget(self, conn: UpstreamConnection) -> None:
        self._open.discard(conn)
        if not self._open and self._all_lost is not None and not self._all_lost.done():
            self._all_lost.set_result(None)
