"""What the HTTP layer needs from the router (implemented by swapd.router.loop.Router)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from swapd.core.state import Lease, ModelSnapshot

__all__ = ["Lease", "RouterPort"]


class RouterPort(Protocol):
    async def acquire(self, model: str) -> Lease:
        """Wait until `model` (a configured id) is ready for this request, starting it if needed.

        Raises a swapd.errors.SwapdHttpError (404 unknown, 429 over the concurrency limit, 503
        failed to start / unloaded / shutting down). If the caller is cancelled while waiting,
        the request is withdrawn; nothing else is owed.
        """
        ...

    def release(self, lease: Lease) -> None:
        """The response is finished (or the client left). Call exactly once per lease."""

    async def unload(self, models: tuple[str, ...] | None) -> None:
        """Stop these models (None: all) and return when they have stopped."""

    def snapshot(self) -> Mapping[str, ModelSnapshot]:
        """Advisory view of every configured model, for listings. Never gate a decision on it."""
        ...

    def recent_output(self, model: str, lines: int = 20) -> list[str]:
        """The last lines the model's child printed (stdout and stderr interleaved)."""
        ...
