"""Scheduler: decides, for every event, which requests run, wait, or fail. Pure and synchronous.

A scheduler owns the routing state (model states, queue, in-flight counts) and acts only through
`Effects`. It never awaits, never reads the clock except through the injected `now`, and never
blocks. The router's owner task is its only caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from swapd.core.events import (
    ProcessExited,
    RequestArrived,
    RequestReleased,
    ResetRequested,
    StopFinished,
    SwapFinished,
    UnloadRequested,
)
from swapd.core.state import ModelSnapshot


class Scheduler(Protocol):
    def on_request(self, ev: RequestArrived) -> None:
        """Admit (or reject) the request, then grant it, join it to a swap, queue it or swap."""

    def on_release(self, ev: RequestReleased) -> None:
        """The handler is done with the request; idempotent for unknown or finished requests."""

    def on_swap_finished(self, ev: SwapFinished) -> None:
        """Grant (or fail) the swap's waiters, then re-plan the queue. Stale swaps are ignored."""

    def on_process_exited(self, ev: ProcessExited) -> None:
        """A ready child died on its own: the model no longer counts as running."""

    def on_unload(self, ev: UnloadRequested) -> None:
        """Fail waiters of the named models and stop them; Effects.unload_done(ticket) follows."""

    def on_reset(self, ev: ResetRequested) -> None:
        """Forget the model's failures: the next request may start it at once."""

    def on_stop_finished(self, ev: StopFinished) -> None:
        """Models asked to stop have stopped."""

    def on_tick(self) -> None:
        """Time has passed a deadline from next_deadline(): unload idle models past their TTL."""

    def on_shutdown(self) -> None:
        """Fail every waiting request and refuse new ones. Stopping processes is the shell's job."""

    def next_deadline(self) -> float | None:
        """The earliest `now()` value at which on_tick has work to do, or None."""

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        """A copy of the per-model state, for listings and metrics."""
