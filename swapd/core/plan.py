"""Planner: which running models must go so that a target can start. Pure; never logs."""

from __future__ import annotations

from collections.abc import Set
from typing import Protocol


class ModelUsage(Protocol):
    """What the scheduler knows about each model's load, for planners that weigh it."""

    def in_flight(self, model: str) -> int: ...

    def last_used(self, model: str) -> float:
        """When its last request finished (or it became ready), on the scheduler's clock."""
        ...

    def is_running(self, model: str) -> bool:
        """Its child is starting or ready."""
        ...


class Planner(Protocol):
    def evictions(
        self, target: str, running: Set[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        """Models of `running` to stop before `target` starts, sorted. Pure; called often.

        `running` holds every model that is not stopped (starting, ready, stopping) plus the
        targets of swaps in progress; it never contains `target`. May raise
        swapd.core.vram.DoesNotFit when the target cannot run at all.
        """

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        """Called once per real swap; the only place a planner may log its decision."""


class OneModelPlanner:
    """The default: one model at a time (llama-swap's implicit default group)."""

    def evictions(
        self, target: str, running: Set[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        return tuple(sorted(m for m in running if m != target))

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        pass
