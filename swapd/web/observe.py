"""Metrics and activity: GET /metrics, GET /api/activity."""

from __future__ import annotations

from aiohttp import web


def add_routes(router: web.UrlDispatcher) -> None:
    pass
