"""Router: the single owner task of all routing state.

Handlers never touch the scheduler: they post events to the inbox and await a future. The owner
task dispatches each event to the synchronous scheduler, whose effects come back here and turn
into named swap/stop tasks whose results return as events. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, assert_never

from swapd.config.model import Config
from swapd.core.events import (
    Event,
    GpuSampled,
    ProcessExited,
    RequestArrived,
    RequestReleased,
    ResetRequested,
    ShutdownRequested,
    StopFinished,
    SwapFinished,
    Tick,
    UnloadRequested,
)
from swapd.core.scheduler import Scheduler
from swapd.core.state import (
    Lease,
    ModelSnapshot,
    ModelState,
    Rejection,
    RejectKind,
)
from swapd.errors import (
    ConcurrencyLimited,
    ModelNotFound,
    ModelUnavailable,
    ProcessStartError,
    SwapdHttpError,
)
from swapd.obs.hub import Observer
from swapd.router.gpus import GpuCoordinator
from swapd.router.policy import describe_swap, evict_costs, make_planner, make_scheduler
from swapd.router.processes import ModelProcessLike, ProcessFactory, make_process_factory

log = logging.getLogger(__name__)

LOST_CHILD_WAIT_S = 1.0
"""How long a request whose model died under it waits for swapd to notice, before retrying."""

_REJECTIONS: Mapping[RejectKind, type[SwapdHttpError]] = {
    RejectKind.UNKNOWN_MODEL: ModelNotFound,
    RejectKind.OVER_LIMIT: ConcurrencyLimited,
    RejectKind.START_FAILED: ModelUnavailable,
    RejectKind.NO_FIT: ModelUnavailable,
    RejectKind.UNLOADED: ModelUnavailable,
    RejectKind.SHUTTING_DOWN: ModelUnavailable,
}


class Router:
    def __init__(
        self,
        config: Config,
        *,
        process_factory: ProcessFactory | None = None,
        now: Callable[[], float] = time.monotonic,
        gpus: GpuCoordinator | None = None,
        obs: Observer | None = None,
    ) -> None:
        self._config = config
        self._gpus = gpus
        self._obs = obs
        self._now = now
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._procs: dict[str, ModelProcessLike] = {
            mid: (process_factory or make_process_factory(config, obs))(
                spec, config.health_check_timeout_s, self._exit_reporter(mid)
            )
            for mid, spec in config.models.items()
        }
        self._planner = make_planner(config)
        if gpus is not None:
            self._planner = gpus.wrap(self._planner, evict_costs(config))
        self._sched: Scheduler = make_scheduler(config, self, self._planner, now)
        self._snapshot: Mapping[str, ModelSnapshot] | None = None
        self._handling = False
        self._owner_waiting = False
        self._owner_deadline: float | None = None
        self._changed_waiters = 0
        self._ids = itertools.count(1)
        self._waiters: dict[int, asyncio.Future[Lease]] = {}
        self._unloads: dict[int, asyncio.Future[None]] = {}
        self._swap_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._changed = asyncio.Event()

    # -- the owner task -------------------------------------------------------------------

    def post(self, ev: Event) -> None:
        """Hand an event to the owner.

        When nothing is queued and no event is being handled, the event is handled right here,
        in the caller's step: that is exactly the order the owner task would have used, and it
        saves a request two trips through the event loop (grant and release). Anything else
        (an event posted while one is handled, shutdown, a backlog) goes through the inbox.
        """
        idle_owner = self._owner_waiting or self._stopped.is_set()
        queue = self._handling or not idle_owner or not self._inbox.empty()
        if queue or isinstance(ev, ShutdownRequested):
            self._inbox.put_nowait(ev)
            return
        self._handle(ev)
        deadline = self._sched.next_deadline()
        if deadline is not None and (
            self._owner_deadline is None or deadline < self._owner_deadline
        ):
            self._inbox.put_nowait(Tick())  # the owner must re-arm its timer for the new deadline

    async def run(self) -> None:
        """Consume the inbox until ShutdownRequested. Routing state changes only in _handle."""
        try:
            while True:
                ev = await self._next_event()
                self._handle(ev)
                if isinstance(ev, ShutdownRequested):
                    return
        finally:
            self._owner_waiting = False
            self._stopped.set()

    def _handle(self, ev: Event) -> None:
        self._handling = True
        try:
            self._dispatch(ev)
        finally:
            self._handling = False
        self._snapshot = None
        if self._obs is not None:
            self._obs.models_changed(self.snapshot())
        if self._changed_waiters:
            # Wake everyone waiting on the old event; later waiters get a fresh one.
            self._changed.set()
            self._changed = asyncio.Event()
            self._changed_waiters = 0

    async def _next_event(self) -> Event:
        deadline = self._owner_deadline = self._sched.next_deadline()
        self._owner_waiting = True
        try:
            if deadline is None:
                return await self._inbox.get()
            try:
                async with asyncio.timeout(max(0.0, deadline - self._now())):
                    return await self._inbox.get()
            except TimeoutError:
                return Tick()
        finally:
            self._owner_waiting = False

    def _dispatch(self, ev: Event) -> None:
        match ev:
            case RequestArrived():
                self._sched.on_request(ev)
            case RequestReleased():
                self._sched.on_release(ev)
            case SwapFinished():
                self._sched.on_swap_finished(ev)
            case ProcessExited():
                log.warning("model exited unexpectedly model=%s detail=%s", ev.model, ev.detail)
                if self._obs is not None:
                    self._obs.child_exited(ev.model, ev.detail)
                self._sched.on_process_exited(ev)
            case UnloadRequested():
                self._sched.on_unload(ev)
            case StopFinished():
                self._sched.on_stop_finished(ev)
            case ResetRequested():
                log.info("failures reset model=%s", ev.model)
                self._sched.on_reset(ev)
            case Tick():
                self._sched.on_tick()
            case GpuSampled():
                if self._gpus is not None:
                    self._observe_gpus(ev)
            case ShutdownRequested():
                self._sched.on_shutdown()
            case _:
                assert_never(ev)

    # -- RouterPort: what HTTP handlers call ----------------------------------------------

    async def acquire(self, model: str) -> Lease:
        req_id = next(self._ids)
        fut: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters[req_id] = fut
        self.post(RequestArrived(req_id=req_id, model=model))
        try:
            return await fut
        except BaseException:
            # Cancelled (client left), or rejected. If a grant raced with the cancellation the
            # scheduler counted it in flight; the release below is what returns it.
            self._waiters.pop(req_id, None)
            self.post(RequestReleased(req_id=req_id))
            raise

    def release(self, lease: Lease) -> None:
        self.post(RequestReleased(req_id=lease.req_id))

    async def unload(self, models: tuple[str, ...] | None) -> None:
        ticket = next(self._ids)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unloads[ticket] = fut
        self.post(UnloadRequested(models=models, ticket=ticket))
        try:
            await fut
        finally:
            self._unloads.pop(ticket, None)

    def reset(self, model: str) -> None:
        self.post(ResetRequested(model=model))

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        if self._snapshot is None:
            self._snapshot = self._sched.snapshot()
        return self._snapshot

    async def wait_snapshot(self, predicate: Callable[[Mapping[str, ModelSnapshot]], bool]) -> None:
        """Return once `predicate(snapshot)` holds; re-checked after every routing event."""
        while not predicate(self.snapshot()):
            self._changed_waiters += 1
            await self._changed.wait()

    async def lost_child(self, lease: Lease) -> bool:
        """The model's server answered nothing: True when its child has died and swapd has now
        recorded that (so a new acquire starts it again), False when it is alive."""
        proc = self._procs.get(lease.model)
        if proc is None or not await proc.confirm_exit(LOST_CHILD_WAIT_S):
            return False
        try:
            async with asyncio.timeout(LOST_CHILD_WAIT_S):
                await self.wait_snapshot(lambda s: s[lease.model].state != ModelState.READY)
        except TimeoutError:
            return False
        return True

    def model_pids(self) -> dict[str, int]:
        """Root pid of every model child alive now."""
        return {m: pid for m, proc in self._procs.items() if (pid := proc.pid) is not None}

    def gpu_view(self) -> GpuCoordinator | None:
        return self._gpus

    def recent_output(self, model: str, lines: int = 20) -> list[str]:
        proc = self._procs.get(model)
        return proc.output(lines) if proc is not None else []

    async def preload(self, models: tuple[str, ...]) -> None:
        """Load models one after another, as `hooks.on_startup.preload` asks."""
        for model in models:
            try:
                lease = await self.acquire(model)
            except SwapdHttpError as exc:
                log.warning("preload failed model=%s error=%s", model, exc)
                continue
            self.release(lease)
            log.info("preloaded model=%s", model)

    async def stop_routing(self) -> None:
        """Fail every waiting request, refuse new ones, and end the owner task."""
        self.post(ShutdownRequested())
        await self._stopped.wait()

    async def close(self) -> None:
        """Cancel swaps in progress and stop every child (each stop is bounded)."""
        for task in list(self._swap_tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(proc.close() for proc in self._procs.values()))

    async def shutdown(self) -> None:
        await self.stop_routing()
        await self.close()

    # -- Effects: what the scheduler asks for ---------------------------------------------

    def start_swap(self, model: str, evict: tuple[str, ...]) -> None:
        why = describe_swap(self._config, self._planner)
        if self._gpus is not None and (placed := self._gpus.describe(model)):
            why = f"{placed} {why}".strip()
        log.info(
            "swap start model=%s evict=%s%s",
            model,
            ",".join(evict) or "-",
            f" {why}" if why else "",
        )
        if self._obs is not None:
            self._obs.swap_started(model, evict, why)
        task = self._spawn(self._swap(model, evict), name=f"swap:{model}")
        self._swap_tasks[model] = task

    def stop_models(self, models: tuple[str, ...], ticket: int | None) -> None:
        reason = "unload" if ticket is not None else "idle or no longer wanted"
        log.info("stop models=%s reason=%s", ",".join(models), reason)
        self._spawn(self._stop(models, ticket), name=f"stop:{','.join(models)}")

    def grant(self, req_id: int, model: str) -> bool:
        fut = self._waiters.pop(req_id, None)
        if fut is None or fut.done():
            return False
        fut.set_result(Lease(req_id=req_id, model=model, upstream=self._config.models[model].proxy))
        return True

    def reject(self, req_id: int, rejection: Rejection) -> None:
        fut = self._waiters.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_exception(_REJECTIONS[rejection.kind](rejection.message))

    def unload_done(self, ticket: int) -> None:
        fut = self._unloads.get(ticket)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- tasks ----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _swap(self, model: str, evict: tuple[str, ...]) -> None:
        started = self._now()
        evicted: float | None = None
        error: str | None = None
        try:
            await asyncio.gather(*(self._procs[m].stop() for m in evict))
            gpus = self._config.models[model].gpus
            if self._gpus is not None:
                await self._gpus.wait_for_room(model, evict, self.model_pids, self.post)
                gpus = self._gpus.gpus_for(model)
            evicted = self._now()
            generation = await self._procs[model].start(gpus)
        except ProcessStartError as exc:
            log.warning("swap failed model=%s error=%s", model, str(exc).splitlines()[0])
            error = str(exc)
            self.post(SwapFinished(model=model, error=error))
        except Exception as exc:
            # A bug must still answer the waiting requests, never leave them hanging.
            log.exception("swap crashed model=%s", model)
            error = f"model {model!r} failed to start: {exc!r}"
            self.post(SwapFinished(model=model, error=error))
        else:
            took_ms = (self._now() - started) * 1000
            log.info("swap done model=%s generation=%d took_ms=%.1f", model, generation, took_ms)
            self.post(SwapFinished(model=model, generation=generation))
        finally:
            task = asyncio.current_task()
            if self._obs is not None and task is not None and not task.cancelling():
                ended = self._now()
                split = evicted if evicted is not None else ended
                self._obs.swap_finished(
                    model, evict, evict_s=split - started, ready_s=ended - split, error=error
                )
            if self._swap_tasks.get(model) is asyncio.current_task():
                del self._swap_tasks[model]

    async def _stop(self, models: tuple[str, ...], ticket: int | None) -> None:
        # A swap still starting one of these models must not bring it back after the stop.
        swaps = [t for m in models if (t := self._swap_tasks.get(m)) is not None]
        for task in swaps:
            task.cancel()
        await asyncio.gather(*swaps, return_exceptions=True)
        results = await asyncio.gather(
            *(self._procs[m].stop() for m in models), return_exceptions=True
        )
        for model, result in zip(models, results, strict=True):
            if isinstance(result, Exception):
                log.error("stop crashed model=%s", model, exc_info=result)
        self.post(StopFinished(models=models, ticket=ticket))

    def _observe_gpus(self, ev: GpuSampled) -> None:
        assert self._gpus is not None
        snapshot = self.snapshot()
        live = (ModelState.STARTING, ModelState.READY, ModelState.STOPPING)
        running = frozenset(m for m, s in snapshot.items() if s.state in live)
        ready = frozenset(m for m, s in snapshot.items() if s.state == ModelState.READY)
        self._gpus.observe(ev.sample, running, ready)

    def _exit_reporter(self, model: str) -> Callable[[int, str], None]:
        def report(generation: int, detail: str) -> None:
            self.post(ProcessExited(model=model, generation=generation, detail=detail))

        return report
