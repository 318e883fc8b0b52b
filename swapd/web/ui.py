"""The operator UI at /ui (static files shipped in the package) and its load endpoint."""

from __future__ import annotations

from aiohttp import web


def add_routes(router: web.UrlDispatcher) -> None:
    pass
