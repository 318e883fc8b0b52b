"""What the HTTP layer needs from the router (implemented by swapd.router.loop.Router)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from swapd.core.state import Lease, ModelSnapshot

__all__ = ["GpuViewPort", "Lease", "RouterPort"]


class GpuViewPort(Protocol):
    """GPU placement and VRAM, JSON-ready (implemented by swapd.router.gpus.GpuCoordinator)."""

    def model_view(self, model: str) -> dict[str, Any]:
        """{"gpus": [...] | None, "vram": {"bytes", "source"}?, "vram_measured": {...}?}"""
        ...

    def gpus_view(self, running: frozenset[str]) -> dict[str, Any]:
        """Each GPU's memory and which of the `running` models hold it."""
        ...


class RouterPort(Protocol):
    async def acquire(self, model: str) -> Lease:
        """Wait until `model` (a configured id) is ready for this request, starting it if needed.

        Raises a swapd.errors.SwapdHttpError (404 unknown, 429 over the concurrency limit, 503
        failed to start / unloaded / shutting down). If the caller is cancelled while waiting,
        the request is withdrawn; nothing else is owed.
        """
        ...

    async def lost_child(self, lease: Lease) -> bool:
        """The model's server answered nothing. True when its process has died (and routing
        now knows it, so acquiring again restarts the model); False when it is alive."""
        ...

    def release(self, lease: Lease) -> None:
        """The response is finished (or the client left). Call exactly once per lease."""

    async def unload(self, models: tuple[str, ...] | None) -> None:
        """Stop these models (None: all) and return when they have stopped."""

    def reset(self, model: str) -> None:
        """Forget a held or backing-off model's failures, so the next request starts it."""

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        """Advisory view of every configured model, for listings. Never gate a decision on it."""
        ...

    def gpu_view(self) -> GpuViewPort | None:
        """None when swapd runs without a GPU coordinator (tests)."""
        ...

    def recent_output(self, model: str, lines: int = 20) -> list[str]:
        """The last lines the model's child printed (stdout and stderr interleaved)."""
        ...
