"""The browser login: POST /api/login sets the `swapd_key` cookie that EventSource can carry."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from swapd.web.auth import SESSION_COOKIE, session_token
from swapd.web.context import CONTEXT

from .conftest import MakeClient, make_config

Client = TestClient[Any, Any]
KEYS = ("first-key", "s3cret")


@pytest.fixture
async def keyed(make_client: MakeClient) -> Client:
    return await make_client(make_config(api_keys=KEYS))


async def _login(client: Client, key: str = "s3cret") -> str:
    resp = await client.post("/api/login", json={"key": key})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"ok": True, "required": True}
    return resp.cookies[SESSION_COOKIE].value


async def test_login_sets_an_httponly_strict_cookie_that_is_not_the_key(keyed: Client) -> None:
    resp = await keyed.post("/api/login", json={"key": "s3cret"})
    assert resp.status == 200
    header = resp.headers["Set-Cookie"]
    assert header.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in header
    assert "SameSite=Strict" in header
    assert "Path=/" in header
    assert "Max-Age=" in header
    assert "Secure" not in header, "plain http: a Secure cookie would never come back"
    value = resp.cookies[SESSION_COOKIE].value
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert "s3cret" not in header
    ctx = keyed.app[CONTEXT]
    assert value == session_token(ctx.session_secret, b"s3cret")


@pytest.mark.parametrize("path", ["/api/events", "/logs", "/running", "/v1/models"])
async def test_the_cookie_opens_what_a_key_header_opens(keyed: Client, path: str) -> None:
    assert (await keyed.get(path)).status == 401
    await _login(keyed)  # the test client keeps the cookie, as a browser does
    async with keyed.get(path) as resp:
        assert resp.status == 200
        if path == "/api/events":
            assert (await resp.content.readline()) == b"retry: 3000\n"


async def test_wrong_key_is_a_401_the_browser_does_not_prompt_for(keyed: Client) -> None:
    resp = await keyed.post("/api/login", json={"key": "wrong"})
    assert resp.status == 401
    assert "WWW-Authenticate" not in resp.headers
    assert SESSION_COOKIE not in resp.cookies
    assert (await resp.json())["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("body", [b"", b"not json", b'{"key": 5}', b"[]", b'{"password": "x"}'])
async def test_malformed_login_is_a_400(keyed: Client, body: bytes) -> None:
    resp = await keyed.post("/api/login", data=body)
    assert resp.status == 400
    assert '{"key"' in (await resp.json())["error"]["message"]


async def test_login_status_needs_no_key(keyed: Client) -> None:
    resp = await keyed.get("/api/login")
    assert await resp.json() == {"required": True, "authenticated": False}
    resp = await keyed.get("/api/login", headers={"Authorization": "Bearer first-key"})
    assert await resp.json() == {"required": True, "authenticated": True}
    await _login(keyed)
    assert await (await keyed.get("/api/login")).json() == {
        "required": True,
        "authenticated": True,
    }


async def test_without_keys_login_is_a_no_op(client: Client) -> None:
    resp = await client.post("/api/login", json={"key": "anything"})
    assert resp.status == 200
    assert await resp.json() == {"ok": True, "required": False}
    assert SESSION_COOKIE not in resp.cookies
    assert await (await client.get("/api/login")).json() == {
        "required": False,
        "authenticated": True,
    }


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-Fetch-Site": "same-origin"}, 200),
        ({"Sec-Fetch-Site": "none"}, 200),  # typed into the address bar
        ({"Sec-Fetch-Site": "same-site"}, 401),  # another port on the same host
        ({"Sec-Fetch-Site": "cross-site"}, 401),
        ({"Origin": "http://evil.example"}, 401),
        ({"Origin": "null"}, 401),
        ({}, 200),  # not a browser, or an old one on a plain GET
    ],
)
async def test_the_cookie_counts_only_from_swapds_own_pages(
    keyed: Client, headers: dict[str, str], status: int
) -> None:
    await _login(keyed)
    assert (await keyed.post("/unload", headers=headers)).status == status


async def test_same_origin_by_origin_header(keyed: Client) -> None:
    await _login(keyed)
    host = f"{keyed.host}:{keyed.port}"
    assert (await keyed.get("/running", headers={"Origin": f"http://{host}"})).status == 200
    assert (await keyed.get("/running", headers={"Origin": "http://127.0.0.2:1"})).status == 401


async def test_a_forged_or_foreign_cookie_is_refused(
    keyed: Client, make_client: MakeClient
) -> None:
    other = await make_client(make_config(api_keys=KEYS))
    foreign = await _login(other)  # another swapd (another secret) with the same keys
    for value in (foreign, "0" * 64, "s3cret", ""):
        resp = await keyed.get("/running", headers={"Cookie": f"{SESSION_COOKIE}={value}"})
        assert resp.status == 401, value


async def test_removing_the_key_from_the_config_ends_its_cookie(keyed: Client) -> None:
    await _login(keyed, "s3cret")
    assert (await keyed.get("/running")).status == 200
    ctx = keyed.app[CONTEXT]
    ctx.use_config(make_config(api_keys=("first-key",)))
    assert (await keyed.get("/running")).status == 401


async def test_logout_clears_the_cookie(keyed: Client) -> None:
    await _login(keyed)
    resp = await keyed.post("/api/logout")
    assert resp.status == 200
    assert 'swapd_key=""' in resp.headers["Set-Cookie"]
    assert "Max-Age=0" in resp.headers["Set-Cookie"]
    assert (await keyed.get("/running")).status == 401
