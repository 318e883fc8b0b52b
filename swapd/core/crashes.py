"""Crash-loop protection: a model that keeps failing is retried later and later, then held.

The first failure (a start that fails, or a ready child that dies) costs nothing: the next
request starts the model again at once. Each further failure in a row doubles the wait before
the next attempt (1 s, 2 s, 4 s ... at most BACKOFF_MAX_S); requests that arrive meanwhile get
a 503 saying when the next attempt may happen. After MAX_FAILURES in a row the model is held:
every request gets a 503 until an operator resets it (POST /api/models/reset/<model>). A model
that stayed ready for STABLE_S before it died starts a new count.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FAILURES = 5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0


@dataclass(slots=True)
class _Record:
    failures: int = 0
    retry_at: float = 0.0
    ready_since: float | None = None


class CrashGuard:
    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        backoff_max_s: float = BACKOFF_MAX_S,
        stable_s: float = STABLE_S,
    ) -> None:
        self._max = max_failures
        self._backoff_max = backoff_max_s
        self._stable = stable_s
        self._records: dict[str, _Record] = {}

    def ready(self, model: str, now: float) -> None:
        self._records.setdefault(model, _Record()).ready_since = now

    def failed(self, model: str, now: float) -> None:
        """A start failed, or the ready child died."""
        rec = self._records.setdefault(model, _Record())
        if rec.ready_since is not None and now - rec.ready_since >= self._stable:
            rec.failures = 0  # it ran fine for a good while: this is a new story
        rec.ready_since = None
        rec.failures += 1
        delay = 0.0 if rec.failures == 1 else min(2.0 ** (rec.failures - 2), self._backoff_max)
        rec.retry_at = now + delay

    def reset(self, model: str) -> None:
        self._records.pop(model, None)

    def failures(self, model: str) -> int:
        rec = self._records.get(model)
        return rec.failures if rec is not None else 0

    def refusal(self, model: str, now: float) -> str | None:
        """Why a request for `model` must not start it now; None when it may."""
        rec = self._records.get(model)
        if rec is None or rec.failures == 0:
            return None
        if rec.failures >= self._max:
            return (
                f"model '{model}' failed {rec.failures} times in a row and is held until an "
                f"operator resets it (POST /api/models/reset/{model})"
            )
        if now < rec.retry_at:
            return (
                f"model '{model}' failed {rec.failures} times in a row; the next attempt may "
                f"start in {rec.retry_at - now:.1f} s"
            )
        return None
