"""The upstream HTTP/1.1 client: keep-alive reuse, framing, backpressure, cut-short connections.

Every test talks to a raw asyncio server on a loopback socket, so it controls each byte sent.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from swapd.web.upstream import HIGH_WATER, UpstreamBroke, UpstreamConnection, UpstreamPool

Peer = tuple[str, int]


@dataclass
class Request:
    head: bytes
    body: bytes
    peer: Peer


Answer = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


class RawUpstream:
    """Reads requests one after another on each connection and lets `answer` write the reply."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: asyncio.Queue[Request] = asyncio.Queue()
        self.seen: list[Request] = []
        self.ended: asyncio.Queue[Peer] = asyncio.Queue()
        """Peers whose connection ended (closed by swapd, or by `answer`)."""
        self.url = ""
        self._writers: set[asyncio.StreamWriter] = set()
        self._all_ended = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        if self._writers:
            async with asyncio.timeout(5):
                await self._all_ended.wait()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer: Peer = writer.get_extra_info("peername")
        try:
            while not writer.is_closing():
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request = Request(head, await reader.readexactly(length), peer)
                self.seen.append(request)
                self.requests.put_nowait(request)
                await self.answer(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            self.ended.put_nowait(peer)
            if not self._writers:
                self._all_ended.set()

    @property
    def peers(self) -> list[Peer]:
        return [request.peer for request in self.seen]


class WatchedPool(UpstreamPool):
    """Tells the test when a connection is gone, so that no test races the event loop."""

    def __init__(self) -> None:
        # Longer than any wait in these tests: an idle sweep must not close what a test checks.
        super().__init__(idle_timeout=60.0)
        self.lost: asyncio.Queue[UpstreamConnection] = asyncio.Queue()

    def _forget(self, conn: UpstreamConnection) -> None:
        super()._forget(conn)
        self.lost.put_nowait(conn)


Serve = Callable[[Answer], Awaitable[RawUpstream]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[RawUpstream] = []

    async def start(answer: Answer) -> RawUpstream:
        server = RawUpstream(answer)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def pool() -> AsyncIterator[WatchedPool]:
    async with WatchedPool() as pool:
        yield pool


def reply(
    body: bytes = b"ok", *, head: bytes = b"HTTP/1.1 200 OK\r\n", extra: bytes = b""
) -> bytes:
    return head + b"Content-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


def answer_with(*parts: bytes, close: bool = False) -> Answer:
    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        for part in parts:
            writer.write(part)
            await writer.drain()
        if close:
            writer.close()

    return answer


async def hang(request: Request, writer: asyncio.StreamWriter) -> None:
    """Answers nothing; the next read on the connection sees swapd close it."""


async def get(pool: UpstreamPool, url: str, method: str = "GET") -> tuple[int, bytes]:
    async with asyncio.timeout(5):
        conn = await pool.request(url, method, "/", [], b"")
        try:
            return conn.status, await conn.read_all()
        finally:
            pool.release(conn)


async def test_request_is_sent_byte_for_byte_with_host_and_length(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(answer_with(reply()))
    headers = [("X-Mixed-Case", "v1"), ("x-dup", "a"), ("x-dup", "b")]
    async with asyncio.timeout(5):
        conn = await pool.request(
            upstream.url + "/base", "POST", "/a%2Fb/../c?q=%20", headers, b"xyz"
        )
    pool.release(conn)
    host = upstream.url.removeprefix("http://")
    assert upstream.seen[0].head == (
        b"POST /base/a%2Fb/../c?q=%20 HTTP/1.1\r\n"
        b"Host: " + host.encode() + b"\r\n"
        b"X-Mixed-Case: v1\r\nx-dup: a\r\nx-dup: b\r\nContent-Length: 3\r\n\r\n"
    )
    assert upstream.seen[0].body == b"xyz"


@pytest.mark.parametrize(("method", "length"), [("GET", None), ("HEAD", None), ("DELETE", b"0")])
async def test_a_bodiless_request_states_its_length_only_where_a_body_is_expected(
    pool: WatchedPool, serve: Serve, method: str, length: bytes | None
) -> None:
    upstream = await serve(answer_with(reply(b"")))
    await get(pool, upstream.url, method)
    sent = upstream.seen[0].head
    assert (b"Content-Length: 0\r\n" in sent) == (length is not None)


async def test_sequential_requests_reuse_one_connection(pool: WatchedPool, serve: Serve) -> None:
    upstream = await serve(answer_with(reply(b"hello", extra=b"X-Kept: 1\r\n")))
    for _ in range(3):
        assert await get(pool, upstream.url) == (200, b"hello")
    assert len(set(upstream.peers)) == 1


async def test_the_connection_released_last_is_reused_first(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(answer_with(reply()))
    async with asyncio.timeout(5):
        first = await pool.request(upstream.url, "GET", "/", [], b"")
        second = await pool.request(upstream.url, "GET", "/", [], b"")
        await first.read_all()
        await second.read_all()
    pool.release(first)
    pool.release(second)
    await get(pool, upstream.url)
    assert upstream.peers[2] == upstream.peers[1] != upstream.peers[0]


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\nConnection: close\r\n", b"HTTP/1.0 200 OK\r\n"],
    ids=["connection-close", "http-1.0"],
)
async def test_no_reuse_when_the_server_will_not_keep_the_connection(
    pool: WatchedPool, serve: Serve, head: bytes
) -> None:
    # The server leaves the socket open: only swapd's reading of the response may close it.
    upstream = await serve(answer_with(reply(head=head)))
    assert await get(pool, upstream.url) == (200, b"ok")
    async with asyncio.timeout(5):
        assert await upstream.ended.get() == upstream.peers[0]
    assert await get(pool, upstream.url) == (200, b"ok")
    assert upstream.peers[0] != upstream.peers[1]


async def test_an_idle_connection_the_server_closed_is_not_reused(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(answer_with(reply(), close=True))
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "GET", "/", [], b"")
        await conn.read_all()
        pool.release(conn)
        assert await pool.lost.get() is conn
    assert await get(pool, upstream.url) == (200, b"ok")
    assert upstream.peers[0] != upstream.peers[1]


async def test_a_connection_idle_past_the_timeout_is_closed_not_reused(serve: Serve) -> None:
    upstream = await serve(answer_with(reply()))
    async with UpstreamPool(idle_timeout=0.0) as pool:
        await get(pool, upstream.url)
        # Nothing else happens, so only the idle sweep can close it.
        async with asyncio.timeout(5):
            assert await upstream.ended.get() == upstream.peers[0]
        await get(pool, upstream.url)
    assert upstream.peers[0] != upstream.peers[1]


async def test_chunked_body_arrives_chunk_by_chunk_and_its_connection_is_not_reused(
    pool: WatchedPool, serve: Serve
) -> None:
    gate = asyncio.Event()

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await gate.wait()
        writer.write(b"6\r\n world\r\n0\r\n\r\n")

    upstream = await serve(answer)
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "GET", "/", [], b"")
        assert await conn.read() == b"hello"
        gate.set()
        assert await conn.read_all() == b" world"
    # As llama-server does after every stream, the server may close it any moment now.
    assert not conn.reusable()
    pool.release(conn)
    assert await get(pool, upstream.url) == (200, b"hello world")
    assert upstream.peers[0] != upstream.peers[1]


async def test_body_delimited_by_the_connection_ending_is_complete(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(answer_with(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close=True))
    assert await get(pool, upstream.url) == (200, b"until the end")


async def test_head_response_has_no_body_and_its_connection_is_not_reused(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(answer_with(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"))
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "HEAD", "/", [], b"")
        assert ("Content-Length", "100") in conn.headers
        assert await conn.read() == b""
        pool.release(conn)
        assert await pool.lost.get() is conn
    upstream.answer = answer_with(reply())
    assert await get(pool, upstream.url) == (200, b"ok")


async def test_informational_responses_are_skipped(pool: WatchedPool, serve: Serve) -> None:
    upstream = await serve(
        answer_with(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n",
            reply(b"final", extra=b"X-Final: yes\r\n"),
        )
    )
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "POST", "/", [], b"{}")
    assert (conn.status, conn.reason) == (200, "OK")
    assert conn.headers == [("Content-Length", "5"), ("X-Final", "yes")]
    assert await conn.read_all() == b"final"
    pool.release(conn)
    assert await get(pool, upstream.url) == (200, b"final")
    assert len(set(upstream.peers)) == 1


async def test_a_slow_reader_pauses_the_upstream_and_gets_every_byte(
    pool: WatchedPool, serve: Serve
) -> None:
    # Far more than the kernel buffers hold: the server can only finish if swapd buffers it all.
    body = bytes(range(256)) * (24 * 1024 * 1024 // 256)
    all_sent = asyncio.Event()

    async def answer(request: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()
        all_sent.set()

    upstream = await serve(answer)
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "GET", "/", [], b"")
    # Nobody reads: without backpressure the whole body lands in swapd's memory at once.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await all_sent.wait()
    digest = hashlib.sha256()
    async with asyncio.timeout(10):
        while chunk := await conn.read():
            # At most one socket read beyond the high-water mark is ever held.
            assert len(chunk) <= HIGH_WATER + 256 * 1024
            digest.update(chunk)
        await all_sent.wait()
    assert digest.digest() == hashlib.sha256(body).digest()
    assert conn.reusable()
    pool.release(conn)


async def test_cancelled_while_waiting_for_the_head_closes_the_connection(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(hang)
    request = asyncio.ensure_future(pool.request(upstream.url, "GET", "/", [], b""))
    async with asyncio.timeout(5):
        sent = await upstream.requests.get()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    async with asyncio.timeout(5):
        assert await upstream.ended.get() == sent.peer
        await pool.lost.get()


async def test_cancelled_mid_body_closes_the_connection_on_release(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(
        answer_with(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
    )
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "GET", "/", [], b"")
        assert await conn.read() == b"one"
    # A deadline already past cancels the read as soon as it waits.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await conn.read()
    assert not conn.reusable()
    pool.release(conn)
    async with asyncio.timeout(5):
        assert await upstream.ended.get() == upstream.peers[0]
        assert await pool.lost.get() is conn


async def test_an_unreachable_server_raises_connection_refused(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(hang)
    await upstream.stop()
    with pytest.raises(ConnectionRefusedError):
        await pool.request(upstream.url, "GET", "/", [], b"")


@pytest.mark.parametrize(
    ("sent", "close"),
    [(b"", True), (b"HTTP/1.1 200 OK\r\nContent-Le", True), (b"SMTP ready\r\n\r\n", False)],
    ids=["nothing", "half-a-head", "not-http"],
)
async def test_no_response_head_raises_upstream_broke(
    pool: WatchedPool, serve: Serve, sent: bytes, close: bool
) -> None:
    upstream = await serve(answer_with(sent, close=close))
    async with asyncio.timeout(5):
        with pytest.raises(UpstreamBroke):
            await pool.request(upstream.url, "GET", "/", [], b"")


async def test_a_body_cut_short_raises_after_the_bytes_that_came(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(
        answer_with(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", close=True)
    )
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "GET", "/", [], b"")
        assert await conn.read() == b"half"
        with pytest.raises(UpstreamBroke):
            await conn.read()
    pool.release(conn)


async def test_unasked_bytes_on_an_idle_connection_keep_it_from_reuse(
    pool: WatchedPool, serve: Serve
) -> None:
    upstream = await serve(answer_with(reply(), reply(b"unasked")))
    async with asyncio.timeout(5):
        conn = await pool.request(upstream.url, "GET", "/", [], b"")
        assert await conn.read_all() == b"ok"
        pool.release(conn)
        assert await pool.lost.get() is conn
    assert await get(pool, upstream.url) == (200, b"ok")
    assert upstream.peers[0] != upstream.peers[1]


async def test_close_closes_every_connection(serve: Serve) -> None:
    upstream = await serve(answer_with(reply()))
    pool = UpstreamPool()
    async with asyncio.timeout(5):
        busy = await pool.request(upstream.url, "GET", "/", [], b"")
        await get(pool, upstream.url)
        await pool.close()
        ended = {await upstream.ended.get(), await upstream.ended.get()}
    assert ended == set(upstream.peers)
    assert not busy.usable()
