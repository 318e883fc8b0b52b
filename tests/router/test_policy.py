"""The router runs the planner and scheduler the config asks for (fake processes, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from swapd.config.model import Config, ModelSpec, Routing
from swapd.core.groups import GroupSpec
from swapd.core.matrix import compile_matrix
from swapd.core.state import ModelState
from swapd.router.loop import Router
from tests.router.test_loop import FakeProcess, _spec


@asynccontextmanager
async def running(routing: Routing) -> AsyncIterator[tuple[Router, dict[str, FakeProcess]]]:
    procs: dict[str, FakeProcess] = {}

    def factory(
        spec: ModelSpec, timeout: float, on_exit: Callable[[int, str], None]
    ) -> FakeProcess:
        procs[spec.id] = FakeProcess(spec=spec, on_exit=on_exit)
        return procs[spec.id]

    config = Config(models={m: _spec(m) for m in ("a", "b", "c")}, routing=routing)
    router = Router(config, process_factory=factory)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(router.run())
        yield router, procs
        await router.shutdown()


async def _states(router: Router) -> dict[str, ModelState]:
    return {m: s.state for m, s in router.snapshot().items()}


async def test_router_group_without_swap_lets_members_run_together() -> None:
    groups = (GroupSpec(id="pair", members=("a", "b"), swap=False),)
    async with running(Routing(groups=groups)) as (router, procs):
        router.release(await router.acquire("a"))
        router.release(await router.acquire("b"))
        assert procs["a"].stops == 0
        states = await _states(router)
        assert (states["a"], states["b"]) == (ModelState.READY, ModelState.READY)
        router.release(await router.acquire("c"))  # (default) is exclusive: both go
        assert (procs["a"].stops, procs["b"].stops) == (1, 1)


async def test_router_matrix_keeps_the_allowed_combination() -> None:
    matrix = compile_matrix({"ab": "a & b", "c": "c"}, {}, {}, ("a", "b", "c"))
    async with running(Routing(planner="matrix", matrix=matrix)) as (router, procs):
        router.release(await router.acquire("a"))
        router.release(await router.acquire("b"))
        assert procs["a"].stops == 0
        router.release(await router.acquire("c"))
        assert (procs["a"].stops, procs["b"].stops) == (1, 1)


async def test_router_serial_serves_one_request_at_a_time() -> None:
    async with running(Routing(scheduler="serial")) as (router, _):
        first = await router.acquire("a")
        second = asyncio.get_running_loop().create_task(router.acquire("a"))
        await router.wait_snapshot(lambda s: s["a"].queued == 1)
        assert not second.done()
        router.release(first)
        router.release(await second)
