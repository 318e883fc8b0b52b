"""Forwarding: headers, streaming as bytes arrive, leases released exactly once, upstream errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from swapd.errors import ConcurrencyLimited, ModelUnavailable, SwapdHttpError

from .conftest import MakeClient
from .fake_router import FakeRouter, FakeUpstream, echo_of

Client = TestClient[Any, Any]
CHAT = "/v1/chat/completions"
SSE = {"X-Fake-Mode": "sse"}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_success_releases_the_lease_once(client: Client, router: FakeRouter) -> None:
    resp = await client.post(CHAT, json={"model": "llama"})
    assert resp.status == 200
    await resp.read()
    await router.wait_released(1)
    assert router.released == router.leases


async def test_request_headers_are_forwarded_without_hop_by_hop_ones(
    client: Client, upstream: FakeUpstream
) -> None:
    headers = {
        "X-Custom": "kept",
        "Authorization": "Bearer upstream-token",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "dropped",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Proxy-Authorization": "Basic xyz",
        "Trailer": "X-Sum",
    }
    await client.post(CHAT, json={"model": "llama"}, headers=headers)
    seen = upstream.seen[-1]
    assert seen.header("X-Custom") == "kept"
    # Without configured API keys, the client's credentials are meant for the upstream.
    assert seen.header("Authorization") == "Bearer upstream-token"
    for name in ("X-Hop", "Keep-Alive", "TE", "Proxy-Authorization", "Trailer"):
        assert seen.header(name) is None, name
    assert seen.header("Host") == upstream.url.removeprefix("http://")


async def test_swapd_adds_no_client_headers_of_its_own(
    client: Client, upstream: FakeUpstream
) -> None:
    await client.post(
        CHAT,
        json={"model": "llama"},
        skip_auto_headers=["User-Agent", "Accept-Encoding", "Accept"],
    )
    seen = upstream.seen[-1]
    for name in ("User-Agent", "Accept-Encoding", "Accept"):
        assert seen.header(name) is None, name


async def test_response_status_and_headers_pass_through(client: Client) -> None:
    resp = await client.post(
        CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "status", "X-Fake-Status": "201"}
    )
    assert resp.status == 201
    assert resp.headers["X-Upstream"] == "yes"
    assert resp.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert "X-Secret-Hop" not in resp.headers


async def test_no_content_response_passes_through(client: Client, router: FakeRouter) -> None:
    resp = await client.post(
        CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "status", "X-Fake-Status": "204"}
    )
    assert resp.status == 204
    assert await resp.read() == b""
    await router.wait_released(1)


async def test_compressed_bodies_pass_through_unchanged(client: Client) -> None:
    resp = await client.post(
        CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "gzip"}, auto_decompress=False
    )
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await resp.read()) == b"compressed words" * 10


async def test_large_body_with_length_is_relayed_with_its_length(
    client: Client, router: FakeRouter
) -> None:
    resp = await client.post(CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "big"})
    body = await resp.read()
    assert resp.headers["Content-Length"] == str(len(body))
    assert body.strip(b"x") == b""
    await router.wait_released(1)


@pytest.mark.parametrize("mode", ["sse", "chunked"])
async def test_chunks_reach_the_client_before_the_upstream_finishes(
    client: Client, router: FakeRouter, upstream: FakeUpstream, mode: str
) -> None:
    # Bounded: a proxy that buffers would never deliver the headers, let alone a chunk.
    async with asyncio.timeout(5):
        resp = await client.post(CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": mode})
    assert resp.status == 200
    if mode == "sse":
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert resp.headers["X-Accel-Buffering"] == "no"
    else:
        assert "X-Accel-Buffering" not in resp.headers

    first, second = b'data: {"n": 1}\n\n', b'data: {"n": 2}\n\n'
    upstream.send(first)
    async with asyncio.timeout(5):
        assert await resp.content.readexactly(len(first)) == first
    assert not upstream.finished.is_set()
    upstream.send(second)
    async with asyncio.timeout(5):
        assert await resp.content.readexactly(len(second)) == second
    assert router.released == []
    upstream.end()
    assert await resp.content.read() == b""
    await router.wait_released(1)


async def test_client_leaving_mid_stream_releases_once_and_closes_upstream(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await client.post(CHAT, json={"model": "llama"}, headers=SSE)
    upstream.send(b"data: 1\n\n")
    assert await resp.content.readexactly(9) == b"data: 1\n\n"
    resp.close()
    await router.wait_released(1)
    # The upstream saw its connection close: that is what makes llama-server stop generating.
    async with asyncio.timeout(5):
        await upstream.disconnected.wait()
    assert router.released == router.leases


async def test_client_leaving_before_upstream_headers_releases_once(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    request = asyncio.ensure_future(
        client.post(CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "hang"})
    )
    async with asyncio.timeout(5):
        await upstream.started.wait()
    request.cancel()
    await router.wait_released(1)
    async with asyncio.timeout(5):
        await upstream.disconnected.wait()


async def test_client_leaving_while_queued_withdraws_without_release(
    client: Client, router: FakeRouter
) -> None:
    router.gate = asyncio.Event()
    request = asyncio.ensure_future(client.post(CHAT, json={"model": "llama"}))
    async with asyncio.timeout(5):
        await router.waiting.wait()
    request.cancel()
    async with asyncio.timeout(5):
        await router.withdrawn.wait()
    assert router.leases == []
    assert router.released == []


async def test_queued_request_is_served_once_the_router_grants(
    client: Client, router: FakeRouter
) -> None:
    router.gate = asyncio.Event()
    request = asyncio.ensure_future(client.post(CHAT, json={"model": "llama"}))
    async with asyncio.timeout(5):
        await router.waiting.wait()
    router.gate.set()
    resp = await request
    assert resp.status == 200
    await router.wait_released(1)


async def test_upstream_breaking_off_an_event_stream_ends_it_with_an_error_event(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await client.post(CHAT, json={"model": "llama"}, headers=SSE)
    upstream.send(b"data: 1\n\n")
    assert await resp.content.readexactly(9) == b"data: 1\n\n"
    upstream.send(b'data: {"half')  # the server dies inside an event
    upstream.abort()
    rest = (await resp.content.read()).decode()
    # A well-formed end: the torn event closed, an OpenAI error event, then [DONE].
    events = [e for e in rest.split("\n\n") if e.strip()]
    assert events[0] == 'data: {"half'
    error = json.loads(events[1].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_error"
    assert "'llama'" in error["message"]
    assert "broke off" in error["message"]
    assert events[2] == "data: [DONE]"
    await router.wait_released(1)


async def test_upstream_breaking_off_a_plain_stream_ends_the_response_abruptly(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await client.post(CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "chunked"})
    upstream.send(b"part 1")
    assert await resp.content.readexactly(6) == b"part 1"
    upstream.abort()
    # Not an event stream: the client must learn the body is incomplete, not see a clean end.
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.content.read()
    await router.wait_released(1)


async def test_unreachable_upstream_is_502_naming_the_model(
    make_client: MakeClient, router: FakeRouter
) -> None:
    router.upstream = f"http://127.0.0.1:{_closed_port()}"
    client = await make_client()
    resp = await client.post(CHAT, json={"model": "gpt-4o"})
    assert resp.status == 502
    error = (await resp.json())["error"]
    assert error["code"] == "upstream_error"
    assert "'llama'" in error["message"]
    await router.wait_released(1)
    assert router.released == router.leases


async def test_a_model_whose_server_died_unnoticed_is_acquired_again_once(
    make_client: MakeClient, router: FakeRouter, upstream: FakeUpstream
) -> None:
    alive = router.upstream
    router.upstream = f"http://127.0.0.1:{_closed_port()}"  # the child just died

    def restarted() -> None:
        router.upstream = alive

    router.revive = restarted
    client = await make_client()
    resp = await client.post(CHAT, json={"model": "llama"})
    assert resp.status == 200
    assert len(router.lost) == 1
    assert router.acquired == ["llama", "llama"]
    await router.wait_released(2)


async def test_a_model_whose_server_is_alive_but_refuses_is_not_retried(
    make_client: MakeClient, router: FakeRouter
) -> None:
    router.upstream = f"http://127.0.0.1:{_closed_port()}"
    client = await make_client()
    resp = await client.post(CHAT, json={"model": "llama"})
    assert resp.status == 502
    assert router.acquired == ["llama"]
    assert len(router.lost) == 1


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (ConcurrencyLimited("model 'llama': 10 requests already"), 429, {"Retry-After": "1"}),
        (ModelUnavailable("model 'llama' failed to start: exit 1"), 503, {}),
    ],
)
async def test_router_errors_are_rendered_and_nothing_is_released(
    client: Client,
    router: FakeRouter,
    error: SwapdHttpError,
    status: int,
    headers: dict[str, str],
) -> None:
    router.error = error
    resp = await client.post(CHAT, json={"model": "llama"})
    assert resp.status == status
    for name, value in headers.items():
        assert resp.headers[name] == value
    assert await resp.json() == error.body()
    assert router.acquired == ["llama"]
    assert router.released == []


async def test_concurrent_streams_are_independent(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    # Echo requests complete while a stream is held open: no pool limit serialises them.
    stream = await client.post(CHAT, json={"model": "llama"}, headers=SSE)
    replies = await asyncio.gather(
        *(client.post(CHAT, json={"model": "qwen", "n": n}) for n in range(20))
    )
    assert [r.status for r in replies] == [200] * 20
    assert {echo_of(await r.json())["method"] for r in replies} == {"POST"}
    upstream.end()
    assert await stream.read() == b""
    await router.wait_released(21)


async def test_unexpected_errors_are_500_json(
    client: Client, router: FakeRouter, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(model: str) -> Any:
        raise RuntimeError("bug")

    router.acquire = broken  # type: ignore[method-assign]
    resp = await client.post(CHAT, json={"model": "llama"})
    assert resp.status == 500
    assert (await resp.json())["error"]["type"] == "server_error"
    assert "bug" in caplog.text


async def test_upstream_connections_are_kept_alive(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    for _ in range(3):
        resp = await client.post(CHAT, json={"model": "llama"})
        await resp.read()
        await router.wait_released(len(router.leases))
    assert len({seen.peer for seen in upstream.seen}) == 1


async def test_stream_cut_short_is_not_reused(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await client.post(CHAT, json={"model": "llama"}, headers=SSE)
    resp.close()
    await router.wait_released(1)
    resp = await client.post(CHAT, json={"model": "llama"})
    assert resp.status == 200
    assert upstream.seen[0].peer != upstream.seen[1].peer
