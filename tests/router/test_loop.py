"""Router owner loop with fake processes: grants, swaps, cancellation, unload, TTL, shutdown.

No sleeps: tests wait on events the fakes set, or on the router's own futures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from swapd.config.model import Config, ModelSpec
from swapd.core.state import ModelState
from swapd.errors import ConcurrencyLimited, ModelNotFound, ModelUnavailable, ProcessStartError
from swapd.router.loop import Router


@dataclass
class FakeProcess:
    spec: ModelSpec
    on_exit: Callable[[int, str], None]
    gate: asyncio.Event | None = None
    """When set, start() blocks until the test sets it."""
    fail_with: str | None = None
    crash_with: Exception | None = None
    """Raised by start() or stop(): a bug, not a ProcessStartError."""
    starts: int = 0
    stops: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    _state: ModelState = ModelState.STOPPED

    gpus: tuple[int, ...] | None = None
    pid: int | None = None

    @property
    def state(self) -> ModelState:
        return self._state

    async def start(self, gpus: tuple[int, ...] | None = None) -> int:
        self.gpus = gpus
        self.starts += 1
        self._state = ModelState.STARTING
        self.started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self._state = ModelState.STOPPED
            raise
        if self.fail_with:
            self._state = ModelState.STOPPED
            raise ProcessStartError(self.fail_with)
        if self.crash_with is not None:
            self._state = ModelState.STOPPED
            raise self.crash_with
        self._state = ModelState.READY
        return self.starts

    async def stop(self, timeout_s: float | None = None) -> None:
        if self.crash_with is not None and self._state != ModelState.STOPPED:
            self._state = ModelState.STOPPED
            raise self.crash_with
        if self._state != ModelState.STOPPED:
            self.stops += 1
            self.stopped.set()
        self._state = ModelState.STOPPED

    def output(self, lines: int | None = None) -> list[str]:
        return [f"{self.spec.id} line"]

    async def close(self) -> None:
        await self.stop()


def _spec(mid: str, **kw: object) -> ModelSpec:
    return ModelSpec(id=mid, cmd="x", argv=("x",), proxy=f"http://127.0.0.1/{mid}", **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def world() -> AsyncIterator[tuple[Router, dict[str, FakeProcess], Clock]]:
    procs: dict[str, FakeProcess] = {}

    def factory(
        spec: ModelSpec, timeout: float, on_exit: Callable[[int, str], None]
    ) -> FakeProcess:
        procs[spec.id] = FakeProcess(spec=spec, on_exit=on_exit)
        return procs[spec.id]

    config = Config(
        models={
            "a": _spec("a"),
            "b": _spec("b"),
            "lim": _spec("lim", concurrency_limit=1),
            "ttl": _spec("ttl", ttl_s=5.0),
        }
    )
    clock = Clock()
    router = Router(config, process_factory=factory, now=clock)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(router.run(), name="router")
        yield router, procs, clock
        await router.shutdown()


async def test_router_acquire_starts_model_and_grants(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    lease = await router.acquire("a")
    assert lease.model == "a"
    assert lease.upstream == "http://127.0.0.1/a"
    assert procs["a"].starts == 1
    router.release(lease)
    lease2 = await router.acquire("a")
    assert procs["a"].starts == 1, "ready model is not started again"
    router.release(lease2)


async def test_router_swap_stops_previous_model(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    router.release(await router.acquire("a"))
    lease = await router.acquire("b")
    assert procs["a"].stops == 1
    assert procs["a"].state == ModelState.STOPPED
    assert router.snapshot()["b"].state == ModelState.READY
    assert router.snapshot()["a"].state == ModelState.STOPPED
    router.release(lease)


async def test_router_unknown_model_and_limit_errors(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, _, _ = world
    with pytest.raises(ModelNotFound):
        await router.acquire("nope")
    lease = await router.acquire("lim")
    with pytest.raises(ConcurrencyLimited):
        await router.acquire("lim")
    router.release(lease)
    router.release(await router.acquire("lim"))


async def test_router_start_failure_is_503_with_reason(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    procs["a"].fail_with = "model 'a' exited with code 1 before it was ready"
    with pytest.raises(ModelUnavailable, match="exited with code 1"):
        await router.acquire("a")
    assert router.snapshot()["a"].state == ModelState.FAILED
    procs["a"].fail_with = None
    router.release(await router.acquire("a"))


async def test_router_bug_in_start_still_answers_the_request(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    procs["a"].crash_with = RuntimeError("boom")
    with pytest.raises(ModelUnavailable, match="boom"):
        await router.acquire("a")
    procs["a"].crash_with = None
    router.release(await router.acquire("a"))


async def test_router_bug_in_stop_still_finishes_the_unload(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    router.release(await router.acquire("a"))
    procs["a"].crash_with = RuntimeError("boom")
    await router.unload(("a",))
    assert router.snapshot()["a"].state == ModelState.STOPPED


async def test_router_cancelled_waiter_does_not_strand_in_flight(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    procs["lim"].gate = asyncio.Event()
    waiter = asyncio.get_running_loop().create_task(router.acquire("lim"))
    await procs["lim"].started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    procs["lim"].gate.set()
    # concurrencyLimit is 1: a stranded reservation would make this a 429.
    lease = await router.acquire("lim")
    assert router.snapshot()["lim"].in_flight == 1
    router.release(lease)


async def test_router_unload_stops_models_and_fails_waiters(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    router.release(await router.acquire("a"))
    procs["b"].gate = asyncio.Event()
    waiter = asyncio.get_running_loop().create_task(router.acquire("b"))
    await procs["b"].started.wait()
    await router.unload(None)
    with pytest.raises(ModelUnavailable, match="unloaded"):
        await waiter
    assert all(p.state == ModelState.STOPPED for p in procs.values())
    assert all(s.state == ModelState.STOPPED for s in router.snapshot().values())


async def test_router_unexpected_exit_marks_failed_then_restarts(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    router.release(await router.acquire("a"))
    procs["a"]._state = ModelState.STOPPED
    procs["a"].on_exit(1, "exited with signal 9")
    await router.wait_snapshot(lambda s: s["a"].state == ModelState.FAILED)
    assert router.snapshot()["a"].reason == "exited with signal 9"
    router.release(await router.acquire("a"))
    assert procs["a"].starts == 2


async def test_router_ttl_unloads_idle_model(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, clock = world
    router.release(await router.acquire("ttl"))
    await router.wait_snapshot(lambda s: s["ttl"].in_flight == 0)
    assert procs["ttl"].state == ModelState.READY
    clock.t += 10
    await router.unload(())  # wakes the loop, which then sees the TTL deadline has passed
    await router.wait_snapshot(lambda s: s["ttl"].state == ModelState.STOPPED)
    assert procs["ttl"].stopped.is_set()


async def test_router_shutdown_rejects_waiters() -> None:
    procs: dict[str, FakeProcess] = {}

    def factory(
        spec: ModelSpec, timeout: float, on_exit: Callable[[int, str], None]
    ) -> FakeProcess:
        procs[spec.id] = FakeProcess(spec=spec, on_exit=on_exit, gate=asyncio.Event())
        return procs[spec.id]

    async def acquire_error() -> BaseException | None:
        try:
            await router.acquire("a")
        except ModelUnavailable as exc:
            return exc
        return None

    router = Router(Config(models={"a": _spec("a")}), process_factory=factory)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(router.run())
        waiter = tg.create_task(acquire_error())
        await procs["a"].started.wait()
        await router.shutdown()
        error = await waiter
    assert error is not None
    assert "shutting down" in str(error)
    assert procs["a"].state == ModelState.STOPPED


async def test_router_rearms_its_timer_for_a_deadline_set_by_an_inline_release() -> None:
    # The release is handled in the handler's step while the owner sleeps with no deadline;
    # the TTL it starts must still fire (real clock, 20 ms TTL, bounded wait).
    procs: dict[str, FakeProcess] = {}

    def factory(
        spec: ModelSpec, timeout: float, on_exit: Callable[[int, str], None]
    ) -> FakeProcess:
        procs[spec.id] = FakeProcess(spec=spec, on_exit=on_exit)
        return procs[spec.id]

    router = Router(Config(models={"t": _spec("t", ttl_s=0.02)}), process_factory=factory)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(router.run())
        router.release(await router.acquire("t"))
        async with asyncio.timeout(10):
            await procs["t"].stopped.wait()
        await router.shutdown()


async def test_router_after_shutdown_refuses_at_once(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, _, _ = world
    await router.stop_routing()
    async with asyncio.timeout(10):
        with pytest.raises(ModelUnavailable, match="shutting down"):
            await router.acquire("a")


async def test_router_load_is_stopped_when_its_only_client_leaves(
    world: tuple[Router, dict[str, FakeProcess], Clock],
) -> None:
    router, procs, _ = world
    procs["a"].gate = asyncio.Event()
    waiter = asyncio.get_running_loop().create_task(router.acquire("a"))
    await procs["a"].started.wait()
    waiter.cancel()
    await router.wait_snapshot(lambda s: s["a"].state == ModelState.STOPPED)
    assert procs["a"].state == ModelState.STOPPED, "the half-started child was stopped"
    router.release(await router.acquire("b"))
