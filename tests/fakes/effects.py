"""A recording Effects implementation and a manual clock for the pure core tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from swapd.core.state import Rejection


@dataclass
class FakeClock:
    t: float = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class FakeEffects:
    swaps: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    stops: list[tuple[tuple[str, ...], int | None]] = field(default_factory=list)
    granted: list[int] = field(default_factory=list)
    rejected: dict[int, Rejection] = field(default_factory=dict)
    unloads_done: list[int] = field(default_factory=list)
    gone: set[int] = field(default_factory=set)
    """Request ids whose client has left: grant() returns False for them."""

    def start_swap(self, model: str, evict: tuple[str, ...]) -> None:
        self.swaps.append((model, evict))

    def stop_models(self, models: tuple[str, ...], ticket: int | None) -> None:
        self.stops.append((models, ticket))

    def grant(self, req_id: int, model: str) -> bool:
        if req_id in self.gone:
            return False
        self.granted.append(req_id)
        return True

    def reject(self, req_id: int, rejection: Rejection) -> None:
        assert req_id not in self.rejected, f"request {req_id} answered twice"
        self.rejected[req_id] = rejection

    def unload_done(self, ticket: int) -> None:
        self.unloads_done.append(ticket)
