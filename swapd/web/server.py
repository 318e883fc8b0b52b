"""The aiohttp application: routes, middlewares and the one error renderer.

Run it with `handler_cancellation=True` (web.AppRunner(app, handler_cancellation=True)) so that
a client that hangs up cancels its handler, which withdraws a queued request from the router
and closes the upstream connection of a running one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from swapd.config.model import Config
from swapd.core.endpoints import MODEL_ENDPOINTS
from swapd.errors import MethodNotAllowed, PayloadTooLarge, SwapdHttpError, UpstreamError
from swapd.obs.hub import Observer
from swapd.web import admin, auth, observe, streams, ui
from swapd.web.auth import CREDENTIAL_HEADERS, access_middleware, add_cors_origin
from swapd.web.context import CONTEXT, SESSION, WebContext
from swapd.web.loading import CHAT_PATH, serve_with_loading_state, wants_loading_state
from swapd.web.openai import find_model, rewrite_body
from swapd.web.ports import RouterPort
from swapd.web.proxy import forward, new_session
from swapd.web.tally import Tally, report

log = logging.getLogger(__name__)

DISPATCHED_PATHS = MODEL_ENDPOINTS
_UPSTREAM_PREFIX = "/upstream/"
_NO_DROP: frozenset[str] = frozenset()


class RouteNotFound(SwapdHttpError):
    status, code = 404, "not_found"


def make_app(config: Config, router: RouterPort, obs: Observer | None = None) -> web.Application:
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[error_middleware, access_middleware],
    )
    app[CONTEXT] = WebContext.build(config, router, created=int(time.time()), obs=obs)
    app.cleanup_ctx.append(_client_session)
    app.on_response_prepare.append(add_cors_origin)
    for path in DISPATCHED_PATHS:
        app.router.add_post(path, handle_model_request)
    app.router.add_route(hdrs.METH_ANY, _UPSTREAM_PREFIX + "{tail:.*}", handle_upstream)
    admin.add_routes(app.router)
    auth.add_routes(app.router)
    observe.add_routes(app.router)
    streams.add_routes(app.router)
    ui.add_routes(app.router)
    return app


async def _client_session(app: web.Application) -> AsyncIterator[None]:
    async with new_session() as session:
        app[SESSION] = session
        yield


# --- error rendering ---------------------------------------------------------------------------


def _render(err: SwapdHttpError, extra_headers: dict[str, str] | None = None) -> web.Response:
    headers = err.headers()
    if extra_headers:
        headers.update(extra_headers)
    return web.json_response(err.body(), status=err.status, headers=headers)


def _render_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    where = f"{request.method} {request.path}"
    if exc.status == 404:
        return _render(RouteNotFound(f"no such endpoint: {where}"))
    if exc.status == 405:
        allow = exc.headers.get(hdrs.ALLOW, "")
        message = f"method not allowed: {where} (allowed: {allow})"
        return _render(MethodNotAllowed(message), {hdrs.ALLOW: allow})
    if exc.status == 413:
        return _render(_too_large(request))
    body: dict[str, Any] = {
        "error": {
            "message": exc.text or exc.reason,
            "type": "invalid_request_error" if exc.status < 500 else "server_error",
            "code": exc.reason.lower().replace(" ", "_"),
            "param": None,
        }
    }
    return web.json_response(body, status=exc.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SwapdHttpError as err:
        return _render(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _render_http_exception(request, exc)
    except Exception:
        if request.writer.output_size > 0:
            raise
        log.exception("unexpected error answering %s %s", request.method, request.path)
        return _render(SwapdHttpError("internal error in swapd; its log has the details"))


# --- model-dispatched requests -----------------------------------------------------------------


def _too_large(request: web.Request) -> PayloadTooLarge:
    limit = request.client_max_size
    return PayloadTooLarge(f"request body is larger than the configured limit of {limit} bytes")


async def _read_body(request: web.Request) -> bytes:
    length = request.content_length
    if length is not None and length > request.client_max_size:
        raise _too_large(request)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(request) from None


async def _serve(
    request: web.Request,
    tally: Tally,
    target: str,
    body: bytes,
    loading_name: str | None = None,
) -> web.StreamResponse:
    """Acquire the model, forward, release; record the request whatever happens.

    `loading_name`: the model name the client asked for, when sendLoadingState applies.
    """
    ctx = request.app[CONTEXT]
    drop = CREDENTIAL_HEADERS if ctx.api_keys else _NO_DROP
    try:
        if loading_name is not None:
            return await serve_with_loading_state(request, tally, loading_name, target, body, drop)
        router = ctx.router
        tally.acquiring = time.monotonic()
        for retry in (False, True):
            try:
                lease = await router.acquire(tally.model)
            finally:
                tally.acquired = time.monotonic()
            try:
                return await forward(
                    request, request.app[SESSION], lease, target, body, drop, tally
                )
            except UpstreamError:
                # Nothing reached the client. A child that died a moment ago (its socket closes
                # before swapd reaps it) is restarted by a second acquire.
                if retry or not await router.lost_child(lease):
                    raise
            finally:
                router.release(lease)
        raise AssertionError("unreachable")
    except SwapdHttpError as err:
        tally.fail(err.status, str(err))
        raise
    except asyncio.CancelledError:
        tally.client_left()
        raise
    except Exception as exc:
        tally.fail(500, f"internal error in swapd: {exc!r}")
        raise
    finally:
        # After the handler returns aiohttp writes the response in the same step; the record
        # (and the token count of a whole body) is made after that, off the response's path.
        asyncio.get_running_loop().call_soon(report, ctx.obs, tally)


async def handle_model_request(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    ctx = request.app[CONTEXT]
    catalog = ctx.catalog
    body = await _read_body(request)
    query_model = request.query.get("model") if request.query_string else None
    found = find_model(
        request.content_type, request.headers.get(hdrs.CONTENT_TYPE, ""), body, query_model
    )
    model_id = catalog.require(found.name)
    rewritten = rewrite_body(body, found, catalog.rewrite(model_id))
    target = request.rel_url.raw_path_qs
    obj = found.json_body
    stream = obj is not None and obj.get("stream") is True
    tally = Tally(model_id, request.path, started, stream)
    loading = (
        found.name
        if stream and request.path == CHAT_PATH and wants_loading_state(ctx, model_id)
        else None
    )
    return await _serve(request, tally, target, body if rewritten is None else rewritten, loading)


async def handle_upstream(request: web.Request) -> web.StreamResponse:
    """ANY /upstream/<model>/<path>: forward <path> untouched to the model's server."""
    started = time.monotonic()
    raw_path = request.rel_url.raw_path
    if not raw_path.startswith(_UPSTREAM_PREFIX):
        raise RouteNotFound(f"no such endpoint: {request.method} {request.path}")
    query = request.rel_url.raw_query_string
    model_id, rest = request.app[CONTEXT].catalog.split_upstream_path(
        raw_path[len(_UPSTREAM_PREFIX) :]
    )
    if rest is None:
        # 308 keeps the method and body; GET and HEAD get the 301 every client follows.
        status = 301 if request.method in (hdrs.METH_GET, hdrs.METH_HEAD) else 308
        # Set verbatim: aiohttp's redirect exceptions would re-quote the query.
        location = raw_path + "/" + (f"?{query}" if query else "")
        return web.Response(status=status, headers={hdrs.LOCATION: location})
    body = await _read_body(request)
    tally = Tally(model_id, request.path, started, False)
    return await _serve(request, tally, rest + (f"?{query}" if query else ""), body)
