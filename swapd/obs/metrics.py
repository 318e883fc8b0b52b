"""Prometheus metrics. Placeholder interface: every method is a no-op until implemented."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from swapd.core.state import ModelSnapshot
from swapd.obs.activity import RequestRecord


class Metrics:
    def __init__(self, models: Iterable[str]) -> None:
        self.models = tuple(models)

    def request_finished(self, record: RequestRecord) -> None:
        pass

    def models_changed(self, snapshot: Mapping[str, ModelSnapshot]) -> None:
        pass

    def queue_wait(self, model: str, seconds: float) -> None:
        pass

    def swap_finished(
        self, model: str, *, ok: bool, evict_s: float, ready_s: float, total_s: float
    ) -> None:
        pass

    def child_exited(self, model: str) -> None:
        pass

    def gpu_sampled(self, gpus: list[dict[str, object]]) -> None:
        pass

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return b"", "text/plain; version=0.0.4; charset=utf-8"
