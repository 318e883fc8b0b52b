"""Model-dispatched endpoints: finding the model, resolving it, rewriting the body."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from swapd.config.model import Config
from swapd.web.context import CONTEXT
from swapd.web.openai import Catalog
from swapd.web.server import DISPATCHED_PATHS

from .conftest import MakeClient, make_config, spec
from .fake_router import FakeRouter, FakeUpstream, dumps, echo_of

Client = TestClient[Any, Any]
CHAT = "/v1/chat/completions"


def _multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "XyZ") -> bytes:
    parts = []
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename:
            head += "Content-Type: application/octet-stream\r\n"
        parts.append(head.encode() + b"\r\n" + value + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


async def _error(resp: aiohttp.ClientResponse, status: int, code: str) -> str:
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert isinstance(message, str)
    return message


@pytest.mark.parametrize("path", DISPATCHED_PATHS)
async def test_dispatched_endpoint_forwards_to_the_named_model(
    client: Client, router: FakeRouter, path: str
) -> None:
    resp = await client.post(path, json={"model": "org/qwen:7b", "input": "hi"})
    assert resp.status == 200
    assert resp.headers["X-Upstream"] == "yes"
    echo = echo_of(await resp.json())
    assert echo["method"] == "POST"
    assert echo["path"] == path
    assert router.acquired == ["org/qwen:7b"]
    await router.wait_released(1)


async def test_query_string_is_kept(client: Client) -> None:
    url = URL("/v1/completions?x=a%20b&y=%2F", encoded=True)
    resp = await client.post(url, json={"model": "llama"})
    echo = echo_of(await resp.json())
    assert echo["query"] == "x=a%20b&y=%2F"


async def test_exact_bytes_are_forwarded_when_nothing_changes(
    client: Client, upstream: FakeUpstream
) -> None:
    body = b'{ "model" : "llama",\n  "x": 1.50, "s": "caf\\u00e9" }'
    resp = await client.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200
    assert upstream.seen[-1].body == body
    assert upstream.seen[-1].header("Content-Length") == str(len(body))


async def test_alias_resolves_to_model_id_and_body_is_untouched(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    body = dumps({"model": "gpt-4o", "messages": []})
    resp = await client.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200
    assert router.acquired == ["llama"]
    assert upstream.seen[-1].body == body


async def test_use_model_name_rewrites_json_and_fixes_content_length(
    client: Client, upstream: FakeUpstream
) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": "renamed", "messages": [1]})
    assert resp.status == 200
    seen = upstream.seen[-1]
    assert json.loads(seen.body) == {"model": "upstream-name", "messages": [1]}
    assert seen.header("Content-Length") == str(len(seen.body))


async def test_filters_strip_and_set_params_but_never_model(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    payload = {"model": "filtered", "temperature": 0.2, "top_k": 40, "keep": True}
    resp = await client.post("/v1/completions", json=payload)
    assert resp.status == 200
    assert router.acquired == ["filtered"]
    assert json.loads(upstream.seen[-1].body) == {"model": "filtered", "top_k": 5, "keep": True}


async def test_filters_that_change_nothing_forward_the_original_bytes(
    client: Client, upstream: FakeUpstream
) -> None:
    body = b'{"model":  "filtered", "top_k": 5}'
    await client.post("/v1/completions", data=body, headers={"Content-Type": "application/json"})
    assert upstream.seen[-1].body == body


async def test_model_from_multipart_field(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    audio = bytes(range(256)) * 40
    body = _multipart([("file", audio, "a.wav"), ("model", b"qwen", None)])
    resp = await client.post(
        "/v1/audio/transcriptions",
        data=body,
        headers={"Content-Type": 'multipart/form-data; boundary="XyZ"'},
    )
    assert resp.status == 200
    assert router.acquired == ["org/qwen:7b"]
    assert upstream.seen[-1].body == body


async def test_use_model_name_rewrites_the_multipart_model_field(
    client: Client, upstream: FakeUpstream
) -> None:
    audio = b"RIFF\r\n--not-a-boundary\r\n" * 100
    fields = [("model", b"renamed", None), ("file", audio, "a.wav"), ("language", b"en", None)]
    resp = await client.post(
        "/v1/audio/transcriptions",
        data=_multipart(fields),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert resp.status == 200
    fields[0] = ("model", b"upstream-name", None)
    seen = upstream.seen[-1]
    assert seen.body == _multipart(fields)
    assert seen.header("Content-Length") == str(len(seen.body))


async def test_multipart_built_by_a_client_library(client: Client, router: FakeRouter) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"\x00\x01", filename="a.wav", content_type="audio/wav")
    form.add_field("model", "l")
    resp = await client.post("/v1/audio/transcriptions", data=form)
    assert resp.status == 200
    assert router.acquired == ["llama"]


async def test_model_from_urlencoded_form(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/v1/completions", data={"prompt": "x", "model": "qwen"})
    assert resp.status == 200
    assert router.acquired == ["org/qwen:7b"]


async def test_json_sent_with_a_form_content_type_is_understood(
    client: Client, router: FakeRouter
) -> None:
    # What `curl -d '{...}'` sends.
    resp = await client.post(
        "/v1/completions",
        data=b'{"model": "llama"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200
    assert router.acquired == ["llama"]


async def test_model_from_query_parameter(client: Client, router: FakeRouter) -> None:
    resp = await client.post(
        "/infill?model=org%2Fqwen%3A7b", data=b"raw", headers={"Content-Type": "text/plain"}
    )
    assert resp.status == 200
    assert router.acquired == ["org/qwen:7b"]


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b'{"model": "llama",', "application/json", "not valid JSON"),
        (b"", "application/json", "not valid JSON"),
        (b'["llama"]', "application/json", "JSON object"),
        (b'{"model": 7}', "application/json", "must be a string"),
    ],
)
async def test_bad_bodies_are_400(
    client: Client, router: FakeRouter, body: bytes, content_type: str, fragment: str
) -> None:
    resp = await client.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": content_type}
    )
    assert fragment in await _error(resp, 400, "bad_request")
    assert router.acquired == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"messages": []}', "application/json"),
        (b'{"model": null}', "application/json"),
        (b"prompt=x", "application/x-www-form-urlencoded"),
        (b"hello", "text/plain"),
    ],
)
async def test_missing_model_is_400_and_says_where_swapd_looks(
    client: Client, router: FakeRouter, body: bytes, content_type: str
) -> None:
    resp = await client.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": content_type}
    )
    message = await _error(resp, 400, "bad_request")
    assert '"model" field' in message
    assert "?model=" in message
    assert router.acquired == []


async def test_missing_model_in_multipart_is_400(client: Client) -> None:
    resp = await client.post(
        "/v1/audio/transcriptions",
        data=_multipart([("file", b"x", "a.wav")]),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    await _error(resp, 400, "bad_request")


async def test_empty_model_is_400(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": ""})
    assert "empty" in await _error(resp, 400, "bad_request")
    assert router.acquired == []


async def test_unknown_model_is_404_with_suggestions(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": "lama"})
    message = await _error(resp, 404, "model_not_found")
    assert "'lama'" in message
    assert "'llama'" in message
    assert "hidden" not in message
    assert router.acquired == []


async def test_unknown_model_without_close_names_lists_some(client: Client) -> None:
    resp = await client.post("/v1/chat/completions", json={"model": "zzzzzzzz"})
    assert "available:" in await _error(resp, 404, "model_not_found")


async def test_body_over_the_limit_is_413(make_client: MakeClient, router: FakeRouter) -> None:
    client = await make_client(make_config(max_body_bytes=1024))
    resp = await client.post("/v1/chat/completions", json={"model": "llama", "p": "x" * 2000})
    assert "1024" in await _error(resp, 413, "payload_too_large")
    assert router.acquired == []


async def test_chunked_body_over_the_limit_is_413(make_client: MakeClient) -> None:
    client = await make_client(make_config(max_body_bytes=1024))

    async def chunks() -> Any:
        yield b'{"model": "llama", "p": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    resp = await client.post(
        "/v1/chat/completions", data=chunks(), headers={"Content-Type": "application/json"}
    )
    await _error(resp, 413, "payload_too_large")


async def test_body_at_the_limit_is_accepted(make_client: MakeClient) -> None:
    body = b'{"model": "llama"}'
    client = await make_client(make_config(max_body_bytes=len(body)))
    resp = await client.post(
        "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200


async def test_wrong_method_is_405_json(client: Client) -> None:
    resp = await client.get("/v1/chat/completions")
    await _error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


async def test_unknown_route_is_404_json(client: Client) -> None:
    resp = await client.get("/v2/nothing")
    assert "/v2/nothing" in await _error(resp, 404, "not_found")


async def test_filters_apply_to_json_bodies_when_the_model_is_in_the_query(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await client.post("/v1/completions?model=filtered", json={"temperature": 1})
    assert resp.status == 200
    assert router.acquired == ["filtered"]
    assert json.loads(upstream.seen[-1].body) == {"top_k": 5}


async def test_json_without_a_content_type_is_understood(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await client.post(
        "/v1/completions", data=b' {"model": "qwen"}', skip_auto_headers=["Content-Type"]
    )
    assert resp.status == 200
    assert router.acquired == ["org/qwen:7b"]
    assert upstream.seen[-1].header("Content-Type") is None


async def test_reloaded_config_routes_new_names_and_keys(
    client: Client, router: FakeRouter
) -> None:
    config = make_config(api_keys=("k",))
    extra = spec("fresh", aliases=("new",))
    config = replace(config, models={**config.models, "fresh": extra})
    client.app[CONTEXT].use_config(config)

    resp = await client.post(CHAT, json={"model": "new"})
    assert resp.status == 401
    resp = await client.post(CHAT, json={"model": "new"}, headers={"x-api-key": "k"})
    assert resp.status == 200
    assert router.acquired == ["fresh"]


def test_catalog_resolves_like_config_resolve() -> None:
    models = [spec("a", aliases=("b", "x")), spec("b"), spec("c", aliases=("x",))]
    config = Config(models={m.id: m for m in models})
    catalog = Catalog(config)
    for name in ("a", "b", "c", "x", "y", ""):
        assert catalog.resolve(name) == config.resolve(name), name
