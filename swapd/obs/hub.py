"""The one place every observation goes: metrics, the activity log, the logs, the event bus.

The router, the GPU coordinator and the web layer call these hooks; they are synchronous,
cheap and never raise into their caller's path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from swapd.core.state import ModelSnapshot, ModelState
from swapd.obs.activity import ActivityLog, RequestRecord
from swapd.obs.bus import EventBus
from swapd.obs.logs import LogHub
from swapd.obs.metrics import Metrics

log = logging.getLogger(__name__)


class Observer:
    def __init__(self, models: tuple[str, ...], *, activity_capacity: int = 500) -> None:
        self.bus = EventBus()
        self.activity = ActivityLog(activity_capacity)
        self.metrics = Metrics(models)
        self.logs = LogHub(self.bus)
        """Installed on the root logger by app.serve(); until then it only holds what it is fed."""
        # Every model starts stopped and idle, as /api/events' snapshot says: the first routing
        # event publishes what changed, not every model's initial state.
        idle = (ModelState.STOPPED.value, 0, 0, None)
        self._last: dict[str, tuple[str, int, int, str | None]] = dict.fromkeys(models, idle)

    # -- router ------------------------------------------------------------------------------

    def models_changed(self, snapshot: Mapping[str, ModelSnapshot]) -> None:
        """After every routing event; publishes only what changed."""
        for name, snap in snapshot.items():
            key = (snap.state.value, snap.in_flight, snap.queued, snap.reason)
            if self._last.get(name) == key:
                continue
            before = self._last.get(name)
            self._last[name] = key
            if before is None or before[0] != key[0] or before[3] != key[3]:
                self.bus.publish("model", {"model": name, "state": key[0], "reason": snap.reason})
            if self.bus.wants("queue"):  # changes twice per request: only for listeners
                self.bus.publish(
                    "queue", {"model": name, "in_flight": snap.in_flight, "queued": snap.queued}
                )
        self.metrics.models_changed(snapshot)

    def swap_started(self, model: str, evict: tuple[str, ...], detail: str) -> None:
        self.bus.publish(
            "swap", {"model": model, "phase": "start", "evict": list(evict), "detail": detail}
        )

    def swap_finished(
        self,
        model: str,
        evict: tuple[str, ...],
        *,
        evict_s: float,
        ready_s: float,
        error: str | None,
    ) -> None:
        total = evict_s + ready_s
        self.metrics.swap_finished(
            model, ok=error is None, evict_s=evict_s, ready_s=ready_s, total_s=total
        )
        self.bus.publish(
            "swap",
            {
                "model": model,
                "phase": "done" if error is None else "failed",
                "evict": list(evict),
                "evict_s": evict_s,
                "ready_s": ready_s,
                "total_s": total,
                "error": error,
            },
        )

    def child_exited(self, model: str, detail: str) -> None:
        self.metrics.child_exited(model)
        self.bus.publish("model", {"model": model, "state": "exited", "reason": detail})

    # -- gpu -----------------------------------------------------------------------------------

    def gpu_sampled(self, view: Mapping[str, Any]) -> None:
        """`view` is GpuCoordinator.gpus_view()."""
        gpus = list(view.get("gpus", ()))
        self.metrics.gpu_sampled(gpus)
        self.bus.publish("gpu", dict(view))

    # -- web -----------------------------------------------------------------------------------

    def request_finished(self, record: RequestRecord) -> None:
        self.activity.add(record)
        self.metrics.request_finished(record)
        if self.bus.wants("activity"):  # one per request: only for listeners
            self.bus.publish("activity", record.as_json())
