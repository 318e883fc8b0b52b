"""The operator UI at /ui: plain static files shipped in the package, served by swapd itself.

The page and its files hold no data, so they need no API key (the login form must be able to
show); every call the page makes for data goes through the key check like any other client's.
Only the files that exist in `static/` when swapd starts are served, looked up by exact name:
no path from a request ever reaches the file system.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import hdrs, web

STATIC_DIR = Path(__file__).resolve().parent / "static"
UI_PATH = "/ui"
PUBLIC_PREFIX = UI_PATH + "/"
"""Every path under it is a static file of the UI (or a 404): safe to serve without a key."""

_INDEX = "index.html"
_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain",
}
_TEXT_TYPES = frozenset({"text/html", "text/javascript", "text/css", "image/svg+xml", "text/plain"})
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    # Revalidate every time (the ETag makes that a 304): an upgraded swapd shows its new UI.
    "Cache-Control": "no-cache",
}


def is_public(path: str) -> bool:
    """True for the UI's own paths, which carry no data and need no API key."""
    return path == UI_PATH or path.startswith(PUBLIC_PREFIX)


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    content_type: str
    etag: str


class StaticFiles:
    """The files under one directory, read once, served by exact relative name."""

    def __init__(self, root: Path) -> None:
        self._assets: dict[str, _Asset] = {}
        if not root.is_dir():
            return
        for path in sorted(root.rglob("*")):
            content_type = _TYPES.get(path.suffix.lower())
            if content_type is None or not path.is_file() or path.is_symlink():
                continue
            body = path.read_bytes()
            if content_type in _TEXT_TYPES:
                content_type += "; charset=utf-8"
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            self._assets[path.relative_to(root).as_posix()] = _Asset(body, content_type, etag)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._assets)

    def response(self, request: web.Request, name: str) -> web.Response:
        asset = self._assets.get(name or _INDEX)
        if asset is None:
            raise web.HTTPNotFound()
        headers = {**_SECURITY_HEADERS, hdrs.ETAG: asset.etag}
        if asset.etag in request.headers.get(hdrs.IF_NONE_MATCH, ""):
            return web.Response(status=304, headers=headers)
        headers[hdrs.CONTENT_TYPE] = asset.content_type
        return web.Response(body=asset.body, headers=headers)


def add_routes(router: web.UrlDispatcher, root: Path = STATIC_DIR) -> None:
    files = StaticFiles(root)

    async def redirect_to_index(request: web.Request) -> web.Response:
        # Relative, so the UI also works behind a proxy that mounts swapd under a prefix.
        return web.Response(status=301, headers={hdrs.LOCATION: "ui/"})

    async def static(request: web.Request) -> web.Response:
        return files.response(request, request.match_info["path"])

    router.add_get(UI_PATH, redirect_to_index)
    router.add_get(PUBLIC_PREFIX + "{path:.*}", static)
