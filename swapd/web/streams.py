"""Logs and events: GET /logs, /logs/stream, /logs/stream/{model}, /api/events."""

from __future__ import annotations

from aiohttp import web


def add_routes(router: web.UrlDispatcher) -> None:
    pass
