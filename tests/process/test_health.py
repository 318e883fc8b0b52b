"""The readiness probe and its polling loop, against small in-process servers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from swapd.process.health import Readiness, probe_http, wait_ready
from swapd.process.ports import port_in_use
from tests.process.conftest import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def _answering(statuses: list[int], seen: list[bytes]) -> Handler:
    """Answers each connection with the next status (the last one repeats)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return handler


async def test_probe_reads_the_status_and_sends_a_proper_request(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    seen: list[bytes] = []
    base = await serve(_answering([503], seen))
    assert await probe_http(base + "/health?x=1") == 503
    request = seen[0].decode()
    assert request.startswith("GET /health?x=1 HTTP/1.1\r\n")
    assert f"Host: {base.removeprefix('http://')}\r\n" in request
    assert "Connection: close\r\n" in request


async def test_probe_reports_why_there_was_no_status(
    serve: Callable[[Handler], Awaitable[str]],
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-nope\r\n")
        writer.close()

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    assert await probe_http(await serve(garbage) + "/") == "no HTTP status line"
    assert await probe_http(await serve(hang_up) + "/") in (
        "connection closed without an answer",
        "connection reset by peer",
    )
    refused = await probe_http(f"http://127.0.0.1:{free_port()}/health")
    assert refused == "connection refused"


async def test_wait_ready_polls_until_200(serve: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[bytes] = []
    base = await serve(_answering([503, 503, 404, 200], seen))
    progress = Readiness()
    async with asyncio.timeout(10):
        await wait_ready(base + "/health", progress)
    assert progress.polls == 4
    assert progress.last == "HTTP 200"


async def test_wait_ready_over_https_keeps_trying_until_cancelled() -> None:
    progress = Readiness()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await wait_ready(f"https://127.0.0.1:{free_port()}/health", progress)
    assert progress.polls > 1
    assert progress.last != "no answer yet"


def test_port_in_use_sees_a_listener_but_not_time_wait_leftovers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        # As llama-server (cpp-httplib) and aiohttp do; TIME_WAIT is only shareable then.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            # The server side closes first, so its end lingers in TIME_WAIT on `port`,
            # as after a model server is stopped with connections open.
            accepted.close()
            client.recv(1)
    assert not port_in_use(port)
