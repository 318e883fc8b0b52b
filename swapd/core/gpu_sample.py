"""What one look at the GPUs saw: the value the GPU monitor produces and the VRAM planner reads.

Plain data, stdlib only. Memory is in bytes; GPU indices are NVML's (PCI bus order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    total: int
    used: int
    """Memory in use (NVML v2 `used`: excludes what the driver reserves for itself)."""
    free: int
    utilization: int | None = None
    """Percent of time a kernel ran over the last sample period; None when not supported."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuProcess:
    gpu: int
    pid: int
    used: int | None
    """Bytes; None when the driver does not say (e.g. in some containers)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSample:
    gpus: tuple[GpuInfo, ...]
    processes: tuple[GpuProcess, ...] = ()
    model_usage: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    """Model id -> GPU index -> bytes used by the model's child and its descendants.

    A model appears only if at least one of its processes was listed with a known size."""
    taken_at: float = 0.0
    """The monitor's clock (monotonic seconds) when the sample was taken."""

    def gpu(self, index: int) -> GpuInfo | None:
        for info in self.gpus:
            if info.index == index:
                return info
        return None
