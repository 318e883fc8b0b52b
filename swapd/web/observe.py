"""Metrics and activity: GET /metrics, GET /api/activity."""

from __future__ import annotations

from aiohttp import web

from swapd.errors import BadRequest
from swapd.web.context import CONTEXT

DEFAULT_ACTIVITY_LIMIT = 100


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/metrics", metrics)
    router.add_get("/api/activity", activity)


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[CONTEXT].obs.metrics.render()
    # Set as a header: aiohttp's content_type argument would split off and re-add the charset.
    return web.Response(body=body, headers={"Content-Type": content_type})


async def activity(request: web.Request) -> web.Response:
    """{"activity": [records, newest first]}; ?limit=N (default 100), ?model=ID or alias."""
    ctx = request.app[CONTEXT]
    raw_limit = request.query.get("limit")
    limit = DEFAULT_ACTIVITY_LIMIT
    if raw_limit is not None:
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = -1
        if limit < 0:
            raise BadRequest(f"limit must be a whole number of at least 0, got {raw_limit!r}")
    model = request.query.get("model")
    if model is not None:
        model = ctx.catalog.resolve(model) or model
    # The log holds at most its capacity, so a larger limit returns everything it has.
    records = ctx.obs.activity.recent(limit, model)
    return web.json_response({"activity": [r.as_json() for r in records]})
