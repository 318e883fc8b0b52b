"""FifoScheduler: requests are served in arrival order, collated by model, with bounded waiting.

Decision tree for a request (llama-swap's FIFO, see docs/architecture.md):
unknown model -> reject; over the concurrency limit -> reject; a swap is already loading the
model -> join it; the model is ready and nothing must be evicted -> grant; the swap would collide
with one in progress, or evict a model that still has requests in flight -> queue; else swap.

Where swapd differs: llama-swap lets new requests for the running model jump ahead forever, so a
request for another model can starve. Here, once a queued request has waited `max_wait_s` for
some models to drain, new requests for those models queue behind it instead of being granted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from swapd.core.crashes import CrashGuard
from swapd.core.effects import Effects
from swapd.core.events import (
    ProcessExited,
    RequestArrived,
    RequestReleased,
    ResetRequested,
    StopFinished,
    SwapFinished,
    UnloadRequested,
)
from swapd.core.plan import Planner
from swapd.core.state import ModelRules, ModelSnapshot, ModelState, Rejection, RejectKind
from swapd.core.vram import DoesNotFit

DEFAULT_MAX_WAIT_S = 30.0

_RUNNING = frozenset({ModelState.STARTING, ModelState.READY, ModelState.STOPPING})


@dataclass(slots=True)
class _Waiting:
    req_id: int
    model: str
    arrived: float


@dataclass(slots=True)
class _Swap:
    evict: tuple[str, ...]
    waiters: list[_Waiting] = field(default_factory=list)


@dataclass(slots=True)
class _Model:
    rules: ModelRules
    state: ModelState = ModelState.STOPPED
    reason: str | None = None
    generation: int = 0
    in_flight: int = 0
    reserved: int = 0
    """Admitted and not yet released: queued, waiting on a swap, or in flight."""
    last_used: float = 0.0


class FifoScheduler:
    def __init__(
        self,
        effects: Effects,
        planner: Planner,
        rules: Mapping[str, ModelRules],
        *,
        now: Callable[[], float],
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        priority: Mapping[str, int] | None = None,
    ) -> None:
        self._fx = effects
        self._planner = planner
        self._now = now
        self._max_wait_s = max_wait_s
        self._priority = dict(priority or {})
        self._models = {name: _Model(rules=r) for name, r in rules.items()}
        self._queue: list[_Waiting] = []
        self._swaps: dict[str, _Swap] = {}
        self._granted: dict[int, str] = {}
        self._shutting_down = False
        self._crashes = CrashGuard()

    # -- events ---------------------------------------------------------------------------

    def on_request(self, ev: RequestArrived) -> None:
        m = self._models.get(ev.model)
        if self._shutting_down:
            self._fx.reject(
                ev.req_id, Rejection(RejectKind.SHUTTING_DOWN, "swapd is shutting down")
            )
            return
        if m is None:
            msg = f"model '{ev.model}' is not configured"
            self._fx.reject(ev.req_id, Rejection(RejectKind.UNKNOWN_MODEL, msg))
            return
        if m.reserved >= m.rules.concurrency_limit:
            msg = (
                f"model '{ev.model}' already has {m.reserved} requests queued or in flight "
                f"(concurrencyLimit {m.rules.concurrency_limit})"
            )
            self._fx.reject(ev.req_id, Rejection(RejectKind.OVER_LIMIT, msg))
            return
        m.reserved += 1
        w = _Waiting(req_id=ev.req_id, model=ev.model, arrived=self._now())
        if not self._place(w, held=self._held_models()):
            self._queue.append(w)

    def on_release(self, ev: RequestReleased) -> None:
        model = self._granted.pop(ev.req_id, None)
        if model is not None:
            m = self._models[model]
            m.in_flight -= 1
            m.reserved -= 1
            m.last_used = self._now()
            if m.in_flight == 0:
                self._drain()
            return
        for i, w in enumerate(self._queue):
            if w.req_id == ev.req_id:
                del self._queue[i]
                self._models[w.model].reserved -= 1
                return
        for target, swap in self._swaps.items():
            for i, w in enumerate(swap.waiters):
                if w.req_id == ev.req_id:
                    del swap.waiters[i]
                    self._models[w.model].reserved -= 1
                    if not swap.waiters:
                        self._abandon_swap(target, swap)
                    return

    def on_swap_finished(self, ev: SwapFinished) -> None:
        swap = self._swaps.pop(ev.model, None)
        if swap is None:
            return  # cancelled by an unload; the unload already answered its waiters
        for name in swap.evict:
            self._mark_stopped(name)
        m = self._models[ev.model]
        if ev.error is not None:
            self._crashes.failed(ev.model, self._now())
            m.state, m.reason = ModelState.FAILED, ev.error
            for w in swap.waiters:
                m.reserved -= 1
                self._fx.reject(w.req_id, Rejection(RejectKind.START_FAILED, ev.error))
        else:
            m.state, m.reason, m.generation = ModelState.READY, None, ev.generation
            self._crashes.ready(ev.model, self._now())
            m.last_used = self._now()
            for w in swap.waiters:
                self._grant(w)
        self._drain()

    def on_process_exited(self, ev: ProcessExited) -> None:
        m = self._models.get(ev.model)
        if m is None or m.state != ModelState.READY or m.generation != ev.generation:
            return  # a stop we asked for, or an instance that was already replaced
        m.state, m.reason = ModelState.FAILED, ev.detail
        self._crashes.failed(ev.model, self._now())
        self._drain()

    def on_unload(self, ev: UnloadRequested) -> None:
        names = tuple(self._models) if ev.models is None else ev.models
        targets = [n for n in names if n in self._models]
        to_stop: set[str] = set()
        for name in targets:
            swap = self._swaps.pop(name, None)
            if swap is not None:
                to_stop.update(swap.evict)  # the cancelled swap may have been stopping them
                for w in swap.waiters:
                    self._reject_unloaded(w)
            if self._models[name].state in _RUNNING:
                to_stop.add(name)
        for w in [w for w in self._queue if w.model in targets]:
            self._queue.remove(w)
            self._reject_unloaded(w)
        if not to_stop:
            self._fx.unload_done(ev.ticket)
            return
        for name in to_stop:
            self._models[name].state = ModelState.STOPPING
        self._fx.stop_models(tuple(sorted(to_stop)), ev.ticket)

    def on_reset(self, ev: ResetRequested) -> None:
        if ev.model in self._models:
            self._crashes.reset(ev.model)
            self._drain()

    def on_stop_finished(self, ev: StopFinished) -> None:
        for name in ev.models:
            self._mark_stopped(name)
        if ev.ticket is not None:
            self._fx.unload_done(ev.ticket)
        self._drain()

    def on_tick(self) -> None:
        now = self._now()
        expired = tuple(
            sorted(name for name, m in self._models.items() if self._idle_until(name, m) <= now)
        )
        for name in expired:
            self._models[name].state = ModelState.STOPPING
        if expired:
            self._fx.stop_models(expired, None)

    def on_shutdown(self) -> None:
        self._shutting_down = True
        rejection = Rejection(RejectKind.SHUTTING_DOWN, "swapd is shutting down")
        waiting = [w for s in self._swaps.values() for w in s.waiters] + self._queue
        self._swaps.clear()
        self._queue.clear()
        for w in waiting:
            self._models[w.model].reserved -= 1
            self._fx.reject(w.req_id, rejection)

    def next_deadline(self) -> float | None:
        deadlines = [self._idle_until(name, m) for name, m in self._models.items()]
        finite = [d for d in deadlines if d != float("inf")]
        return min(finite) if finite else None

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        queued: dict[str, int] = {}
        for w in self._queue + [w for s in self._swaps.values() for w in s.waiters]:
            queued[w.model] = queued.get(w.model, 0) + 1
        return {
            name: ModelSnapshot(
                model=name,
                state=m.state,
                in_flight=m.in_flight,
                queued=queued.get(name, 0),
                reason=m.reason,
            )
            for name, m in self._models.items()
        }

    # -- ModelUsage, for planners that weigh load ------------------------------------------

    def in_flight(self, model: str) -> int:
        return self._models[model].in_flight

    def last_used(self, model: str) -> float:
        return self._models[model].last_used

    def is_running(self, model: str) -> bool:
        return self._models[model].state in (ModelState.STARTING, ModelState.READY)

    # -- decisions ------------------------------------------------------------------------

    def _place(self, w: _Waiting, *, held: frozenset[str]) -> bool:
        """Grant, join or start a swap for `w`; False means it must wait in the queue."""
        swap = self._swaps.get(w.model)
        if swap is not None:
            swap.waiters.append(w)
            return True
        m = self._models[w.model]
        if m.state == ModelState.STOPPING:
            return False
        if self._refuse_failing(w):
            return True
        running = {n for n, o in self._models.items() if o.state in _RUNNING} | set(self._swaps)
        running.discard(w.model)
        try:
            evict = self._planner.evictions(w.model, running, self)
        except DoesNotFit as exc:
            m.reserved -= 1
            self._fx.reject(w.req_id, Rejection(RejectKind.NO_FIT, str(exc)))
            return True
        being_evicted = any(w.model in s.evict for s in self._swaps.values())
        if m.state == ModelState.READY and not evict and not being_evicted:
            if w.model in held:
                return False
            self._grant(w)
            return True
        if self._collides(w.model, evict) or any(self._models[n].in_flight for n in evict):
            return False
        self._start_swap(w, evict)
        return True

    def _refuse_failing(self, w: _Waiting) -> bool:
        """Reject `w` when its model keeps failing and may not be started again yet."""
        m = self._models[w.model]
        refusal = (
            self._crashes.refusal(w.model, self._now()) if m.state is ModelState.FAILED else None
        )
        if refusal is None:
            return False
        m.reserved -= 1
        self._fx.reject(
            w.req_id, Rejection(RejectKind.START_FAILED, f"{refusal}; last failure: {m.reason}")
        )
        return True

    def _collides(self, model: str, evict: tuple[str, ...]) -> bool:
        for target, swap in self._swaps.items():
            if target in evict or model in swap.evict or set(evict) & set(swap.evict):
                return True
        return False

    def _held_models(self) -> frozenset[str]:
        """Models whose new requests must not jump ahead: a queued request has waited too long
        for them to drain."""
        now = self._now()
        held: set[str] = set()
        for w in self._queue:
            if now - w.arrived < self._max_wait_s:
                break  # the queue is in arrival order: every later one has waited less
            running = {n for n, o in self._models.items() if o.state in _RUNNING}
            running.discard(w.model)
            try:
                held.update(self._planner.evictions(w.model, running, self))
            except DoesNotFit:
                continue  # it is rejected when its turn comes
        return frozenset(held)

    def _drain(self) -> None:
        if not self._queue:
            return
        held = self._held_models()
        placed: set[int] = set()
        for w in self._placement_order():
            if self._place(w, held=held):
                placed.add(w.req_id)
        self._queue = [w for w in self._queue if w.req_id not in placed]

    def _placement_order(self) -> list[_Waiting]:
        """Requests that have waited max_wait_s first (in arrival order: that is the bound),
        then by priority, higher first, then in arrival order. The queue itself stays in
        arrival order."""
        if not self._priority:
            return list(self._queue)
        now = self._now()
        return sorted(
            self._queue,
            key=lambda w: (now - w.arrived < self._max_wait_s, -self._priority.get(w.model, 0)),
        )

    def _abandon_swap(self, target: str, swap: _Swap) -> None:
        """Every client waiting for this load has left, and nobody else wants the model: stop
        loading it. Queued requests for it would have joined the swap."""
        del self._swaps[target]
        to_stop = {target, *swap.evict}
        for name in to_stop:
            self._models[name].state = ModelState.STOPPING
        self._fx.stop_models(tuple(sorted(to_stop)), None)

    def _start_swap(self, w: _Waiting, evict: tuple[str, ...]) -> None:
        self._swaps[w.model] = _Swap(evict=evict, waiters=[w])
        m = self._models[w.model]
        m.state, m.reason = ModelState.STARTING, None
        for name in evict:
            self._models[name].state = ModelState.STOPPING
        self._planner.on_swap_start(w.model, evict)
        self._fx.start_swap(w.model, evict)

    def _grant(self, w: _Waiting) -> None:
        m = self._models[w.model]
        if self._fx.grant(w.req_id, w.model):
            m.in_flight += 1
            self._granted[w.req_id] = w.model
        else:
            m.reserved -= 1  # the client left before it could be served

    def _reject_unloaded(self, w: _Waiting) -> None:
        self._models[w.model].reserved -= 1
        msg = f"model '{w.model}' was unloaded while this request waited for it"
        self._fx.reject(w.req_id, Rejection(RejectKind.UNLOADED, msg))

    def _mark_stopped(self, name: str) -> None:
        m = self._models[name]
        if m.state == ModelState.STOPPING:
            m.state = ModelState.STOPPED

    def _idle_until(self, name: str, m: _Model) -> float:
        """When `name` becomes due for its TTL unload; inf when it is not eligible."""
        if m.rules.ttl_s <= 0 or m.state != ModelState.READY or m.in_flight:
            return float("inf")
        if any(name in s.evict for s in self._swaps.values()):
            return float("inf")
        return m.last_used + m.rules.ttl_s
