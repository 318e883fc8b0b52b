"""API keys and CORS."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .conftest import MakeClient, make_config
from .fake_router import FakeRouter, FakeUpstream

Client = TestClient[Any, Any]
CHAT = "/v1/chat/completions"
KEYS = ("first-key", "s3cret")


@pytest.fixture
async def keyed(make_client: MakeClient) -> Client:
    return await make_client(make_config(api_keys=KEYS))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer s3cret"},
        {"Authorization": "bearer first-key"},
        {"x-api-key": "s3cret"},
        {"Authorization": _basic("anyone", "s3cret")},
        {"Authorization": _basic("", "first-key")},
    ],
)
async def test_accepted_credentials_are_not_forwarded(
    keyed: Client, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    resp = await keyed.post(CHAT, json={"model": "llama"}, headers=headers)
    assert resp.status == 200
    seen = upstream.seen[-1]
    assert seen.header("Authorization") is None
    assert seen.header("x-api-key") is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"x-api-key": "s3cret-but-longer"},
        {"Authorization": _basic("s3cret", "wrong")},
        {"Authorization": "Basic not-base64!"},
        {"Authorization": "Token s3cret"},
    ],
)
async def test_missing_or_wrong_key_is_401(
    keyed: Client, router: FakeRouter, headers: dict[str, str]
) -> None:
    resp = await keyed.post(CHAT, json={"model": "llama"}, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert (await resp.json())["error"]["code"] == "invalid_api_key"
    assert router.acquired == []


@pytest.mark.parametrize(
    ("mode", "challenged"), [("cors", False), ("same-origin", False), ("navigate", True)]
)
async def test_a_pages_own_fetch_gets_a_401_without_basic_challenge(
    keyed: Client, mode: str, challenged: bool
) -> None:
    # No WWW-Authenticate for fetch(): the browser would pop up its own password dialog.
    resp = await keyed.get("/v1/models", headers={"Sec-Fetch-Mode": mode})
    assert resp.status == 401
    assert ("WWW-Authenticate" in resp.headers) is challenged
    assert (await resp.json())["error"]["code"] == "invalid_api_key"


async def test_admin_and_upstream_routes_need_the_key_too(keyed: Client) -> None:
    assert (await keyed.get("/v1/models")).status == 401
    assert (await keyed.post("/unload")).status == 401
    assert (await keyed.get("/upstream/llama/health")).status == 401
    resp = await keyed.get("/v1/models", headers={"x-api-key": "s3cret"})
    assert resp.status == 200


async def test_health_is_exempt(keyed: Client) -> None:
    resp = await keyed.get("/health")
    assert resp.status == 200
    assert await resp.text() == "OK"


async def test_preflight_is_answered_without_a_key(keyed: Client, router: FakeRouter) -> None:
    resp = await keyed.options(
        CHAT,
        headers={
            "Origin": "http://ui.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization, bad header",
        },
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert resp.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
    assert resp.headers["Access-Control-Max-Age"] == "86400"
    assert router.acquired == []


async def test_answers_to_browser_pages_allow_any_origin(keyed: Client) -> None:
    resp = await keyed.get("/v1/models", headers={"Origin": "http://ui.example"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    resp = await keyed.get("/health")
    assert "Access-Control-Allow-Origin" not in resp.headers
