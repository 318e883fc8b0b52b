"""ANY /upstream/<model>/<path>: passthrough to one model's server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from .fake_router import FakeRouter, FakeUpstream, echo_of

Client = TestClient[Any, Any]


@pytest.mark.parametrize(
    ("path", "model", "forwarded"),
    [
        ("/upstream/llama/health", "llama", "/health"),
        ("/upstream/llama/", "llama", "/"),
        ("/upstream/l/v1/models", "llama", "/v1/models"),
        ("/upstream/org/qwen:7b/props", "org/qwen:7b", "/props"),
        ("/upstream/org/qwen%3A7b/props", "org/qwen:7b", "/props"),
        ("/upstream/org/other/x", "org", "/other/x"),
        ("/upstream/llama/a%2Fb%20c/%7E", "llama", "/a%2Fb%20c/%7E"),
    ],
)
async def test_longest_model_prefix_is_stripped_and_the_rest_forwarded_verbatim(
    client: Client, router: FakeRouter, path: str, model: str, forwarded: str
) -> None:
    resp = await client.get(URL(path, encoded=True))
    assert resp.status == 200, await resp.text()
    echo = echo_of(await resp.json())
    assert echo["path"] == forwarded
    assert router.acquired == [model]
    await router.wait_released(1)


async def test_query_and_body_are_kept_for_any_method(
    client: Client, upstream: FakeUpstream
) -> None:
    for method in ("PUT", "DELETE", "PATCH", "POST"):
        url = URL("/upstream/qwen/slots/0?action=save&f=a%2Fb", encoded=True)
        resp = await client.request(method, url, data=b"\x00raw")
        echo = echo_of(await resp.json())
        assert echo["method"] == method
        assert echo["query"] == "action=save&f=a%2Fb"
        assert upstream.seen[-1].body == b"\x00raw"


async def test_no_filters_or_renames_on_passthrough(client: Client, upstream: FakeUpstream) -> None:
    body = json.dumps({"model": "renamed", "temperature": 1}).encode()
    await client.post("/upstream/renamed/v1/chat/completions", data=body)
    assert upstream.seen[-1].body == body


@pytest.mark.parametrize(("method", "status"), [("GET", 301), ("HEAD", 301), ("POST", 308)])
async def test_model_without_trailing_slash_redirects(
    client: Client, router: FakeRouter, method: str, status: int
) -> None:
    resp = await client.request(
        method, URL("/upstream/org/qwen:7b?x=%2F", encoded=True), allow_redirects=False
    )
    assert resp.status == status
    assert resp.headers["Location"] == "/upstream/org/qwen:7b/?x=%2F"
    assert router.acquired == []


async def test_head_keeps_the_upstream_length(client: Client) -> None:
    fixed_body = {"X-Fake-Mode": "gzip"}
    get = await client.get("/upstream/llama/x", headers=fixed_body, auto_decompress=False)
    head = await client.head("/upstream/llama/x", headers=fixed_body)
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(await get.read()))
    assert await head.read() == b""


@pytest.mark.parametrize(
    "path",
    [
        "/upstream/llama/%2e%2e/etc",
        "/upstream/llama/a/%2E./b",
        "/upstream/llama/a/..%2Fb",
        "/upstream/llama/..%5cb",
    ],
)
async def test_dot_dot_segments_are_rejected(client: Client, router: FakeRouter, path: str) -> None:
    resp = await client.get(URL(path, encoded=True))
    assert resp.status == 400
    assert "'..'" in (await resp.json())["error"]["message"]
    assert router.acquired == []


async def test_literal_dot_dot_is_rejected(client: Client, router: FakeRouter) -> None:
    # HTTP clients resolve '..' before sending, so write the request line by hand.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /upstream/llama/a/../../x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert status_line.split()[1] == b"400"
    assert router.acquired == []


async def test_unknown_model_in_path_is_404(client: Client) -> None:
    resp = await client.get("/upstream/lama/props")
    assert resp.status == 404
    message = (await resp.json())["error"]["message"]
    assert "/upstream/lama/props" in message
    assert "'llama'" in message
