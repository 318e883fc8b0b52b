"""The scheduler's entire window onto the world.

Every method is synchronous and must not block: it schedules work, resolves a future or posts
to the inbox. None of them calls back into the scheduler; results return as events.
"""

from __future__ import annotations

from typing import Protocol

from swapd.core.state import Rejection


class Effects(Protocol):
    def start_swap(self, model: str, evict: tuple[str, ...]) -> None:
        """Stop every model in `evict` (waiting for them), then start `model`.

        Exactly one SwapFinished(model) follows, unless the swap is cancelled by stop_models
        naming `model`, in which case its SwapFinished may or may not come and is ignored.
        """

    def stop_models(self, models: tuple[str, ...], ticket: int | None) -> None:
        """Stop these models (cancelling a swap that is starting one of them).

        Exactly one StopFinished(models, ticket) follows, once all of them have stopped.
        """

    def grant(self, req_id: int, model: str) -> bool:
        """Hand the ready model to the request's handler.

        False means the handler is gone (its client left): the request is not in flight and
        no further event about it will matter.
        """

    def reject(self, req_id: int, rejection: Rejection) -> None:
        """Answer the request with an error. The request is finished as far as the core cares."""

    def unload_done(self, ticket: int) -> None:
        """The unload identified by `ticket` has completed."""
