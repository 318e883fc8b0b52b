"""API keys, the browser login cookie, and CORS.

Keys guard every route except /health, /api/login and the UI's static files (swapd.web.ui:
they hold no data, and the login form must show); CORS preflights are answered before the
key check because browsers never attach credentials to them.

A browser cannot put a header on an EventSource (GET /api/events) or an <img>/<a> request, so
the UI logs in once: POST /api/login {"key": "..."} checks the key and sets the HttpOnly,
SameSite=Strict cookie `swapd_key`, which the access middleware then accepts like a key header.
Its value is an HMAC-SHA256 of the key under a secret swapd draws at start (never the key
itself), so it reveals nothing about the key, stops working when the key is removed from the
config, and every cookie expires when swapd restarts. Because a cookie is sent by the browser on
its own, it is only honoured on requests the browser marks as coming from swapd's own pages
(`Sec-Fetch-Site: same-origin` or `none`; without that header, an `Origin` naming this host;
non-browser clients send neither): another site, or another port on the same host, cannot use
it to unload models or run requests (cross-site request forgery).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from swapd.errors import BadRequest, Unauthorized
from swapd.web import ui
from swapd.web.context import CONTEXT, WebContext

CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
"""Headers that carry swapd's own keys; stripped before forwarding when keys are configured."""

SESSION_COOKIE = "swapd_key"
SESSION_MAX_AGE_S = 30 * 24 * 3600
"""The cookie's lifetime in the browser (a restart of swapd ends it sooner)."""
LOGIN_PATH = "/api/login"
LOGOUT_PATH = "/api/logout"

_EXEMPT_PATHS = frozenset({"/health", LOGIN_PATH, LOGOUT_PATH})
_OWN_PAGE_FETCH_SITES = frozenset({"same-origin", "none"})
_ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
_DEFAULT_ALLOWED_HEADERS = "Content-Type, Authorization, X-Api-Key"
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def presented_keys(request: web.Request) -> list[bytes]:
    """Every credential the request carries, in the places swapd accepts one."""
    found: list[bytes] = []
    authorization = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        found.append(value.strip().encode())
    elif scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        _, sep, password = decoded.partition(b":")
        if sep:
            found.append(password)
    api_key = request.headers.get("x-api-key")
    if api_key is not None:
        found.append(api_key.strip().encode())
    return found


def key_matches(presented: Iterable[bytes], keys: tuple[bytes, ...]) -> bool:
    ok = False
    for candidate in presented:
        for key in keys:
            # No early exit: the time taken should not depend on which key matched.
            ok |= hmac.compare_digest(candidate, key)
    return ok


def _allowed_headers(requested: str | None) -> str:
    if not requested:
        return _DEFAULT_ALLOWED_HEADERS
    names = [name.strip() for name in requested.split(",")]
    clean = [n for n in names if n and _TOKEN_CHARS.issuperset(n)]
    return ", ".join(clean) or _DEFAULT_ALLOWED_HEADERS


def preflight(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": _ALLOWED_METHODS,
            "Access-Control-Allow-Headers": _allowed_headers(
                request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_HEADERS)
            ),
            "Access-Control-Max-Age": "86400",
        },
    )


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answers CORS preflights, then enforces the API keys (if any are configured)."""
    if request.method == hdrs.METH_OPTIONS:
        return preflight(request)
    ctx = request.app[CONTEXT]
    if (
        ctx.api_keys
        and request.path not in _EXEMPT_PATHS
        and not ui.is_public(request.path)
        and not key_matches(presented_keys(request), ctx.api_keys)
        and not session_cookie_valid(request, ctx)
    ):
        # A page's own fetch() gets no Basic challenge: the browser would pop up its password
        # dialog over the UI's login form (e.g. once a restart has ended the session).
        scripted = request.headers.get("Sec-Fetch-Mode", "navigate").lower() != "navigate"
        raise (Unchallenged if scripted else Unauthorized)(
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
    return await handler(request)


# --- the browser login cookie ------------------------------------------------------------------


def session_token(secret: bytes, key: bytes) -> str:
    """The `swapd_key` cookie value for `key`: an HMAC, so the key itself never leaves."""
    return hmac.new(secret, b"swapd-session\0" + key, hashlib.sha256).hexdigest()


def _from_own_page(request: web.Request) -> bool:
    """False when a browser says the request comes from another site's (or port's) page."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site.strip().lower() in _OWN_PAGE_FETCH_SITES
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == request.host.lower()


def session_cookie_valid(request: web.Request, ctx: WebContext) -> bool:
    value = request.cookies.get(SESSION_COOKIE)
    if not value or not ctx.api_keys or not _from_own_page(request):
        return False
    presented = value.encode("ascii", "replace")
    ok = False
    for key in ctx.api_keys:
        # No early exit: the time taken should not depend on which key matched.
        ok |= hmac.compare_digest(presented, session_token(ctx.session_secret, key).encode())
    return ok


class Unchallenged(Unauthorized):
    """A 401 without WWW-Authenticate, so the browser shows the UI's form, not its own."""

    def headers(self) -> dict[str, str]:
        return {}


class LoginFailed(Unchallenged):
    """The UI's login form sent a wrong key."""


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(LOGIN_PATH, login_status)
    router.add_post(LOGIN_PATH, login)
    router.add_post(LOGOUT_PATH, logout)


async def login_status(request: web.Request) -> web.Response:
    """{"required": keys are configured, "authenticated": this request carries a valid one}."""
    ctx = request.app[CONTEXT]
    required = bool(ctx.api_keys)
    authenticated = not required or (
        key_matches(presented_keys(request), ctx.api_keys) or session_cookie_valid(request, ctx)
    )
    return web.json_response({"required": required, "authenticated": authenticated})


async def _login_key(request: web.Request) -> bytes:
    body = await request.read()
    try:
        payload: Any = json.loads(body)
    except (ValueError, RecursionError):
        payload = None
    key = payload.get("key") if isinstance(payload, dict) else None
    if not isinstance(key, str):
        raise BadRequest('expected a JSON body {"key": "<API key>"}')
    return key.strip().encode()


async def login(request: web.Request) -> web.Response:
    """POST {"key": "..."}: check the key and set the `swapd_key` session cookie."""
    ctx = request.app[CONTEXT]
    key = await _login_key(request)
    if not ctx.api_keys:
        return web.json_response({"ok": True, "required": False})
    if not key_matches((key,), ctx.api_keys):
        raise LoginFailed("wrong API key")
    response = web.json_response({"ok": True, "required": True})
    response.set_cookie(
        SESSION_COOKIE,
        session_token(ctx.session_secret, key),
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def logout(request: web.Request) -> web.Response:
    response = web.json_response({"ok": True})
    response.del_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
    return response


async def add_cors_origin(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: let browser pages read swapd's answers."""
    if hdrs.ORIGIN in request.headers and hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in response.headers:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
