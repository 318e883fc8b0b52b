"""SerialScheduler driven synchronously: strict arrival order, one request and one model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.core.events import RequestArrived, RequestReleased, StopFinished, SwapFinished
from swapd.core.plan import ModelUsage, Planner
from swapd.core.serial import SerialScheduler
from swapd.core.state import ModelRules, ModelState, RejectKind
from tests.fakes.effects import FakeClock, FakeEffects


class CoexistPlanner:
    """A planner that would let every model run together: serial must ignore it."""

    def evictions(
        self, target: str, running: Iterable[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        return ()

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        pass


class Harness:
    def __init__(self, rules: Mapping[str, ModelRules] | None = None) -> None:
        self.fx = FakeEffects()
        self.clock = FakeClock()
        planner: Planner = CoexistPlanner()
        self.sched = SerialScheduler(
            self.fx, planner, rules or {m: ModelRules() for m in "abc"}, now=self.clock
        )
        self._next_id = 0
        self.generation = 0

    def request(self, model: str) -> int:
        self._next_id += 1
        self.sched.on_request(RequestArrived(req_id=self._next_id, model=model))
        return self._next_id

    def release(self, req_id: int) -> None:
        self.sched.on_release(RequestReleased(req_id=req_id))

    def finish_swap(self) -> None:
        model, _ = self.fx.swaps[-1]
        self.generation += 1
        self.sched.on_swap_finished(SwapFinished(model=model, generation=self.generation))

    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.sched.snapshot().values())


def test_serial_runs_a_b_c_a_in_order_reloading_a() -> None:
    h = Harness()
    ids = [h.request(m) for m in "abca"]
    served: list[int] = []
    for _ in ids:
        h.finish_swap()
        assert h.in_flight() == 1
        served.append(h.fx.granted[-1])
        h.release(h.fx.granted[-1])
    assert served == ids
    assert h.fx.swaps == [("a", ()), ("b", ("a",)), ("c", ("b",)), ("a", ("c",))]


def test_serial_same_model_requests_run_one_at_a_time() -> None:
    h = Harness()
    r1, r2 = h.request("a"), h.request("a")
    h.finish_swap()
    assert h.fx.granted == [r1]
    h.release(r1)
    assert h.fx.granted == [r1, r2]
    assert len(h.fx.swaps) == 1, "a is ready: no reload for the same model"


def test_serial_ignores_a_planner_that_allows_coexistence() -> None:
    h = Harness()
    r = h.request("a")
    h.finish_swap()
    h.release(r)
    h.request("b")
    assert h.fx.swaps[-1] == ("b", ("a",))


def test_serial_a_later_request_never_overtakes_the_head() -> None:
    h = Harness()
    r1 = h.request("a")
    h.finish_swap()
    r2 = h.request("b")
    r3 = h.request("a")  # a is ready, but b arrived first
    assert h.fx.granted == [r1]
    h.release(r1)
    assert h.fx.swaps[-1] == ("b", ("a",))
    h.finish_swap()
    assert h.fx.granted == [r1, r2]
    h.release(r2)
    assert h.fx.swaps[-1] == ("a", ("b",))
    h.finish_swap()
    assert h.fx.granted == [r1, r2, r3]


def test_serial_waits_for_a_stop_in_progress() -> None:
    h = Harness({"a": ModelRules(ttl_s=5.0), "b": ModelRules()})
    r = h.request("a")
    h.finish_swap()
    h.release(r)
    h.clock.advance(6.0)
    h.sched.on_tick()
    assert h.fx.stops == [(("a",), None)]
    h.request("b")
    assert len(h.fx.swaps) == 1, "b waits until a's TTL stop has finished"
    h.sched.on_stop_finished(StopFinished(models=("a",), ticket=None))
    assert h.fx.swaps[-1] == ("b", ())


def test_serial_failed_start_answers_the_head_and_moves_on() -> None:
    h = Harness()
    r1, r2 = h.request("a"), h.request("b")
    h.sched.on_swap_finished(SwapFinished(model="a", error="boom"))
    assert h.fx.rejected[r1].kind == RejectKind.START_FAILED
    assert h.fx.swaps[-1] == ("b", ())
    h.finish_swap()
    assert h.fx.granted == [r2]
    assert h.sched.snapshot()["a"].state == ModelState.FAILED


def test_serial_a_queued_request_that_leaves_does_not_block_the_queue() -> None:
    h = Harness()
    r1 = h.request("a")
    h.finish_swap()
    r2, r3 = h.request("b"), h.request("c")
    h.release(r2)
    h.release(r1)
    assert h.fx.swaps[-1] == ("c", ("a",))
    h.finish_swap()
    assert h.fx.granted == [r1, r3]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), min_size=1, max_size=25))
def test_serial_property_order_single_request_single_model(
    steps: list[tuple[str, bool]],
) -> None:
    """Random arrivals, each either served to completion or abandoned while queued: grants come
    in arrival order, never two at once, and never with another model running."""
    h = Harness()
    arrived: list[int] = []
    model_of: dict[int, str] = {}
    abandoned: set[int] = set()
    for model, abandon in steps:
        swaps_before = len(h.fx.swaps)
        rid = h.request(model)
        arrived.append(rid)
        model_of[rid] = model
        queued = rid not in h.fx.granted and len(h.fx.swaps) == swaps_before
        if abandon and queued:
            h.release(rid)
            abandoned.add(rid)
    done: set[int] = set()
    while len(done) + len(abandoned) < len(arrived):
        running = [m for m, s in h.sched.snapshot().items() if s.state != ModelState.STOPPED]
        pending = [r for r in h.fx.granted if r not in done]
        assert len(pending) <= 1
        if pending:
            assert running == [model_of[pending[0]]], "another model runs beside a request"
            done.add(pending[0])
            h.release(pending[0])
        else:
            h.finish_swap()
    assert h.fx.granted == [r for r in arrived if r not in abandoned]


def test_serial_head_leaving_during_its_load_cancels_it_and_the_next_goes() -> None:
    h = Harness()
    r1, r2 = h.request("a"), h.request("b")
    h.release(r1)
    assert h.fx.stops == [(("a",), None)]
    h.sched.on_stop_finished(StopFinished(models=("a",), ticket=None))
    assert h.fx.swaps[-1] == ("b", ())
    h.finish_swap()
    assert h.fx.granted == [r2]
