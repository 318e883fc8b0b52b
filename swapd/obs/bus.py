"""An in-memory publish/subscribe bus for what the operator UI and /api/events show.

Publishing never blocks and never fails: each subscriber has a bounded queue, and a subscriber
that falls that far behind is cut off (its stream ends; the client reconnects) rather than
letting memory grow or slowing the router down.

Everything here runs on the event loop's thread: asyncio queues are not thread-safe, so a
publisher on another thread hands its notice over with `loop.call_soon_threadsafe` (see
swapd.obs.logs).
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
    """One subscriber's bounded queue. Iterate it, or call `get`/`batch`; both end (None / an
    empty list) when the bus closes, the subscriber unsubscribes, or it was cut off (`lost`)."""

    def __init__(self, bus: EventBus, kinds: frozenset[str] | None, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"subscription queue size must be at least 1, got {maxsize}")
        self._bus = bus
        self.kinds = kinds
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue(maxsize)
        self._closed = False
        """No more notices will be queued (the end marker is in the queue or was taken)."""
        self._ended = False
        """The end marker was taken: every later get() returns None at once."""
        self.lost = False
        """Set when the subscriber fell too far behind and was cut off."""

    def offer(self, notice: Notice) -> None:
        if self._closed or (self.kinds is not None and notice.kind not in self.kinds):
            return
        try:
            self._queue.put_nowait(notice)
        except asyncio.QueueFull:
            self.lost = True
            self._end()

    def close(self) -> None:
        """Unsubscribe; what is already queued is still delivered, then the stream ends."""
        self._end()

    def _end(self) -> None:
        self._bus.unsubscribe(self)
        if self._closed:
            return
        self._closed = True
        if self._queue.full():
            self._queue.get_nowait()  # make room for the end-of-stream marker
        self._queue.put_nowait(None)

    async def get(self) -> Notice | None:
        """The next notice, or None once the stream has ended. Safe to cancel."""
        if self._ended:
            return None
        notice = await self._queue.get()
        if notice is None:
            self._ended = True
        return notice

    async def batch(self, limit: int = 256) -> list[Notice]:
        """Wait for at least one notice, then take up to `limit` that are already queued.

        An empty list means the stream has ended. Safe to cancel (nothing is taken until the
        first notice arrives, and nothing is awaited after that).
        """
        first = await self.get()
        if first is None:
            return []
        notices = [first]
        while len(notices) < limit and not self._queue.empty():
            notice = self._queue.get_nowait()
            if notice is None:
                self._ended = True
                break
            notices.append(notice)
        return notices

    async def __aiter__(self) -> AsyncIterator[Notice]:
        while (notice := await self.get()) is not None:
            yield notice


class EventBus:
    def __init__(self, backlog: int = 200) -> None:
        self._subscribers: set[Subscription] = set()
        self._backlog = backlog
        # One backlog per kind, so a chatty kind (log lines, GPU samples) cannot push the rare
        # ones (model state changes) out of recent().
        self._recent: dict[str, deque[Notice]] = {}
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._closed = False

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        seq = next(self._seq)
        self._last_seq = seq
        notice = Notice(seq, kind, time.time(), data)
        recent = self._recent.get(kind)
        if recent is None:
            recent = self._recent[kind] = deque(maxlen=self._backlog)
        recent.append(notice)
        for sub in list(self._subscribers):
            sub.offer(notice)

    def wants(self, kind: str) -> bool:
        """Whether any subscriber takes `kind`: lets a costly publisher skip its work."""
        return any(sub.kinds is None or kind in sub.kinds for sub in self._subscribers)

    def recent(self, kinds: Collection[str] | None = None) -> list[Notice]:
        """The last `backlog` notices of each kind, oldest first."""
        found = [
            n
            for kind, notices in self._recent.items()
            if kinds is None or kind in kinds
            for n in notices
        ]
        found.sort(key=lambda n: n.seq)
        return found

    def subscribe(self, kinds: Collection[str] | None = None, maxsize: int = 1000) -> Subscription:
        """A new subscriber for notices published from now on. After close() the subscription
        comes back already ended, so a stream opened during shutdown ends at once."""
        sub = Subscription(self, frozenset(kinds) if kinds is not None else None, maxsize)
        if self._closed:
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def close(self) -> None:
        """End every subscriber's stream, and every later one's (shutdown)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def last_seq(self) -> int:
        """The seq of the last notice published (0 before the first)."""
        return self._last_seq

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
