"""API keys and CORS.

Keys guard every route except /health; CORS preflights are answered before the key check
because browsers never attach credentials to them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from swapd.errors import Unauthorized
from swapd.web.context import CONTEXT

CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})
"""Headers that carry swapd's own keys; stripped before forwarding when keys are configured."""

_EXEMPT_PATHS = frozenset({"/health"})
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
    keys = request.app[CONTEXT].api_keys
    if (
        keys
        and request.path not in _EXEMPT_PATHS
        and not key_matches(presented_keys(request), keys)
    ):
        raise Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
        )
    return await handler(request)


async def add_cors_origin(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: let browser pages read swapd's answers."""
    if hdrs.ORIGIN in request.headers and hdrs.ACCESS_CONTROL_ALLOW_ORIGIN not in response.headers:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = "*"
