"""The bounded log of recent requests behind GET /api/activity and the UI's activity table."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    at: float
    """Unix time the request arrived."""
    model: str
    endpoint: str
    """The path without query, e.g. /v1/chat/completions, or /upstream/<model>/... as sent."""
    status: int
    streamed: bool
    queue_wait_s: float
    """Arrival until the model was granted (includes any load)."""
    ttfb_s: float | None
    """Arrival until the first response byte went to the client; None when none did."""
    total_s: float
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_per_s: float | None = None
    """Generation speed: llama.cpp's own figure when it gave one, else tokens_out over the time
    from the first byte to the end."""
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies each field, ~9 µs on every proxied request.
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(RequestRecord))


class ActivityLog:
    def __init__(self, capacity: int = 500) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=capacity)

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)

    def recent(self, limit: int | None = None, model: str | None = None) -> list[RequestRecord]:
        """Newest first."""
        found = [r for r in reversed(self._records) if model is None or r.model == model]
        return found if limit is None else found[:limit]
