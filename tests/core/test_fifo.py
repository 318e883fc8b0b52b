"""FifoScheduler driven synchronously through its event handlers: no event loop, no sleeps."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

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
from swapd.core.state import ModelRules, ModelState, RejectKind
from tests.fakes.effects import FakeClock, FakeEffects


class Harness:
    def __init__(
        self,
        rules: Mapping[str, ModelRules] | None = None,
        *,
        max_wait_s: float = 30.0,
        priority: Mapping[str, int] | None = None,
    ) -> None:
        self.fx = FakeEffects()
        self.clock = FakeClock()
        self.sched = FifoScheduler(
            self.fx,
            OneModelPlanner(),
            rules or {m: ModelRules() for m in "abc"},
            now=self.clock,
            max_wait_s=max_wait_s,
            priority=priority,
        )
        self._next_id = 0

    def request(self, model: str) -> int:
        self._next_id += 1
        self.sched.on_request(RequestArrived(req_id=self._next_id, model=model))
        return self._next_id

    def release(self, req_id: int) -> None:
        self.sched.on_release(RequestReleased(req_id=req_id))

    def swap_done(self, model: str, generation: int = 1, error: str | None = None) -> None:
        self.sched.on_swap_finished(SwapFinished(model=model, generation=generation, error=error))

    def state(self, model: str) -> ModelState:
        return self.sched.snapshot()[model].state

    def ready(self, model: str) -> None:
        """Bring `model` to READY with no requests in flight."""
        rid = self.request(model)
        self.swap_done(model)
        self.release(rid)


def test_fifo_cold_request_starts_swap_and_is_granted_when_ready() -> None:
    h = Harness()
    rid = h.request("a")
    assert h.fx.swaps == [("a", ())]
    assert h.state("a") == ModelState.STARTING
    assert h.fx.granted == []
    h.swap_done("a")
    assert h.fx.granted == [rid]
    assert h.state("a") == ModelState.READY
    assert h.sched.snapshot()["a"].in_flight == 1


def test_fifo_requests_for_ready_model_are_granted_concurrently() -> None:
    h = Harness()
    h.ready("a")
    r1, r2 = h.request("a"), h.request("a")
    assert h.fx.granted[-2:] == [r1, r2]
    assert h.sched.snapshot()["a"].in_flight == 2
    assert len(h.fx.swaps) == 1


def test_fifo_second_request_joins_swap_in_progress() -> None:
    h = Harness()
    r1, r2 = h.request("a"), h.request("a")
    assert h.fx.swaps == [("a", ())]
    h.swap_done("a")
    assert h.fx.granted == [r1, r2]


def test_fifo_unknown_model_is_rejected() -> None:
    h = Harness()
    rid = h.request("zzz")
    assert h.fx.rejected[rid].kind == RejectKind.UNKNOWN_MODEL
    assert "zzz" in h.fx.rejected[rid].message


def test_fifo_concurrency_limit_counts_waiting_and_in_flight() -> None:
    h = Harness({"a": ModelRules(concurrency_limit=2)})
    r1, r2, r3 = h.request("a"), h.request("a"), h.request("a")
    assert h.fx.rejected[r3].kind == RejectKind.OVER_LIMIT
    assert "concurrencyLimit 2" in h.fx.rejected[r3].message
    h.swap_done("a")
    assert h.fx.granted == [r1, r2]
    h.release(r1)
    r4 = h.request("a")
    assert h.fx.granted[-1] == r4


def test_fifo_swap_waits_for_in_flight_requests_to_drain() -> None:
    h = Harness()
    ra = h.request("a")
    h.swap_done("a")
    rb = h.request("b")
    assert h.fx.swaps == [("a", ())], "must not evict a model with a request in flight"
    assert h.sched.snapshot()["b"].queued == 1
    h.release(ra)
    assert h.fx.swaps[-1] == ("b", ("a",))
    assert h.state("a") == ModelState.STOPPING
    h.swap_done("b")
    assert h.fx.granted[-1] == rb
    assert h.state("a") == ModelState.STOPPED


def test_fifo_collates_requests_by_model() -> None:
    """A B C A B C is served A A B B C C with one load each."""
    h = Harness()
    ids = {m: [] for m in "abc"}  # type: dict[str, list[int]]
    for m in "abcabc":
        ids[m].append(h.request(m))
    assert h.fx.swaps == [("a", ())]
    h.swap_done("a")
    assert h.fx.granted == ids["a"]
    for rid in ids["a"]:
        h.release(rid)
    assert h.fx.swaps[-1] == ("b", ("a",))
    h.swap_done("b")
    assert h.fx.granted[2:] == ids["b"]
    for rid in ids["b"]:
        h.release(rid)
    assert h.fx.swaps[-1] == ("c", ("b",))
    h.swap_done("c")
    assert h.fx.granted[4:] == ids["c"]
    assert len(h.fx.swaps) == 3


def test_fifo_failed_start_rejects_waiters_and_next_request_retries() -> None:
    h = Harness()
    r1, r2 = h.request("a"), h.request("a")
    h.swap_done("a", error="model 'a' exited with code 1 before it was ready")
    assert h.fx.rejected[r1].kind == RejectKind.START_FAILED
    assert "exited with code 1" in h.fx.rejected[r2].message
    snap = h.sched.snapshot()["a"]
    assert snap.state == ModelState.FAILED
    assert snap.reason is not None
    h.request("a")
    assert h.fx.swaps == [("a", ()), ("a", ())]


def test_fifo_cancelled_queued_request_leaves_the_queue() -> None:
    h = Harness({"a": ModelRules(), "b": ModelRules(concurrency_limit=1)})
    ra = h.request("a")
    h.swap_done("a")
    rb = h.request("b")
    h.release(rb)  # client left while queued
    assert h.sched.snapshot()["b"].queued == 0
    h.release(ra)
    assert h.fx.swaps == [("a", ())], "nobody waits for b any more"
    assert h.request("b") not in h.fx.rejected, "its concurrency slot was returned"


def test_fifo_load_is_cancelled_when_its_last_waiter_leaves() -> None:
    h = Harness({"a": ModelRules(concurrency_limit=1), "b": ModelRules()})
    h.ready("b")
    r1 = h.request("a")
    assert h.fx.swaps[-1] == ("a", ("b",))
    h.release(r1)  # the only client waiting for a's load left
    assert h.fx.stops == [(("a", "b"), None)]
    assert h.state("a") == ModelState.STOPPING
    h.swap_done("a")  # the cancelled swap's late result changes nothing
    assert h.fx.granted[-1] != r1
    h.sched.on_stop_finished(StopFinished(models=("a", "b"), ticket=None))
    assert h.state("a") == ModelState.STOPPED
    r2 = h.request("a")  # its concurrency slot was returned
    assert h.fx.swaps[-1] == ("a", ())
    h.swap_done("a", generation=2)
    assert h.fx.granted[-1] == r2


def test_fifo_load_goes_on_while_one_waiter_remains() -> None:
    h = Harness()
    r1, r2 = h.request("a"), h.request("a")
    h.release(r1)
    assert h.fx.stops == []
    h.swap_done("a")
    assert h.fx.granted == [r2]


def test_fifo_priority_picks_the_next_swap_among_queued_requests() -> None:
    h = Harness(priority={"c": 5})
    ra = h.request("a")
    h.swap_done("a")
    rb, rc = h.request("b"), h.request("c")
    h.release(ra)
    assert h.fx.swaps[-1] == ("c", ("a",)), "c has the higher priority"
    h.swap_done("c")
    h.release(rc)
    assert h.fx.swaps[-1] == ("b", ("c",))
    h.swap_done("b")
    assert h.fx.granted[-1] == rb


def test_fifo_a_request_past_max_wait_goes_before_higher_priorities() -> None:
    h = Harness(priority={"c": 5}, max_wait_s=10.0)
    ra = h.request("a")
    h.swap_done("a")
    h.request("b")
    h.clock.advance(11.0)
    h.request("c")
    h.release(ra)
    assert h.fx.swaps[-1] == ("b", ("a",)), "b has waited past max_wait: bounded waiting wins"


def test_fifo_grant_to_departed_client_is_not_counted_in_flight() -> None:
    h = Harness()
    rid = h.request("a")
    h.fx.gone.add(rid)
    h.swap_done("a")
    assert h.sched.snapshot()["a"].in_flight == 0
    h.release(rid)  # the handler's release arrives later and must be harmless
    assert h.sched.snapshot()["a"].in_flight == 0
    h.request("b")
    assert h.fx.swaps[-1] == ("b", ("a",))


def test_fifo_release_is_idempotent() -> None:
    h = Harness()
    rid = h.request("a")
    h.swap_done("a")
    h.release(rid)
    h.release(rid)
    assert h.sched.snapshot()["a"].in_flight == 0


def test_fifo_new_requests_stop_jumping_ahead_after_max_wait() -> None:
    h = Harness(max_wait_s=10.0)
    ra = h.request("a")
    h.swap_done("a")
    rb = h.request("b")
    h.clock.advance(5)
    early = h.request("a")
    assert early in h.fx.granted, "before max_wait the running model is still served"
    h.clock.advance(6)
    late = h.request("a")
    assert late not in h.fx.granted, "after max_wait new requests for a queue behind b"
    h.release(ra)
    h.release(early)
    assert h.fx.swaps[-1] == ("b", ("a",))
    h.swap_done("b")
    assert rb in h.fx.granted
    assert late not in h.fx.granted


def test_fifo_crash_of_ready_model_marks_it_failed_and_restarts_on_demand() -> None:
    h = Harness()
    h.ready("a")
    h.sched.on_process_exited(ProcessExited(model="a", generation=1, detail="exit code -9"))
    assert h.state("a") == ModelState.FAILED
    h.request("a")
    assert h.fx.swaps[-1] == ("a", ())


def test_fifo_exit_of_an_older_generation_is_ignored() -> None:
    h = Harness()
    h.request("a")
    h.swap_done("a", generation=2)
    h.sched.on_process_exited(ProcessExited(model="a", generation=1, detail="old"))
    assert h.state("a") == ModelState.READY


def test_fifo_unload_stops_model_and_fails_its_waiters() -> None:
    h = Harness()
    h.ready("a")
    rb = h.request("b")  # b swaps in at once since a is idle
    assert h.fx.swaps[-1] == ("b", ("a",))
    h.sched.on_unload(UnloadRequested(models=("b",), ticket=7))
    assert h.fx.rejected[rb].kind == RejectKind.UNLOADED
    assert h.fx.stops == [(("a", "b"), 7)]
    h.swap_done("b")  # the cancelled swap's late result is ignored
    assert rb not in h.fx.granted
    h.sched.on_stop_finished(StopFinished(models=("a", "b"), ticket=7))
    assert h.fx.unloads_done == [7]
    assert h.state("a") == h.state("b") == ModelState.STOPPED


def test_fifo_unload_of_stopped_models_completes_at_once() -> None:
    h = Harness()
    h.sched.on_unload(UnloadRequested(models=None, ticket=3))
    assert h.fx.unloads_done == [3]
    assert h.fx.stops == []


def test_fifo_request_for_a_stopping_model_waits_for_the_stop() -> None:
    h = Harness()
    h.ready("a")
    h.sched.on_unload(UnloadRequested(models=("a",), ticket=1))
    rid = h.request("a")
    assert h.fx.swaps == [("a", ())]
    h.sched.on_stop_finished(StopFinished(models=("a",), ticket=1))
    assert h.fx.swaps == [("a", ()), ("a", ())]
    h.swap_done("a", generation=2)
    assert h.fx.granted[-1] == rid


def test_fifo_late_stop_finished_does_not_stop_a_restarted_model() -> None:
    h = Harness()
    h.ready("a")
    h.sched.on_unload(UnloadRequested(models=("a",), ticket=1))
    rb = h.request("b")  # evicts the stopping a as part of b's swap
    assert h.fx.swaps[-1] == ("b", ("a",))
    h.swap_done("b")
    h.release(rb)
    h.request("a")
    assert h.state("a") == ModelState.STARTING
    h.sched.on_stop_finished(StopFinished(models=("a",), ticket=1))
    assert h.state("a") == ModelState.STARTING
    assert h.fx.unloads_done == [1]


def test_fifo_ttl_unloads_idle_model_after_last_release() -> None:
    h = Harness({"a": ModelRules(ttl_s=60)})
    rid = h.request("a")
    h.swap_done("a")
    assert h.sched.next_deadline() is None, "in flight: no TTL deadline"
    h.clock.advance(100)
    h.release(rid)
    deadline = h.sched.next_deadline()
    assert deadline == pytest.approx(h.clock.t + 60)
    h.clock.advance(59)
    h.sched.on_tick()
    assert h.fx.stops == []
    h.clock.advance(1)
    h.sched.on_tick()
    assert h.fx.stops == [(("a",), None)]
    assert h.state("a") == ModelState.STOPPING
    h.sched.on_stop_finished(StopFinished(models=("a",), ticket=None))
    assert h.state("a") == ModelState.STOPPED
    assert h.sched.next_deadline() is None


def test_fifo_ttl_zero_never_unloads() -> None:
    h = Harness({"a": ModelRules(ttl_s=0)})
    h.ready("a")
    assert h.sched.next_deadline() is None


def test_fifo_shutdown_rejects_waiters_and_new_requests() -> None:
    h = Harness()
    ra = h.request("a")
    h.swap_done("a")
    rb = h.request("b")
    rc = h.request("a")
    assert rc in h.fx.granted
    h.sched.on_shutdown()
    assert h.fx.rejected[rb].kind == RejectKind.SHUTTING_DOWN
    rd = h.request("a")
    assert h.fx.rejected[rd].kind == RejectKind.SHUTTING_DOWN
    assert ra not in h.fx.rejected


def test_fifo_every_request_gets_exactly_one_answer_in_a_mixed_run() -> None:
    h = Harness({"a": ModelRules(concurrency_limit=3), "b": ModelRules(), "c": ModelRules()})
    ids = [h.request(m) for m in "abcaaab"]
    h.swap_done("a")
    for rid in list(h.fx.granted):
        h.release(rid)
    h.swap_done("b")
    for rid in list(h.fx.granted):
        h.release(rid)
    h.swap_done("c")
    for rid in list(h.fx.granted):
        h.release(rid)
    answered = set(h.fx.granted) | set(h.fx.rejected)
    assert answered == set(ids)
    assert not set(h.fx.granted) & set(h.fx.rejected)
    assert all(s.in_flight == 0 and s.queued == 0 for s in h.sched.snapshot().values())


def test_fifo_bound_b_is_served_within_max_wait_plus_drain_under_a_stream_of_a() -> None:
    """Four clients keep A busy (each sends again the moment its 1 s request ends). B arrives;
    its swap must start within max_wait + the 1 s that A's in-flight requests need to drain."""
    max_wait, service = 30.0, 1.0
    h = Harness(max_wait_s=max_wait)
    h.ready("a")
    ends: dict[int, float] = {}
    for _ in range(4):
        rid = h.request("a")
        ends[rid] = h.clock.t + service
        h.clock.advance(0.25)
    b_arrived = h.clock.t
    h.request("b")
    while not h.fx.swaps or h.fx.swaps[-1][0] != "b":
        rid = min(ends, key=ends.__getitem__)
        h.clock.t = ends.pop(rid)
        assert h.clock.t <= b_arrived + max_wait + service, "B is starving"
        h.release(rid)
        new = h.request("a")  # the client sends again at once
        if new in h.fx.granted:
            ends[new] = h.clock.t + service
    assert h.fx.swaps[-1] == ("b", ("a",))
    assert h.clock.t - b_arrived <= max_wait + service
    assert h.clock.t - b_arrived >= max_wait, "A's clients keep llama-swap's behaviour until then"
