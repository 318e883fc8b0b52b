"""Crash-loop protection: backoff after repeated failures, a hold, an operator reset."""

from __future__ import annotations

from swapd.core.crashes import CrashGuard
from swapd.core.events import ProcessExited, RequestArrived, ResetRequested, SwapFinished
from swapd.core.fifo import FifoScheduler
from swapd.core.plan import OneModelPlanner
from swapd.core.serial import SerialScheduler
from swapd.core.state import ModelRules, ModelState, RejectKind
from tests.fakes.effects import FakeClock, FakeEffects


def test_guard_first_failure_is_free_then_the_wait_doubles_then_it_holds() -> None:
    g = CrashGuard(max_failures=4, backoff_max_s=30)
    g.failed("m", 100.0)
    assert g.refusal("m", 100.0) is None  # the next request may start it at once
    g.failed("m", 100.0)
    assert g.refusal("m", 100.5) == (
        "model 'm' failed 2 times in a row; the next attempt may start in 0.5 s"
    )
    assert g.refusal("m", 101.0) is None
    g.failed("m", 101.0)
    assert g.refusal("m", 102.9) is not None
    assert g.refusal("m", 103.0) is None  # 2 s after the third
    g.failed("m", 103.0)
    held = g.refusal("m", 10_000.0)
    assert held is not None
    assert "held until an operator resets it (POST /api/models/reset/m)" in held
    g.reset("m")
    assert g.refusal("m", 103.0) is None
    assert g.failures("m") == 0


def test_guard_backoff_is_capped() -> None:
    g = CrashGuard(max_failures=100, backoff_max_s=30)
    for _ in range(20):
        g.failed("m", 0.0)
    assert g.refusal("m", 29.9) is not None
    assert g.refusal("m", 30.0) is None


def test_guard_a_model_that_ran_long_enough_starts_a_new_count() -> None:
    g = CrashGuard(stable_s=60)
    g.failed("m", 0.0)
    g.failed("m", 0.0)
    g.ready("m", 10.0)
    g.failed("m", 20.0)  # died after 10 s: still the same crash loop
    assert g.failures("m") == 3
    g.ready("m", 30.0)
    g.failed("m", 100.0)  # ran 70 s: a new story
    assert g.failures("m") == 1
    assert g.refusal("m", 100.0) is None


class Rig:
    def __init__(self, serial: bool = False) -> None:
        self.fx = FakeEffects()
        self.clock = FakeClock()
        kind = SerialScheduler if serial else FifoScheduler
        self.sched = kind(self.fx, OneModelPlanner(), {"a": ModelRules()}, now=self.clock)
        self.n = 0

    def request(self) -> int:
        self.n += 1
        self.sched.on_request(RequestArrived(req_id=self.n, model="a"))
        return self.n

    def fail_start(self) -> None:
        self.sched.on_swap_finished(SwapFinished(model="a", error="exit 1: bad flag"))


def test_scheduler_backs_off_a_crash_looping_model_and_holds_it() -> None:
    for serial in (False, True):
        rig = Rig(serial)
        rig.request()
        rig.fail_start()  # 1st failure
        rig.request()
        assert len(rig.fx.swaps) == 2, "the first failure costs nothing"
        rig.fail_start()  # 2nd: wait 1 s
        early = rig.request()
        assert rig.fx.rejected[early].kind == RejectKind.START_FAILED
        assert "next attempt may start in 1.0 s" in rig.fx.rejected[early].message
        assert "last failure: exit 1: bad flag" in rig.fx.rejected[early].message
        assert len(rig.fx.swaps) == 2
        rig.clock.advance(1.0)
        rig.request()
        assert len(rig.fx.swaps) == 3
        for wait in (2.0, 4.0, 0.0):
            rig.fail_start()
            rig.clock.advance(wait)
            rig.request()
        held = rig.request()
        assert "held until an operator resets it" in rig.fx.rejected[held].message
        assert rig.sched.snapshot()["a"].state == ModelState.FAILED
        rig.sched.on_reset(ResetRequested(model="a"))
        rig.request()
        assert rig.fx.swaps[-1][0] == "a"


def test_scheduler_counts_a_ready_child_dying_as_a_failure() -> None:
    rig = Rig()
    first = rig.request()
    rig.sched.on_swap_finished(SwapFinished(model="a", generation=1))
    assert first in rig.fx.granted
    rig.sched.on_process_exited(ProcessExited(model="a", generation=1, detail="killed"))
    rig.request()  # restarts at once
    rig.fail_start()
    early = rig.request()
    assert "failed 2 times in a row" in rig.fx.rejected[early].message
