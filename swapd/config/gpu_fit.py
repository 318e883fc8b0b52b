"""Config problems that only the host's GPUs reveal, checked at startup once NVML has answered.

A model's `gpus` may name a GPU this host lacks, and its `vram` may be more than its GPUs can
ever hold, whatever is evicted. Problems read like the loader's (`<key path>: <message>`),
without line numbers, which a loaded `Config` no longer knows.
"""

from __future__ import annotations

from collections.abc import Sequence

from swapd.config.gpu_keys import CUDA_VISIBLE_DEVICES, indices_from_env
from swapd.config.model import Config, ModelSpec
from swapd.config.problems import Finding, KeyPath
from swapd.config.sizes import GIB, fmt_bytes
from swapd.core.gpu_sample import GpuInfo

__all__ = ["fmt_bytes", "gpu_problems"]


def gpu_problems(config: Config, gpus: Sequence[GpuInfo]) -> list[str]:
    """Every model whose `gpus` or `vram` cannot work on these GPUs, in model order.

    A model without `gpus` sees every GPU and is split across all of them; one with `gpus`
    and `gpuSplit` false must fit on one of them, with `vramHeadroom` left free."""
    by_index = {gpu.index: gpu for gpu in gpus}
    findings: list[Finding] = []
    for model in config.models.values():
        path: KeyPath = ("models", model.id)
        missing = [i for i in model.gpus or () if i not in by_index]
        if missing:
            findings.append(_missing(model, path, missing, gpus))
        elif model.vram_bytes is not None and gpus:
            allowed = [by_index[i] for i in model.gpus] if model.gpus is not None else list(gpus)
            message = _too_big(model, model.vram_bytes, allowed, config.gpu.headroom_bytes)
            if message is not None:
                findings.append(Finding((*path, "vram"), message))
    return [str(finding) for finding in findings]


def _too_big(model: ModelSpec, need: int, allowed: list[GpuInfo], headroom: int) -> str | None:
    plus = f"+ {_gib(headroom)} headroom"
    if model.gpus is not None and not model.gpu_split:
        largest = max(allowed, key=lambda g: (g.total, -g.index))
        if need + headroom <= largest.total:
            return None
        which = "its largest GPU" if len(allowed) > 1 else "its GPU"
        return (
            f"needs {_gib(need)} {plus}, but {which} ({_name(largest)}) has {_gib(largest.total)}"
        )
    share = need // len(allowed)  # as the planner divides it
    smallest = min(allowed, key=lambda g: (g.total, g.index))
    if share + headroom <= smallest.total:
        return None
    has = f"({_name(smallest)}) has {_gib(smallest.total)}"
    if len(allowed) == 1:
        return f"needs {_gib(need)} {plus}, but its GPU {has}"
    over = "all " if model.gpus is None else ""
    return (
        f"needs {_gib(need)} split over {over}{len(allowed)} GPUs ({_gib(share)} each) {plus}, "
        f"but its smallest GPU {has}"
    )


def _missing(
    model: ModelSpec, path: KeyPath, missing: list[int], gpus: Sequence[GpuInfo]
) -> Finding:
    listed = ("GPUs " if len(missing) > 1 else "GPU ") + ", ".join(map(str, missing))
    verb = "do" if len(missing) > 1 else "does"
    # gpus taken from env CUDA_VISIBLE_DEVICES: point there, not at a key the file lacks.
    if model.gpus == indices_from_env(model.env):
        return Finding(
            (*path, "env"),
            f"{CUDA_VISIBLE_DEVICES} names {listed}, which {verb} not exist; {_host(gpus)}",
        )
    return Finding((*path, "gpus"), f"{listed} {verb} not exist; {_host(gpus)}")


def _host(gpus: Sequence[GpuInfo]) -> str:
    if not gpus:
        return "this host has no GPUs"
    ordered = sorted(gpus, key=lambda g: g.index)
    indices = _ranges([g.index for g in ordered])
    names = [g.name for g in ordered]
    if len(ordered) == 1:
        return f"this host has GPU {indices} ({names[0]})"
    if len(set(names)) == 1:
        return f"this host has GPUs {indices} ({len(names)} × {names[0]})"
    return f"this host has GPUs {indices} ({', '.join(_name(g) for g in ordered)})"


def _ranges(indices: list[int]) -> str:
    """`[0, 1, 2, 5]` -> `0-2, 5`."""
    parts: list[str] = []
    start = previous = indices[0]
    for index in [*indices[1:], None]:
        if index is not None and index == previous + 1:
            previous = index
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if index is not None:
            start = previous = index
    return ", ".join(parts)


def _name(gpu: GpuInfo) -> str:
    return f"{gpu.index}: {gpu.name}"


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
