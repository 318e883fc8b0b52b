"""An in-memory publish/subscribe bus for what the operator UI and /api/events show.

Publishing never blocks and never fails: each subscriber has a bounded queue, and a subscriber
that falls that far behind is cut off (its stream ends; the client reconnects) rather than
letting memory grow or slowing the router down.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any

KINDS = frozenset({"model", "queue", "swap", "activity", "gpu", "log"})


@dataclass(frozen=True, slots=True)
class Notice:
    seq: int
    kind: str
    at: float
    """Unix time."""
    data: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "at": self.at, "data": dict(self.data)}


class Subscription:
    def __init__(self, bus: EventBus, kinds: frozenset[str] | None, maxsize: int) -> None:
        self._bus = bus
        self.kinds = kinds
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue(maxsize)
        self.lost = False
        """Set when the subscriber fell too far behind and was cut off."""

    def offer(self, notice: Notice) -> None:
        if self.kinds is not None and notice.kind not in self.kinds:
            return
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self.lost = True
            self._bus.unsubscribe(self)
            self._queue.get_nowait()  # make room for the end-of-stream marker
            self._queue.put_nowait(None)

    def close(self) -> None:
        self._bus.unsubscribe(self)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Notice]:
        while (notice := await self._queue.get()) is not None:
            yield notice


class EventBus:
    def __init__(self, backlog: int = 200) -> None:
        self._subscribers: set[Subscription] = set()
        self._recent: deque[Notice] = deque(maxlen=backlog)
        self._seq = itertools.count(1)

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        notice = Notice(next(self._seq), kind, time.time(), data)
        self._recent.append(notice)
        for sub in list(self._subscribers):
            sub.offer(notice)

    def recent(self, kinds: Collection[str] | None = None) -> list[Notice]:
        return [n for n in self._recent if kinds is None or n.kind in kinds]

    def subscribe(self, kinds: Collection[str] | None = None, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, frozenset(kinds) if kinds is not None else None, maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscriber's stream (shutdown)."""
        for sub in list(self._subscribers):
            sub.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
