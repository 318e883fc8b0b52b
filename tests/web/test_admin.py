"""Listings and operations."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from swapd.core.state import ModelSnapshot, ModelState

from .fake_router import FakeRouter

Client = TestClient[Any, Any]


def _snap(model: str, state: ModelState) -> ModelSnapshot:
    return ModelSnapshot(model=model, state=state, in_flight=0, queued=0)


async def test_health(client: Client) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.text() == "OK"


@pytest.mark.parametrize("path", ["/v1/models", "/models"])
async def test_model_list_is_sorted_and_hides_unlisted(
    client: Client, router: FakeRouter, path: str
) -> None:
    router.snapshots = {
        "llama": _snap("llama", ModelState.READY),
        "org": _snap("org", ModelState.FAILED),
        "org/qwen:7b": _snap("org/qwen:7b", ModelState.STARTING),
        "hidden": _snap("hidden", ModelState.READY),
    }
    resp = await client.get(path)
    assert resp.status == 200
    listing = await resp.json()
    assert listing["object"] == "list"
    records = {r["id"]: r for r in listing["data"]}
    assert [r["id"] for r in listing["data"]] == [
        "filtered",
        "llama",
        "org",
        "org/qwen:7b",
        "renamed",
    ]

    llama = records["llama"]
    assert isinstance(llama["created"], int)
    assert llama["object"] == "model"
    assert llama["owned_by"] == "swapd"
    assert llama["name"] == "Llama"
    assert llama["description"] == "small llama"
    assert llama["status"] == {"value": "loaded"}
    assert llama["meta"] == {"swapd": {"state": "ready", "aliases": ["l", "gpt-4o"]}}

    assert records["org"]["status"] == {"value": "unloaded"}
    assert records["org"]["meta"]["swapd"]["state"] == "failed"
    assert "name" not in records["org"]
    assert "description" not in records["org"]

    qwen = records["org/qwen:7b"]
    assert qwen["status"] == {"value": "loaded"}
    assert qwen["meta"]["swapd"] == {
        "family": "qwen",
        "ctx": 4096,
        "state": "starting",
        "aliases": ["qwen"],
    }
    # No snapshot yet: stopped.
    assert records["filtered"]["meta"]["swapd"]["state"] == "stopped"
    assert records["filtered"]["status"] == {"value": "unloaded"}


async def test_running_lists_models_that_are_not_stopped(
    client: Client, router: FakeRouter
) -> None:
    router.snapshots = {
        "llama": _snap("llama", ModelState.READY),
        "org": _snap("org", ModelState.STOPPED),
        "hidden": _snap("hidden", ModelState.STOPPING),
    }
    resp = await client.get("/running")
    running = (await resp.json())["running"]
    assert [r["model"] for r in running] == ["hidden", "llama"]
    llama = running[1]
    assert llama == {
        "model": "llama",
        "state": "ready",
        "cmd": "llama-server -m llama.gguf --port 5800",
        "proxy": "http://127.0.0.1:5800",
        "ttl": 0,
        "name": "Llama",
        "description": "small llama",
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_legacy_unload_unloads_everything(
    client: Client, router: FakeRouter, method: str
) -> None:
    resp = await client.request(method, "/unload")
    assert resp.status == 200
    assert await resp.text() == "OK"
    assert router.unloaded == [None]


async def test_api_unload_all(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/api/models/unload")
    assert await resp.json() == {"msg": "ok"}
    assert router.unloaded == [None]


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/api/models/unload/org/qwen:7b", "org/qwen:7b"),
        ("/api/models/unload/qwen", "org/qwen:7b"),
        ("/models/unload/l", "llama"),
        ("/models/unload/org", "org"),
    ],
)
async def test_unload_one_model(client: Client, router: FakeRouter, path: str, model: str) -> None:
    resp = await client.post(path)
    assert resp.status == 200
    assert await resp.json() == {"msg": "ok", "model": model}
    assert router.unloaded == [(model,)]


async def test_unload_unknown_model_is_404(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/api/models/unload/lama")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "model_not_found"
    assert router.unloaded == []


@pytest.mark.parametrize(
    ("path", "model"),
    [("/api/models/reset/org/qwen:7b", "org/qwen:7b"), ("/api/models/reset/l", "llama")],
)
async def test_reset_clears_a_models_failures(
    client: Client, router: FakeRouter, path: str, model: str
) -> None:
    resp = await client.post(path)
    assert resp.status == 200
    assert await resp.json() == {"msg": "ok", "model": model}
    assert router.resets == [model]


async def test_reset_unknown_model_is_404(client: Client, router: FakeRouter) -> None:
    resp = await client.post("/api/models/reset/lama")
    assert resp.status == 404
    assert router.resets == []
