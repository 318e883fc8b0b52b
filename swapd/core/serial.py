"""SerialScheduler: one request at a time, in strict arrival order, one model at a time.

For hosts where two models, or two requests, must never share the machine: A B C A runs as
A, B, C, A (reloading A), never collated. Switching to another model first stops every other
running model, whatever the planner (groups, matrix) would allow. Admission (404, 429),
TTL, unload, crash handling and shutdown are the FIFO scheduler's.
"""

from __future__ import annotations

from swapd.core.fifo import _RUNNING, FifoScheduler, _Waiting
from swapd.core.state import ModelState, Rejection, RejectKind
from swapd.core.vram import DoesNotFit


class SerialScheduler(FifoScheduler):
    def _place(self, w: _Waiting, *, held: frozenset[str]) -> bool:
        if self._granted or self._swaps or (self._queue and self._queue[0] is not w):
            return False  # something runs, or someone arrived earlier
        m = self._models[w.model]
        if m.state == ModelState.STOPPING:
            return False
        if self._refuse_failing(w):
            return True
        others = tuple(
            sorted(n for n, o in self._models.items() if o.state in _RUNNING and n != w.model)
        )
        if m.state == ModelState.READY and not others:
            self._grant(w)
            return True
        if any(self._models[n].state == ModelState.STOPPING for n in others):
            return False  # a stop in progress (TTL, unload) finishes first
        try:
            # Everything else goes anyway; this checks the target fits alone and places it.
            self._planner.evictions(w.model, frozenset(), self)
        except DoesNotFit as exc:
            m.reserved -= 1
            self._fx.reject(w.req_id, Rejection(RejectKind.NO_FIT, str(exc)))
            return True
        self._start_swap(w, others)
        return True

    def _drain(self) -> None:
        # Strict order: only the head may go; it leaves the queue before anything else is tried.
        while self._queue and self._place(self._queue[0], held=frozenset()):
            self._queue.pop(0)  # granted, swapping, or rejected: the next may go if nothing runs
