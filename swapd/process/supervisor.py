"""ModelProcess: one model's child process, from spawn through readiness to a bounded stop.

Only this class changes a model's process state:

    STOPPED -> STARTING -> READY -> STOPPING -> STOPPED
                  |          |
                  |          +-- child exits by itself: on_unexpected_exit(generation, detail)
                  +-- exits early / times out / cancelled / stop(): STOPPED (start() raises)

start() and stop() run in tasks of their own, which callers join: concurrent callers share one
start or one stop, and a caller that goes away cannot leave a half-started child behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Coroutine
from typing import Any

import psutil

from swapd.config.model import ModelSpec
from swapd.core.state import ModelState
from swapd.errors import ProcessStartError
from swapd.process.gpu_env import with_gpus
from swapd.process.health import Readiness, probe_http, ready_unless_exited
from swapd.process.kill import kill_group, kill_survivors, snapshot_descendants
from swapd.process.output import OutputRing
from swapd.process.ports import LOOPBACK, port_in_use
from swapd.process.spawn import Child, describe_exit, parent_death_signal_supported
from swapd.process.stop import REAP_TIMEOUT_S, terminate

log = logging.getLogger(__name__)

ERROR_TAIL_LINES = 15
LIVENESS_INTERVAL_S = 10.0
LIVENESS_TIMEOUT_S = 5.0
LIVENESS_MISSES = 3
"""A ready child that answers none of this many health checks in a row is hung: killed."""
_FAILED = "model start failed model=%s generation=%d pid=%d "


class ModelProcess:
    def __init__(
        self,
        spec: ModelSpec,
        *,
        start_timeout_s: float,
        on_unexpected_exit: Callable[[int, str], None] | None = None,
        output_lines: int = 500,
        on_output: Callable[[str, str], None] | None = None,
        liveness_interval_s: float = LIVENESS_INTERVAL_S,
        liveness_timeout_s: float = LIVENESS_TIMEOUT_S,
    ) -> None:
        self.spec = spec
        self._start_timeout_s = start_timeout_s
        self._on_unexpected_exit = on_unexpected_exit
        self._ring = OutputRing(spec.id, output_lines, sink=on_output)
        self._liveness_interval_s = liveness_interval_s
        self._liveness_timeout_s = liveness_timeout_s
        self._hung: str | None = None
        """Why the liveness check killed the current child, for the exit report."""
        self._output_seen = asyncio.Event()
        self._state = ModelState.STOPPED
        self._generation = 0
        self._child: Child | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._start_task: asyncio.Task[int] | None = None
        self._start_waiters = 0
        self._stop_task: asyncio.Task[None] | None = None
        self._aborting = False
        """Set by stop() when it calls off a start, so the log says why the start ended."""
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        if not parent_death_signal_supported():
            log.warning("no parent-death signal here model=%s: children may outlive swapd", spec.id)

    @property
    def state(self) -> ModelState:
        return self._state

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    async def confirm_exit(self, timeout_s: float = 1.0) -> bool:
        """Whether the child is gone; if it has died but swapd has not reaped it yet (its socket
        closes before SIGCHLD is handled), wait, bounded, until its watcher has recorded it."""
        child = self._child
        if child is None:
            return True
        if not child.exited.done():
            try:
                if psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                pass
            await asyncio.wait({child.exited}, timeout=timeout_s)
        if self._watch_task is not None:
            await asyncio.wait({self._watch_task}, timeout=timeout_s)
        return child.exited.done()

    def _starting_line(self, line: str) -> None:
        self._ring.add(line)
        if self._state is ModelState.STARTING:
            self._output_seen.set()  # readiness is polled at once: the child may be ready

    def output(self, lines: int | None = None) -> list[str]:
        return self._ring.tail(lines)

    # -- start -----------------------------------------------------------------------------

    async def start(self, gpus: tuple[int, ...] | None = None) -> int:
        """Make the model READY; the generation that is running. Raises ProcessStartError.

        `gpus`: where a new child goes (CUDA_VISIBLE_DEVICES and `${GPUS}`); None leaves the
        GPUs to the model's own env. A child already running or starting keeps its GPUs.
        """
        while True:
            if self._closed:
                raise ProcessStartError(f"model {self.spec.id!r} is shut down")
            if self._stop_task is not None:
                await asyncio.wait({self._stop_task})
                continue
            child = self._child
            if self._state is ModelState.READY and child is not None:
                if not child.exited.done():
                    return self._generation
                # Died a moment ago; let its watcher record that before starting afresh.
                if self._watch_task is not None:
                    await asyncio.wait({self._watch_task}, timeout=REAP_TIMEOUT_S + 1)
                if self._child is child:
                    self._child = None
                    self._state = ModelState.STOPPED
                continue
            if self._start_task is None:
                self._aborting = False
                task = self._spawn(self._start_child(gpus), f"start:{self.spec.id}")
                # A done callback, not a finally: a task cancelled before its first step never
                # runs its body. Registered first, so it runs before any waiter wakes up.
                task.add_done_callback(self._forget_start)
                self._start_task = task
            return await self._join_start(self._start_task)

    def _forget_start(self, task: asyncio.Task[int]) -> None:
        if self._start_task is task:
            self._start_task = None

    async def _join_start(self, task: asyncio.Task[int]) -> int:
        self._start_waiters += 1
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and not me.cancelling() and task.cancelled():
                # Our caller is fine; the start itself was called off by stop() or close().
                raise ProcessStartError(
                    f"model {self.spec.id!r} was stopped before it was ready"
                ) from None
            if self._start_waiters == 1 and not task.done():
                # Nobody else wants this start: abort it, and let its child be killed before the
                # cancellation reaches our caller.
                task.cancel()
                await asyncio.wait({task}, timeout=self.spec.unload_timeout_s + REAP_TIMEOUT_S)
            raise
        finally:
            self._start_waiters -= 1

    async def _start_child(self, gpus: tuple[int, ...] | None) -> int:
        spec = self.spec
        if spec.port is not None and port_in_use(spec.port):
            log.warning(
                "model start refused model=%s port=%d reason=port_in_use", spec.id, spec.port
            )
            raise ProcessStartError(
                f"model {spec.id!r} cannot start: port {spec.port} on {LOOPBACK} is already in use"
                " by another process"
            )
        loop = asyncio.get_running_loop()
        began = loop.time()
        self._state = ModelState.STARTING
        try:
            argv, env = with_gpus(spec.argv, {**os.environ, **spec.env}, gpus)
            child = await Child.spawn(argv, env=env, on_line=self._starting_line)
        except (OSError, subprocess.SubprocessError) as exc:
            self._settle_stopped(None)
            log.warning("model start failed model=%s reason=spawn error=%s", spec.id, exc)
            raise ProcessStartError(
                f"model {spec.id!r} could not be started ({spec.argv[0]}): {exc}"
            ) from exc
        except BaseException:
            self._settle_stopped(None)
            raise
        self._generation += 1
        generation = self._generation
        self._child = child
        self._watch_task = self._spawn(self._watch(child, generation), f"watch:{spec.id}")
        ids = (spec.id, generation, child.pid)
        placed = f" gpus={','.join(map(str, gpus))}" if gpus is not None else ""
        log.info("model spawned model=%s generation=%d pid=%d%s", *ids, placed)

        progress = Readiness()
        url = self._health_url() if spec.check_endpoint is not None else None
        try:
            async with asyncio.timeout(self._start_timeout_s):
                ready = await ready_unless_exited(
                    url, child.finished, progress, name=spec.id, nudge=self._output_seen
                )
        except TimeoutError:
            log.warning(
                _FAILED + "reason=timeout timeout_s=%g polls=%d last=%r",
                *ids, self._start_timeout_s, progress.polls, progress.last,
            )  # fmt: skip
            await self._abandon(child)
            raise ProcessStartError(
                f"model {spec.id!r} did not become ready within {self._start_timeout_s:g} s "
                f"(GET {self._health_url()}, last answer: {progress.last}); {self._last_output()}"
            ) from None
        except asyncio.CancelledError:
            by = "stop" if self._aborting else "cancel"
            log.info("model start aborted model=%s generation=%d pid=%d by=%s", *ids, by)
            await self._abandon(child)
            raise
        except Exception as exc:
            log.exception(_FAILED + "reason=error", *ids)
            await self._abandon(child)
            raise ProcessStartError(f"model {spec.id!r} readiness check failed: {exc}") from exc
        if not ready:
            self._settle_stopped(child)
            rc = child.returncode
            took_ms = (loop.time() - began) * 1000
            log.warning(_FAILED + "reason=exited rc=%s after_ms=%.1f", *ids, rc, took_ms)
            raise ProcessStartError(
                f"model {spec.id!r} {describe_exit(rc)} before it was ready; {self._last_output()}"
            )
        if self._stop_task is None:
            # Else a stop arrived in the same instant; it owns the state and the child now.
            self._state = ModelState.READY
        took_ms = (loop.time() - began) * 1000
        log.info(
            "model started model=%s generation=%d pid=%d ready_ms=%.1f polls=%d",
            *ids, took_ms, progress.polls,
        )  # fmt: skip
        return generation

    def _health_url(self) -> str:
        endpoint = self.spec.check_endpoint or "/"
        if not endpoint.startswith("/"):
            endpoint = "/" + endpoint
        return self.spec.proxy.rstrip("/") + endpoint

    async def _abandon(self, child: Child) -> None:
        """Get rid of a child that failed to start. No grace period: it serves nobody yet, and
        SIGKILL is quick and certain. A configured cmdStop still runs first, because killing
        the client of, say, `docker run` would leave the container behind."""
        try:
            await terminate(
                child,
                self.spec,
                timeout_s=self.spec.unload_timeout_s,
                polite=False,
                on_line=self._ring.add,
            )
        finally:
            self._settle_stopped(child)

    def _settle_stopped(self, child: Child | None) -> None:
        if child is not None and self._child is child:
            self._child = None
        if self._stop_task is None:
            self._state = ModelState.STOPPED

    # -- after READY -------------------------------------------------------------------------

    async def _watch(self, child: Child, generation: int) -> None:
        liveness = None
        if self.spec.check_endpoint is not None and self._liveness_interval_s > 0:
            liveness = self._spawn(self._check_liveness(child), f"liveness:{self.spec.id}")
        try:
            await asyncio.wait({child.finished})
        finally:
            if liveness is not None:
                liveness.cancel()
        if child is not self._child or self._state is not ModelState.READY:
            return  # a start or a stop owns this exit
        if self._stop_task is not None:
            return
        self._child = None
        self._state = ModelState.STOPPED
        rc = child.returncode
        log.warning(
            "model exited unexpectedly model=%s generation=%d pid=%d rc=%s",
            self.spec.id,
            generation,
            child.pid,
            rc,
        )
        hung, self._hung = self._hung, None
        died = hung or describe_exit(rc)
        detail = f"model {self.spec.id!r} {died}; {self._last_output()}"
        if self._on_unexpected_exit is not None:
            try:
                self._on_unexpected_exit(generation, detail)
            except Exception:
                log.exception("on_unexpected_exit callback failed model=%s", self.spec.id)

    async def _check_liveness(self, child: Child) -> None:
        """Probe a ready child's checkEndpoint now and then; kill it when it stops answering.

        Only silence counts (a timeout, a refused or dropped connection): any HTTP status means
        the server is alive, and llama-server keeps answering /health while it generates."""
        url = self._health_url()
        misses = 0
        while True:
            await asyncio.sleep(self._liveness_interval_s)
            if child is not self._child or self._stop_task is not None:
                return
            if self._state is not ModelState.READY:
                continue
            answer = await probe_http(url, self._liveness_timeout_s)
            misses = misses + 1 if isinstance(answer, str) else 0
            if misses < LIVENESS_MISSES:
                continue
            self._hung = (
                f"stopped answering its health check ({url}: {answer}, {misses} times in a "
                "row) and was killed"
            )
            log.warning("model hung model=%s pid=%d: killing it", self.spec.id, child.pid)
            kill_survivors(snapshot_descendants(child.pid))
            kill_group(child.pid, signal.SIGKILL)
            return

    # -- stop --------------------------------------------------------------------------------

    async def stop(self, timeout_s: float | None = None) -> None:
        """Stop the child (and abort a start in progress). Never raises; idempotent."""
        task = self._stop_task
        if task is None:
            if (
                self._state is ModelState.STOPPED
                and self._start_task is None
                and self._child is None
            ):
                return
            grace = self.spec.unload_timeout_s if timeout_s is None else timeout_s
            self._state = ModelState.STOPPING
            task = self._spawn(self._run_stop(grace), f"stop:{self.spec.id}")
            task.add_done_callback(self._forget_stop)
            self._stop_task = task
        await asyncio.wait({task})

    async def _run_stop(self, timeout_s: float) -> None:
        child: Child | None = None
        try:
            start = self._start_task
            if start is not None and not start.done():
                self._aborting = True
                start.cancel()
                await asyncio.wait({start}, timeout=timeout_s + REAP_TIMEOUT_S)
            child = self._child
            if child is not None:
                await terminate(
                    child, self.spec, timeout_s=timeout_s, polite=True, on_line=self._ring.add
                )
        except Exception:
            log.exception("model stop failed model=%s", self.spec.id)
        finally:
            if child is not None and self._child is child:
                self._child = None
            self._state = ModelState.STOPPED
        watch = self._watch_task
        if watch is not None and not watch.done():
            await asyncio.wait({watch}, timeout=1.0)
            watch.cancel()

    def _forget_stop(self, task: asyncio.Task[None]) -> None:
        if self._stop_task is task:
            self._stop_task = None

    async def close(self) -> None:
        """Stop the child and end every task this object started. Later starts fail."""
        self._closed = True
        await self.stop()
        current = asyncio.current_task()
        leftovers = [t for t in self._tasks if t is not current]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=REAP_TIMEOUT_S)

    # -- helpers -----------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _last_output(self) -> str:
        lines = self._ring.tail(ERROR_TAIL_LINES)
        if not lines:
            return "it printed nothing"
        return "last output:\n" + "\n".join(f"  {line}" for line in lines)
