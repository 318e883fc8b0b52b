"""The router's view of a model's process, and how the router makes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from swapd.config.model import Config, ModelSpec
from swapd.core.state import ModelState
from swapd.obs.hub import Observer
from swapd.process.supervisor import ModelProcess


class ModelProcessLike(Protocol):
    """What the router needs from a model's process (swapd.process.supervisor.ModelProcess)."""

    @property
    def state(self) -> ModelState: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self, gpus: tuple[int, ...] | None = None) -> int: ...

    async def stop(self, timeout_s: float | None = None) -> None: ...

    async def confirm_exit(self, timeout_s: float = 1.0) -> bool: ...

    def output(self, lines: int | None = None) -> list[str]: ...

    async def close(self) -> None: ...


ProcessFactory = Callable[[ModelSpec, float, Callable[[int, str], None]], ModelProcessLike]


def make_process_factory(config: Config, obs: Observer | None) -> ProcessFactory:
    # Children's output goes straight to the log hub (/logs, the UI), not through logging.
    sink = obs.logs.model_line if obs is not None else None

    def make(
        spec: ModelSpec, start_timeout_s: float, on_exit: Callable[[int, str], None]
    ) -> ModelProcessLike:
        return ModelProcess(
            spec,
            start_timeout_s=start_timeout_s,
            on_unexpected_exit=on_exit,
            on_output=sink,
            liveness_interval_s=config.liveness_interval_s,
            liveness_timeout_s=config.liveness_timeout_s,
        )

    return make
