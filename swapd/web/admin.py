"""Listings and operations: /health, /v1/models, /running, /api/gpus, load and unload."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from swapd import __version__
from swapd.config.model import ModelSpec
from swapd.core.state import ModelSnapshot, ModelState
from swapd.web.context import CONTEXT
from swapd.web.ports import GpuViewPort

_NOT_LOADED = frozenset({ModelState.STOPPED, ModelState.FAILED})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/health", health)
    router.add_get("/api/version", version)
    router.add_get("/v1/models", list_models)
    router.add_get("/models", list_models)
    router.add_get("/running", running)
    router.add_get("/api/gpus", gpus)
    router.add_get("/unload", unload_all_text)
    router.add_post("/unload", unload_all_text)
    router.add_post("/api/models/load/{model:.+}", load_one)
    router.add_post("/api/models/unload", unload_all_json)
    router.add_post("/api/models/unload/{model:.+}", unload_one)
    router.add_post("/models/unload/{model:.+}", unload_one)
    router.add_post("/api/models/reset/{model:.+}", reset_one)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="OK")


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__})


def _model_record(
    spec: ModelSpec, snap: ModelSnapshot | None, created: int, gpu: GpuViewPort | None
) -> dict[str, Any]:
    state = snap.state if snap is not None else ModelState.STOPPED
    record: dict[str, Any] = {
        "id": spec.id,
        "object": "model",
        "created": created,
        "owned_by": "swapd",
    }
    if spec.name:
        record["name"] = spec.name
    if spec.description:
        record["description"] = spec.description
    record["status"] = {"value": "unloaded" if state in _NOT_LOADED else "loaded"}
    swapd_meta = {**spec.metadata, "state": state.value, "aliases": list(spec.aliases)}
    if gpu is not None:
        swapd_meta.update(gpu.model_view(spec.id))
    record["meta"] = {"swapd": swapd_meta}
    return record


async def list_models(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    snapshots = ctx.router.snapshot()
    gpu = ctx.router.gpu_view()
    data = [
        _model_record(spec, snapshots.get(model_id), ctx.created, gpu)
        for model_id, spec in sorted(ctx.config.models.items())
        if not spec.unlisted
    ]
    return web.json_response({"object": "list", "data": data})


def _seconds(value: float) -> float | int:
    return int(value) if value.is_integer() else value


async def running(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    snapshots = ctx.router.snapshot()
    gpu = ctx.router.gpu_view()
    entries = []
    for model_id, spec in sorted(ctx.config.models.items()):
        snap = snapshots.get(model_id)
        if snap is None or snap.state == ModelState.STOPPED:
            continue
        entry = {
            "model": model_id,
            "state": snap.state.value,
            "cmd": spec.cmd,
            "proxy": spec.proxy,
            "ttl": _seconds(spec.ttl_s),
            "name": spec.name,
            "description": spec.description,
        }
        if gpu is not None:
            entry.update(gpu.model_view(model_id))
        entries.append(entry)
    return web.json_response({"running": entries})


async def gpus(request: web.Request) -> web.Response:
    """Each GPU's memory and the models holding it (an empty list without NVML)."""
    ctx = request.app[CONTEXT]
    gpu = ctx.router.gpu_view()
    if gpu is None:
        return web.json_response({"monitor": "none", "planning": False, "gpus": []})
    live = frozenset(m for m, s in ctx.router.snapshot().items() if s.state not in _NOT_LOADED)
    return web.json_response(gpu.gpus_view(live))


async def unload_all_text(request: web.Request) -> web.Response:
    await request.app[CONTEXT].router.unload(None)
    return web.Response(text="OK")


async def unload_all_json(request: web.Request) -> web.Response:
    await request.app[CONTEXT].router.unload(None)
    return web.json_response({"msg": "ok"})


async def unload_one(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    model_id = ctx.catalog.require(request.match_info["model"])
    await ctx.router.unload((model_id,))
    return web.json_response({"msg": "ok", "model": model_id})


async def load_one(request: web.Request) -> web.Response:
    """Start a model (as a request for it would) and answer once it is ready.

    The load is an ordinary request to the router, so it queues, evicts and fails like one
    (a failed start answers 503 with the reason); it is released at once, so the model's TTL
    counts from here.
    """
    ctx = request.app[CONTEXT]
    model_id = ctx.catalog.require(request.match_info["model"])
    lease = await ctx.router.acquire(model_id)
    ctx.router.release(lease)
    return web.json_response({"msg": "ok", "model": model_id})


async def reset_one(request: web.Request) -> web.Response:
    """Clear a model's failure count (crash-loop hold or backoff); it is not started here."""
    ctx = request.app[CONTEXT]
    model_id = ctx.catalog.require(request.match_info["model"])
    ctx.router.reset(model_id)
    return web.json_response({"msg": "ok", "model": model_id})
