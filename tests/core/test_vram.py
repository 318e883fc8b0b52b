"""VramPlanner and VramLedger, synchronously: placement, eviction until fit, learned footprints."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

import pytest

from swapd.core.events import RequestArrived, RequestReleased, StopFinished, SwapFinished
from swapd.core.fifo import FifoScheduler
from swapd.core.gpu_sample import GpuInfo, GpuSample
from swapd.core.plan import ModelUsage, OneModelPlanner
from swapd.core.serial import SerialScheduler
from swapd.core.state import ModelRules, ModelState, RejectKind
from swapd.core.vram import DoesNotFit, VramLedger, VramPlanner, VramRules
from tests.fakes.effects import FakeClock, FakeEffects

GiB = 2**30


class Coexist:
    """An inner planner that lets every model run together: only VRAM decides."""

    def evictions(
        self, target: str, running: Set[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        return ()

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        pass


@dataclass
class Usage:
    busy: dict[str, int] = field(default_factory=dict)
    used_at: dict[str, float] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)

    def in_flight(self, model: str) -> int:
        return self.busy.get(model, 0)

    def last_used(self, model: str) -> float:
        return self.used_at.get(model, 0.0)

    def is_running(self, model: str) -> bool:
        return model in self.live


def sample(
    *totals_gib: float, used_gib: Mapping[int, float] | None = None, **kw: object
) -> GpuSample:
    used = used_gib or {}
    gpus = tuple(
        GpuInfo(
            index=i,
            name=f"Fake GPU {i}",
            uuid=f"GPU-{i}",
            total=int(t * GiB),
            used=int(used.get(i, 0) * GiB),
            free=int((t - used.get(i, 0)) * GiB),
        )
        for i, t in enumerate(totals_gib)
    )
    return GpuSample(gpus=gpus, **kw)  # type: ignore[arg-type]


def make(
    needs_gib: Mapping[str, float | None],
    gpus: Mapping[str, tuple[int, ...]] | None = None,
    split: Set[str] = frozenset(),
    *,
    totals: tuple[float, ...] = (24.0,),
    headroom_gib: float = 0.5,
    costs: Mapping[str, float] | None = None,
) -> VramPlanner:
    gpus = gpus or {}
    rules = {
        m: VramRules(
            gpus=gpus.get(m, (0,) if len(totals) == 1 else None),
            split=m in split,
            need=int(n * GiB) if n is not None else None,
        )
        for m, n in needs_gib.items()
    }
    ledger = VramLedger(rules, headroom=int(headroom_gib * GiB))
    ledger.observe(sample(*totals), running=set(), ready=set())
    return VramPlanner(Coexist(), ledger, costs)


def load(planner: VramPlanner, model: str, running: Set[str] = frozenset()) -> tuple[str, ...]:
    """Plan and commit a swap to `model`, as the scheduler does."""
    evict = planner.evictions(model, running)
    planner.on_swap_start(model, evict)
    return evict


def test_vram_fits_without_eviction_when_free_memory_suffices() -> None:
    p = make({"a": 8, "b": 8})
    load(p, "a")
    assert p.evictions("b", {"a"}) == ()


def test_vram_evicts_cheapest_first_until_the_target_fits() -> None:
    p = make({"a": 8, "b": 8, "c": 6, "d": 10}, costs={"a": 1, "b": 5, "c": 1})
    for m in "abc":
        load(p, m)
    # 24 - 0.5 headroom - 22 in use = 1.5 free; d needs 10: a (8) is not enough, c (6) too.
    assert p.evictions("d", {"a", "b", "c"}) == ("a", "c")


def test_vram_among_equal_costs_evicts_the_least_recently_used() -> None:
    p = make({"a": 8, "b": 8, "c": 6, "d": 8})
    for m in "abc":
        load(p, m)
    usage = Usage(used_at={"a": 50.0, "b": 10.0, "c": 60.0})
    assert p.evictions("d", {"a", "b", "c"}, usage) == ("b",)
    usage.used_at["b"] = 99.0
    assert p.evictions("d", {"a", "b", "c"}, usage) == ("a",)


def test_vram_evicts_idle_models_before_busy_ones_even_if_dearer() -> None:
    p = make({"a": 10, "b": 10, "d": 10}, costs={"a": 1, "b": 9})
    load(p, "a")
    load(p, "b")
    assert p.evictions("d", {"a", "b"}, Usage(busy={"a": 2})) == ("b",)


def test_vram_plans_a_busy_eviction_when_nothing_else_makes_room() -> None:
    p = make({"a": 20, "d": 10})
    load(p, "a")
    assert p.evictions("d", {"a"}, Usage(busy={"a": 1})) == ("a",)


def test_vram_adds_to_the_inner_planners_evictions() -> None:
    ledger = VramLedger({m: VramRules(gpus=(0,), need=4 * GiB) for m in "abc"}, headroom=0)
    ledger.observe(sample(24.0), running=set(), ready=set())
    p = VramPlanner(OneModelPlanner(), ledger)
    load(p, "a")
    assert p.evictions("b", {"a"}) == ("a",)


def test_vram_never_fitting_model_raises_with_need_and_capacity() -> None:
    p = make({"big": 30})
    with pytest.raises(DoesNotFit) as info:
        p.evictions("big", set())
    message = str(info.value)
    assert "needs 30.0 GiB of VRAM (config)" in message
    assert "GPU 0 (Fake GPU 0): 24.0 GiB total" in message
    assert "23.5 GiB for models" in message


def test_vram_memory_of_other_processes_is_kept_out_of_the_plan() -> None:
    p = make({"a": 8, "d": 12})
    p.ledger.observe(sample(24.0, used_gib={0: 6.0}), running=set(), ready=set())
    load(p, "a")
    # 24 - 0.5 - 6 (someone else) - 8 = 9.5 < 12: a must go.
    assert p.evictions("d", {"a"}) == ("a",)
    p.ledger.observe(sample(24.0, used_gib={0: 12.0}), running=set(), ready=set())
    with pytest.raises(DoesNotFit, match=r"12\.0 GiB used by other processes"):
        p.evictions("d", {"a"})


def test_vram_without_process_figures_counts_running_models_from_the_ledger() -> None:
    p = make({"a": 8, "d": 12})
    load(p, "a")
    # NVML sees 8 GiB in use but cannot say by whom: it is a's, not someone else's.
    p.ledger.observe(sample(24.0, used_gib={0: 8.0}), running={"a"}, ready={"a"})
    assert p.ledger.external(0) == 0
    assert p.evictions("d", {"a"}) == ()


def test_vram_places_a_model_on_the_gpu_that_needs_no_eviction() -> None:
    p = make({"a": 20, "b": 8, "d": 10}, gpus={"a": (0,), "b": (1,), "d": (0, 1)}, totals=(24, 24))
    load(p, "a")
    load(p, "b")
    assert p.evictions("d", {"a", "b"}) == ()
    p.on_swap_start("d", ())
    assert p.ledger.placement("d") == (1,)


def test_vram_multi_gpu_placement_takes_the_cheapest_eviction() -> None:
    p = make(
        {"a": 20, "b": 20, "d": 10},
        gpus={"a": (0,), "b": (1,), "d": (0, 1)},
        totals=(24, 24),
        costs={"a": 5, "b": 2},
    )
    load(p, "a")
    load(p, "b")
    assert p.evictions("d", {"a", "b"}) == ("b",)
    p.on_swap_start("d", ("b",))
    assert p.ledger.placement("d") == (1,)


def test_vram_split_model_needs_its_share_on_every_gpu() -> None:
    p = make({"a": 16, "s": 20}, gpus={"a": (1,), "s": (0, 1)}, split={"s"}, totals=(24, 24))
    load(p, "a")
    # s needs 10 GiB on each GPU; GPU 1 has 24 - 0.5 - 16 = 7.5 free, so a must go.
    assert p.evictions("s", {"a"}) == ("a",)
    p.on_swap_start("s", ("a",))
    assert p.ledger.placement("s") == (0, 1)
    assert p.ledger.share("s", 0) == p.ledger.share("s", 1) == 10 * GiB


def test_vram_model_without_gpus_spans_every_gpu() -> None:
    p = make({"x": 30, "y": None}, totals=(24, 24))
    load(p, "x")
    assert p.ledger.placement("x") == (0, 1)
    assert p.ledger.share("x", 1) == 15 * GiB


def test_vram_learned_footprint_replaces_the_estimate_but_not_the_config() -> None:
    p = make({"a": None, "b": 4})
    ledger = p.ledger
    ledger.set_estimate("a", 3 * GiB)
    fp = ledger.footprint("a")
    assert fp is not None
    assert fp.source == "estimate"
    load(p, "a")
    load(p, "b")
    seen = sample(24.0, used_gib={0: 11.0}, model_usage={"a": {0: 5 * GiB}, "b": {0: 6 * GiB}})
    assert ledger.observe(seen, running={"a", "b"}, ready={"a", "b"}) == ["a", "b"]
    fp = ledger.footprint("a")
    assert fp is not None
    assert (fp.bytes, fp.source) == (5 * GiB, "learned")
    fp = ledger.footprint("b")
    assert fp is not None
    assert (fp.bytes, fp.source) == (4 * GiB, "config")
    assert ledger.learned() == {"a": 5 * GiB, "b": 6 * GiB}
    # The same figure again changes nothing; a model still loading teaches nothing.
    assert ledger.observe(seen, running={"a", "b"}, ready={"a", "b"}) == []
    loading = sample(24.0, model_usage={"c": {0: 1 * GiB}})
    assert ledger.observe(loading, running={"c"}, ready=set()) == []


def test_vram_learned_footprint_is_the_peak_of_the_current_instance() -> None:
    p = make({"a": None})
    load(p, "a")
    ledger = p.ledger
    for gib in (5, 7, 6):
        ledger.observe(sample(24.0, model_usage={"a": {0: gib * GiB}}), running={"a"}, ready={"a"})
    assert ledger.learned()["a"] == 7 * GiB
    load(p, "a")  # a new instance starts its own peak
    ledger.observe(sample(24.0, model_usage={"a": {0: 6 * GiB}}), running={"a"}, ready={"a"})
    assert ledger.learned()["a"] == 6 * GiB


def test_vram_without_a_sample_defers_to_the_inner_planner() -> None:
    ledger = VramLedger({"a": VramRules(need=100 * GiB)}, headroom=0)
    p = VramPlanner(Coexist(), ledger)
    assert p.evictions("a", set()) == ()
    p.on_swap_start("a", ())
    assert p.ledger.placement("a") is None


def test_vram_running_placed_target_is_not_placed_again() -> None:
    p = make({"a": 20, "b": 8})
    load(p, "a")
    load(p, "b")  # an over-commit the planner would not make, to prove the shortcut
    assert p.evictions("a", {"b"}, Usage(live={"a", "b"})) == ()


def test_vram_model_restricted_to_missing_gpus_is_explained() -> None:
    p = make({"a": 1}, gpus={"a": (3,)}, totals=(24, 24))
    with pytest.raises(DoesNotFit, match="GPU\\(s\\) 3, which this host does not have"):
        p.evictions("a", set())


# -- through the schedulers ---------------------------------------------------------------


class Rig:
    def __init__(self, planner: VramPlanner, serial: bool = False) -> None:
        self.fx = FakeEffects()
        self.clock = FakeClock()
        kind = SerialScheduler if serial else FifoScheduler
        self.sched = kind(self.fx, planner, {m: ModelRules() for m in "abcd"}, now=self.clock)
        self.n = 0

    def request(self, model: str) -> int:
        self.n += 1
        self.sched.on_request(RequestArrived(req_id=self.n, model=model))
        return self.n


def test_scheduler_rejects_a_model_that_can_never_fit_with_503_kind() -> None:
    rig = Rig(make({"a": 30, "b": 1, "c": 1, "d": 1}))
    rid = rig.request("a")
    assert rig.fx.rejected[rid].kind == RejectKind.NO_FIT
    assert rig.sched.snapshot()["a"].state == ModelState.STOPPED
    rid = rig.request("b")
    assert rig.fx.swaps == [("b", ())]
    assert rid not in rig.fx.rejected


def test_scheduler_waits_for_a_busy_model_to_drain_before_evicting_it_for_room() -> None:
    rig = Rig(make({"a": 20, "b": 10, "c": 1, "d": 1}))
    first = rig.request("a")
    rig.sched.on_swap_finished(SwapFinished(model="a", generation=1))
    assert rig.fx.granted == [first]
    waiting = rig.request("b")
    assert rig.fx.swaps == [("a", ())]  # b is queued: a is serving
    rig.sched.on_release(RequestReleased(req_id=first))
    assert rig.fx.swaps[-1] == ("b", ("a",))
    rig.sched.on_swap_finished(SwapFinished(model="b", generation=1))
    assert waiting in rig.fx.granted


def test_scheduler_runs_models_side_by_side_when_they_fit() -> None:
    rig = Rig(make({"a": 8, "b": 8, "c": 1, "d": 1}))
    rig.request("a")
    rig.sched.on_swap_finished(SwapFinished(model="a", generation=1))
    rig.request("b")
    assert rig.fx.swaps == [("a", ()), ("b", ())]


def test_serial_rejects_a_model_that_cannot_fit_and_serves_the_next() -> None:
    rig = Rig(make({"a": 1, "b": 30, "c": 1, "d": 1}), serial=True)
    first = rig.request("a")
    rig.sched.on_swap_finished(SwapFinished(model="a", generation=1))
    too_big = rig.request("b")
    after = rig.request("c")
    rig.sched.on_release(RequestReleased(req_id=first))
    assert rig.fx.rejected[too_big].kind == RejectKind.NO_FIT
    assert rig.fx.swaps[-1] == ("c", ("a",))
    rig.sched.on_stop_finished(StopFinished(models=("a",), ticket=None))
    assert after not in rig.fx.rejected
