"""The operator UI's static files at /ui, and POST /api/models/load/{model}."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient
from yarl import URL

from swapd.errors import ModelUnavailable
from swapd.web import ui

from .conftest import MakeClient, make_config
from .fake_router import FakeRouter

Client = TestClient[Any, Any]


async def test_ui_redirects_to_its_index_relatively(client: Client) -> None:
    resp = await client.get("/ui", allow_redirects=False)
    assert resp.status == 301
    # Relative, so a proxy that mounts swapd under a prefix keeps working.
    assert resp.headers["Location"] == "ui/"


@pytest.mark.parametrize("path", ["/ui/", "/ui/index.html"])
async def test_index_is_html(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    text = await resp.text()
    assert '<script type="module" src="app.js"></script>' in text
    assert 'data-testid="models"' in text
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("path", "content_type", "snippet"),
    [
        ("/ui/app.js", "text/javascript; charset=utf-8", 'new EventSource(new URL("api/events"'),
        ("/ui/style.css", "text/css; charset=utf-8", ".badge"),
        ("/ui/favicon.svg", "image/svg+xml; charset=utf-8", "<svg"),
    ],
)
async def test_static_files(client: Client, path: str, content_type: str, snippet: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert snippet in await resp.text()


async def test_unchanged_file_answers_304(client: Client) -> None:
    first = await client.get("/ui/app.js")
    etag = first.headers["ETag"]
    again = await client.get("/ui/app.js", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""
    changed = await client.get("/ui/app.js", headers={"If-None-Match": '"other"'})
    assert changed.status == 200


async def test_head_is_answered(client: Client) -> None:
    resp = await client.head("/ui/")
    assert resp.status == 200


@pytest.mark.parametrize(
    "raw_path",
    [
        "/ui/missing.js",
        "/ui/../pyproject.toml",
        "/ui/../../pyproject.toml",
        "/ui/%2e%2e/ui.py",
        "/ui/..%2fui.py",
        "/ui/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/ui/static/app.js",
        "/ui//etc/passwd",
        "/ui/%2Fetc%2Fpasswd",
        "/ui/./app.js/",
        "/ui/app.js%00.png",
        "/ui/APP.JS",
    ],
)
async def test_nothing_outside_the_static_files_is_served(client: Client, raw_path: str) -> None:
    resp = await client.get(URL(raw_path, encoded=True), allow_redirects=False)
    assert resp.status == 404, raw_path
    body = await resp.read()
    assert b"swapd" not in body.lower() or b"not_found" in body
    assert b"import" not in body
    assert b"[project]" not in body


async def test_only_regular_files_with_known_types_are_served(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    root = tmp_path / "static"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<p>hi</p>")
    (root / "sub" / "more.js").write_text("export {};")
    (root / "notes.md").write_text("# not served")
    secret = tmp_path / "secret.css"
    secret.write_text("body {}")
    (root / "link.css").symlink_to(secret)
    files = ui.StaticFiles(root)
    assert files.names == {"index.html", "sub/more.js"}

    app = web.Application()
    ui.add_routes(app.router, root)
    client = await aiohttp_client(app)
    assert (await client.get("/ui/sub/more.js")).status == 200
    assert await (await client.get("/ui/")).text() == "<p>hi</p>"
    assert (await client.get("/ui/notes.md")).status == 404
    assert (await client.get("/ui/link.css")).status == 404


def test_missing_static_directory_serves_nothing(tmp_path: Path) -> None:
    assert ui.StaticFiles(tmp_path / "absent").names == frozenset()


def test_the_package_ships_the_ui() -> None:
    assert {"index.html", "app.js", "style.css", "favicon.svg"} <= ui.StaticFiles(
        ui.STATIC_DIR
    ).names


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/ui", True),
        ("/ui/", True),
        ("/ui/app.js", True),
        ("/uix", False),
        ("/v1/models", False),
        ("/api/ui", False),
    ],
)
def test_public_paths(path: str, public: bool) -> None:
    assert ui.is_public(path) is public


async def test_page_needs_no_key_but_data_does(make_client: MakeClient) -> None:
    client = await make_client(make_config(api_keys=("s3cret",)))
    for path in ("/ui/", "/ui/app.js", "/ui/style.css"):
        assert (await client.get(path)).status == 200, path
    assert (await client.get("/ui/missing.js")).status == 404
    assert (await client.get("/v1/models")).status == 401
    assert (await client.post("/api/models/load/llama")).status == 401


# --- POST /api/models/load/{model} -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/api/models/load/llama", "llama"),
        ("/api/models/load/gpt-4o", "llama"),
        ("/api/models/load/org/qwen:7b", "org/qwen:7b"),
        ("/api/models/load/org%2Fqwen%3A7b", "org/qwen:7b"),
        ("/api/models/load/qwen", "org/qwen:7b"),
        ("/api/models/load/org", "org"),
        ("/api/models/load/hidden", "hidden"),
    ],
)
async def test_load_acquires_and_releases_at_once(
    client: Client, router: FakeRouter, path: str, model: str
) -> None:
    resp = await client.post(URL(path, encoded=True))
    assert resp.status == 200
    assert await resp.json() == {"msg": "ok", "model": model}
    assert router.acquired == [model]
    assert router.released == router.leases
    assert len(router.leases) == 1


async def test_load_of_unknown_model_is_404(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/api/models/load/lama")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["code"] == "model_not_found"
    assert "llama" in body["error"]["message"]
    assert router.acquired == []


async def test_load_that_fails_answers_the_routers_error(
    client: Client, router: FakeRouter
) -> None:
    router.error = ModelUnavailable("model 'llama' failed to start: exit code 1")
    resp = await client.post("/api/models/load/llama")
    assert resp.status == 503
    assert "exit code 1" in (await resp.json())["error"]["message"]
    assert router.leases == []


async def test_load_waits_for_the_router(client: Client, router: FakeRouter) -> None:
    router.gate = asyncio.Event()
    request = asyncio.ensure_future(client.post("/api/models/load/llama"))
    async with asyncio.timeout(5):
        await router.waiting.wait()
    assert not request.done()
    router.gate.set()
    resp = await request
    assert resp.status == 200
    assert router.released == router.leases


async def test_load_withdrawn_when_the_client_leaves(client: Client, router: FakeRouter) -> None:
    router.gate = asyncio.Event()
    request = asyncio.ensure_future(client.post("/api/models/load/llama"))
    async with asyncio.timeout(5):
        await router.waiting.wait()
    request.cancel()
    async with asyncio.timeout(5):
        await router.withdrawn.wait()
    assert router.leases == []


async def test_load_is_post_only(client: Client, router: FakeRouter) -> None:
    resp = await client.get("/api/models/load/llama")
    assert resp.status == 405
    assert router.acquired == []


@pytest.mark.parametrize(
    "raw_path",
    [
        "/ui/../v1/models",
        "/ui/%2e%2e/v1/models",
        "/ui/..%2fv1/models",
        "/ui/../api/models/unload",
        "/ui%2f../v1/models",
    ],
)
async def test_ui_paths_lead_to_no_data_without_a_key(
    make_client: MakeClient, router: FakeRouter, raw_path: str
) -> None:
    client = await make_client(make_config(api_keys=("s3cret",)))
    for method in ("GET", "POST"):
        resp = await client.request(method, URL(raw_path, encoded=True), allow_redirects=False)
        assert resp.status in (401, 404, 405), (method, raw_path, resp.status)
        assert b'"data"' not in await resp.read()
    assert router.unloaded == []
