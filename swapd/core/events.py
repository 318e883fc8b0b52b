"""Every event the router's owner loop consumes: facts, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass

from swapd.core.gpu_sample import GpuSample


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestArrived:
    req_id: int
    model: str
    """A configured model id (aliases are resolved before the core sees a request)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReleased:
    """The handler is done with the request, whatever happened: served, cancelled or failed.

    Exactly one follows every RequestArrived. If the request was granted it stops counting as
    in flight; if it was still waiting it leaves the queue; otherwise nothing happens.
    """

    req_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SwapFinished:
    model: str
    generation: int = 0
    """The process generation that became ready (matches ProcessExited.generation)."""
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessExited:
    """A ready child exited without being asked to stop."""

    model: str
    generation: int
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UnloadRequested:
    models: tuple[str, ...] | None
    """None means every model."""
    ticket: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetRequested:
    """An operator clears a model's failure count (it may be started again at once)."""

    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopFinished:
    models: tuple[str, ...]
    ticket: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """A deadline the core asked for (`Scheduler.next_deadline`) has passed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSampled:
    """The GPU monitor looked at the GPUs (memory, and which model's processes hold it)."""

    sample: GpuSample


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownRequested:
    pass


Event = (
    RequestArrived
    | RequestReleased
    | SwapFinished
    | ProcessExited
    | UnloadRequested
    | ResetRequested
    | StopFinished
    | Tick
    | GpuSampled
    | ShutdownRequested
)
