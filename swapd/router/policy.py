"""Builds the configured scheduler and planner, and describes a planner's swap decisions."""

from __future__ import annotations

from collections.abc import Callable

from swapd.config.model import Config
from swapd.core.effects import Effects
from swapd.core.fifo import FifoScheduler
from swapd.core.groups import GroupPlanner
from swapd.core.matrix import MatrixPlanner
from swapd.core.plan import Planner
from swapd.core.scheduler import Scheduler
from swapd.core.serial import SerialScheduler
from swapd.core.state import ModelRules
from swapd.core.vram import VramPlanner


def make_planner(config: Config) -> Planner:
    routing = config.routing
    if routing.planner == "matrix" and routing.matrix is not None:
        return MatrixPlanner(routing.matrix)
    return GroupPlanner(routing.groups, config.models, symmetric=routing.symmetric_exclusive)


def evict_costs(config: Config) -> dict[str, float]:
    """What evicting each model costs: the matrix's evict_costs, else 1 each."""
    matrix = config.routing.matrix
    return {mid: float(matrix.cost(mid)) if matrix is not None else 1.0 for mid in config.models}


def make_scheduler(
    config: Config, effects: Effects, planner: Planner, now: Callable[[], float]
) -> Scheduler:
    rules = {
        mid: ModelRules(concurrency_limit=spec.concurrency_limit, ttl_s=spec.ttl_s)
        for mid, spec in config.models.items()
    }
    routing = config.routing
    kind = SerialScheduler if routing.scheduler == "serial" else FifoScheduler
    return kind(
        effects,
        planner,
        rules,
        now=now,
        max_wait_s=routing.max_wait_s,
        priority=routing.priority,
    )


def describe_swap(config: Config, planner: Planner) -> str:
    """Why the planner chose the swap it was just told about (empty when there is no more to
    say than the evicted list)."""
    matrix = config.routing.matrix
    if isinstance(planner, VramPlanner):
        planner = planner.inner
    if not isinstance(planner, MatrixPlanner) or matrix is None:
        return ""
    decision = planner.last_decision()
    if decision is None:
        return ""
    if decision.set_name is None:
        return "matrix: in no set, runs alone"
    dsl = matrix.dsl(decision.set_name)
    return (
        f"matrix: set={decision.set_name} dsl={dsl!r} "
        f"target={','.join(sorted(decision.combination))} cost={decision.cost}"
    )
