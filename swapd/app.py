"""Composition root: config -> router -> web app -> listening socket, and the shutdown order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiohttp import web

from swapd.config.model import Config
from swapd.errors import ConfigError
from swapd.gpu.nvml import GpuMonitor, open_monitor
from swapd.obs.hub import Observer
from swapd.router.gpus import GpuCoordinator
from swapd.router.loop import Router
from swapd.web.server import make_app

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0
"""How long in-flight responses may run on after a shutdown signal before they are cut."""


async def serve(
    config: Config,
    host: str,
    port: int,
    *,
    stop: asyncio.Event,
    on_listening: Callable[[str, int], None] | None = None,
    monitor: GpuMonitor | None = None,
) -> None:
    """Run swapd until `stop` is set, then shut down in order.

    Order: stop accepting connections; fail requests still waiting for a model; let in-flight
    responses finish (bounded by SHUTDOWN_GRACE_S); stop every child. Stopping children last
    matters because llama-server ignores SIGTERM while it is serving a request.

    Raises ConfigError, before anything starts, when the config asks for GPUs or VRAM the
    host does not have.
    """
    obs = Observer(tuple(config.models))
    # From here on swapd's log and the models' output also go to GET /logs and the streams.
    obs.logs.install()
    try:
        await _serve(config, host, port, obs, stop=stop, on_listening=on_listening, monitor=monitor)
    finally:
        obs.logs.remove()


async def _serve(
    config: Config,
    host: str,
    port: int,
    obs: Observer,
    *,
    stop: asyncio.Event,
    on_listening: Callable[[str, int], None] | None,
    monitor: GpuMonitor | None,
) -> None:
    gpus = GpuCoordinator(config, monitor if monitor is not None else open_monitor(), obs)
    try:
        problems = await gpus.prepare()
    except BaseException:
        await gpus.close()
        raise
    if problems:
        await gpus.close()
        raise ConfigError(str(config.source or "config"), problems)
    router = Router(config, gpus=gpus, obs=obs)
    runner = web.AppRunner(
        make_app(config, router, obs),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound_port = _bound_port(runner, port)
        log.info("listening on http://%s:%d models=%d", host, bound_port, len(config.models))
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("listening on a non-loopback address host=%s: set apiKeys", host)
        if on_listening is not None:
            on_listening(host, bound_port)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(router.run(), name="router")
            sampler = tg.create_task(
                gpus.sample_forever(router.model_pids, router.post), name="gpu-monitor"
            )
            if config.preload:
                tg.create_task(router.preload(config.preload), name="preload")
            await stop.wait()
            log.info("shutting down")
            sampler.cancel()
            await site.stop()
            await router.stop_routing()
    finally:
        # End the log and event streams first: they never finish on their own, and the server's
        # shutdown would otherwise wait SHUTDOWN_GRACE_S for them before cutting them.
        obs.bus.close()
        await runner.cleanup()
        await router.close()
        await gpus.close()
        log.info("stopped")


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for addr in runner.addresses:
        if isinstance(addr, tuple) and len(addr) >= 2:
            return int(addr[1])
    return requested
