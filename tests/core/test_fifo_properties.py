"""Property tests: random event sequences against FifoScheduler with the one-model planner.

Invariants checked after every step: a granted request's model is not being stopped; a model
with requests in flight is never evicted; at most one model is starting or ready. At the end,
after every outstanding swap and stop completes and every granted request is released, each
request has had exactly one answer and nothing is left in flight or queued.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.core.events import (
    ProcessExited,
    RequestArrived,
    RequestReleased,
    StopFinished,
    SwapFinished,
    UnloadRequested,
)
from swapd.core.fifo import FifoScheduler
from swapd.core.plan import OneModelPlanner
from swapd.core.state import ModelRules, ModelState
from tests.fakes.effects import FakeClock, FakeEffects

MODELS = ("a", "b", "c")

action = st.one_of(
    st.tuples(st.just("request"), st.sampled_from(MODELS)),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("swap_ok"), st.integers(0, 5)),
    st.tuples(st.just("swap_fail"), st.integers(0, 5)),
    st.tuples(st.just("stop_done"), st.integers(0, 5)),
    st.tuples(st.just("crash"), st.sampled_from(MODELS)),
    st.tuples(st.just("unload"), st.sampled_from((*MODELS, None))),
    st.tuples(st.just("tick"), st.floats(0, 100)),
)


class Sim:
    def __init__(self) -> None:
        self.fx = FakeEffects()
        self.clock = FakeClock()
        rules = {m: ModelRules(concurrency_limit=4, ttl_s=30 if m == "a" else 0) for m in MODELS}
        self.s = FifoScheduler(self.fx, OneModelPlanner(), rules, now=self.clock, max_wait_s=20)
        self.ids = 0
        self.open: list[int] = []  # requests whose handler has not released yet
        self.swaps_seen = 0
        self.stops_seen = 0
        self.pending_swaps: list[str] = []
        self.pending_stops: list[tuple[tuple[str, ...], int | None]] = []
        self.generation = 0
        self.tickets = 0
        self.released: set[int] = set()

    def collect(self) -> None:
        for model, evict in self.fx.swaps[self.swaps_seen :]:
            self.pending_swaps.append(model)
            snap = self.s.snapshot()
            assert all(snap[m].in_flight == 0 for m in evict), (model, evict)
        self.swaps_seen = len(self.fx.swaps)
        self.pending_stops.extend(self.fx.stops[self.stops_seen :])
        self.stops_seen = len(self.fx.stops)
        snap = self.s.snapshot()
        live = [m for m in MODELS if snap[m].state in (ModelState.STARTING, ModelState.READY)]
        assert len(live) <= 1, snap

    def step(self, kind: str, arg: object) -> None:
        if kind == "request":
            self.ids += 1
            self.open.append(self.ids)
            self.s.on_request(RequestArrived(req_id=self.ids, model=str(arg)))
        elif kind == "release" and self.open:
            rid = self.open.pop(int(str(arg)) % len(self.open))
            self.released.add(rid)
            self.s.on_release(RequestReleased(req_id=rid))
        elif kind in ("swap_ok", "swap_fail") and self.pending_swaps:
            model = self.pending_swaps.pop(int(str(arg)) % len(self.pending_swaps))
            self.generation += 1
            err = "boom" if kind == "swap_fail" else None
            self.s.on_swap_finished(
                SwapFinished(model=model, generation=self.generation, error=err)
            )
        elif kind == "stop_done" and self.pending_stops:
            models, ticket = self.pending_stops.pop(int(str(arg)) % len(self.pending_stops))
            self.s.on_stop_finished(StopFinished(models=models, ticket=ticket))
        elif kind == "crash":
            self.s.on_process_exited(
                ProcessExited(model=str(arg), generation=self.generation, detail="crash")
            )
        elif kind == "unload":
            self.tickets += 1
            models = None if arg is None else (str(arg),)
            self.s.on_unload(UnloadRequested(models=models, ticket=self.tickets))
        elif kind == "tick":
            self.clock.advance(float(str(arg)))
            self.s.on_tick()
        self.collect()

    def settle(self) -> None:
        for _ in range(200):
            if self.pending_swaps:
                self.step("swap_ok", 0)
            elif self.pending_stops:
                self.step("stop_done", 0)
            elif granted := [r for r in self.open if r in self.fx.granted]:
                self.open.remove(granted[0])
                self.released.add(granted[0])
                self.s.on_release(RequestReleased(req_id=granted[0]))
                self.collect()
            else:
                stuck = [r for r in self.open if r not in self.fx.rejected]
                assert not stuck, f"requests left waiting forever: {stuck}"
                for rid in self.open:
                    self.s.on_release(RequestReleased(req_id=rid))
                self.open.clear()
                return
        raise AssertionError("did not settle")


@settings(max_examples=300, deadline=None)
@given(st.lists(action, max_size=60))
def test_fifo_properties_hold_for_random_event_sequences(actions: list[tuple[str, object]]) -> None:
    sim = Sim()
    for kind, arg in actions:
        sim.step(kind, arg)
        granted_states = sim.s.snapshot()
        for rid in sim.fx.granted:
            assert rid not in sim.fx.rejected
        assert all(v.in_flight >= 0 for v in granted_states.values())
    sim.settle()
    answered = set(sim.fx.granted) | set(sim.fx.rejected)
    # Requests released before any answer (client left) owe nothing; all others got one answer.
    unanswered = set(range(1, sim.ids + 1)) - answered
    assert unanswered <= sim.released
    assert not set(sim.fx.granted) & set(sim.fx.rejected)
    assert len(sim.fx.granted) == len(set(sim.fx.granted))
    snap = sim.s.snapshot()
    assert all(v.in_flight == 0 and v.queued == 0 for v in snap.values()), snap
    assert sorted(sim.fx.unloads_done) == list(range(1, sim.tickets + 1))
