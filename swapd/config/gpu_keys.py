"""The GPU keys: a model's `vram`, `gpus` and `gpuSplit`, and the top-level VRAM settings.

A model without `gpus` whose `env` sets `CUDA_VISIBLE_DEVICES` to plain indices (llama-swap's
way of pinning a model) gets `gpus` from it, split across all of them, since the model sees
them all. Any other value (UUIDs, "") is left alone and the model keeps `gpus` unset. Setting
both is a problem: swapd sets `CUDA_VISIBLE_DEVICES` itself from `gpus`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from swapd.config import macros
from swapd.config.macros import GpusUse
from swapd.config.model import DEFAULT_VRAM_HEADROOM, GpuSettings
from swapd.config.problems import KeyPath, Report
from swapd.config.values import get_bool, get_float, get_size, get_str

CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
STATE_FILE_NAME = Path("swapd") / "vram.json"
_PLAIN_INDICES = re.compile(r"[0-9]+(?:,[0-9]+)*")
_INDICES_HINT = "expected GPU indices separated by commas, e.g. '0,1'"

Planning = Literal["auto", "on", "off"]


@dataclass(frozen=True, slots=True)
class ModelGpus:
    vram_bytes: int | None
    gpus: tuple[int, ...] | None
    split: bool
    macro: GpusUse
    """What `${GPUS}` means in this model's cmd and env."""


def model_gpus(
    report: Report, body: Mapping[str, Any], path: KeyPath, env: Mapping[str, str]
) -> ModelGpus:
    # 0 is how a CPU-only model says it needs no GPU memory.
    vram = get_size(report, body, path, "vram", positive=False)
    gpus = _gpus(report, body, path)
    has_split = "gpuSplit" in body and not report.is_bad((*path, "gpuSplit"))
    split = get_bool(report, body, path, "gpuSplit", default=False)
    from_env = indices_from_env(env)
    if "gpus" in body and CUDA_VISIBLE_DEVICES in env:
        report.problem(
            (*path, "env"),
            "sets CUDA_VISIBLE_DEVICES, and gpus is set: swapd sets CUDA_VISIBLE_DEVICES "
            "from gpus; remove one",
        )
    elif "gpus" not in body and from_env is not None:
        if has_split and not split:
            report.problem(
                (*path, "gpuSplit"),
                "false needs gpus: with CUDA_VISIBLE_DEVICES in env the model sees all of GPUs "
                f"{','.join(map(str, from_env))}; move them to gpus to place it on one of them",
            )
        gpus, split = from_env, True
    elif "gpus" not in body and has_split:
        report.warn(
            (*path, "gpuSplit"),
            "has no effect without gpus: a model without gpus sees every GPU and llama.cpp "
            "splits it across them",
        )
    # A broken gpus is reported already; do not add "has no gpus" to every ${GPUS} too.
    usable = gpus is not None or "gpus" in body
    return ModelGpus(
        vram_bytes=vram, gpus=gpus, split=split, macro="allowed" if usable else "no-gpus"
    )


def indices_from_env(env: Mapping[str, str]) -> tuple[int, ...] | None:
    """The GPUs `CUDA_VISIBLE_DEVICES` in `env` names, if it is a plain list of indices."""
    value = env.get(CUDA_VISIBLE_DEVICES)
    if value is None or not _PLAIN_INDICES.fullmatch(value):
        return None
    # CUDA ignores a repeated index; so does the derived list.
    return tuple(dict.fromkeys(int(part) for part in value.split(",")))


def _gpus(report: Report, body: Mapping[str, Any], path: KeyPath) -> tuple[int, ...] | None:
    """`gpus` as written: an index, a list of indices or a string "0,1"; None if unusable."""
    where = (*path, "gpus")
    if "gpus" not in body or report.is_bad(where):
        return None
    value = body["gpus"]
    items: list[tuple[KeyPath, Any]]
    if isinstance(value, list):
        items = [((*where, index), item) for index, item in enumerate(value)]
    elif isinstance(value, str) and not macros.MACRO_REF.search(value):
        parts = [part.strip() for part in value.split(",")]
        if not all(part.isascii() and part.isdigit() for part in parts):
            report.problem(where, f"{_INDICES_HINT}, got {value!r}")
            return None
        items = [(where, int(part)) for part in parts]
    else:
        items = [(where, value)]
    indices: list[int] = []
    ok = True
    for at, item in items:
        if report.is_bad(at):
            ok = False
        elif isinstance(item, bool) or not isinstance(item, int):
            ok = False
            if isinstance(item, str) and macros.MACRO_REF.search(item):
                macros.report_unresolved(report, at, item, [])
            else:
                report.problem(at, f"expected a GPU index, got {item!r} after macro expansion")
        elif item < 0:
            ok = False
            report.problem(at, f"must be at least 0, got {item}")
        elif item in indices:
            ok = False
            report.problem(at, f"GPU {item} is listed twice")
        else:
            indices.append(item)
    return tuple(indices) if ok and indices else None


def gpu_settings(
    report: Report,
    top: Mapping[str, Any],
    known: list[str],
    source: Path | None,
    environ: Mapping[str, str],
) -> GpuSettings:
    """The top-level keys; `known` are the global macro names, for did-you-mean."""
    raw_planning = top.get("vramPlanning", "auto")
    planning: Planning = "auto"
    if not report.is_bad(("vramPlanning",)):
        if raw_planning is True or raw_planning == "on":
            planning = "on"
        elif raw_planning is False or raw_planning == "off":
            planning = "off"
    headroom = get_size(report, top, (), "vramHeadroom", positive=False)
    return GpuSettings(
        planning=planning,
        headroom_bytes=DEFAULT_VRAM_HEADROOM if headroom is None else headroom,
        state_file=_state_file(report, top, known, source, environ),
        poll_interval_s=get_float(report, top, (), "gpuPollInterval", default=1.0, minimum=0.1),
        release_timeout_s=get_float(report, top, (), "vramReleaseTimeout", default=10.0, minimum=0),
    )


def _state_file(
    report: Report,
    top: Mapping[str, Any],
    known: list[str],
    source: Path | None,
    environ: Mapping[str, str],
) -> Path | None:
    where: KeyPath = ("vramStateFile",)
    if "vramStateFile" not in top or report.is_bad(where):
        return default_state_file(report, environ)
    text = get_str(report, top, (), "vramStateFile", default="")
    if not macros.report_unresolved(report, where, text, known) or not text:
        return None
    try:
        path = Path(text).expanduser()
    except RuntimeError as exc:  # `~` without a home directory
        report.problem(where, f"cannot expand '~': {exc}")
        return None
    base = source.parent if source is not None else Path()
    return (base / path).absolute()


def default_state_file(report: Report, environ: Mapping[str, str]) -> Path | None:
    """`$XDG_STATE_HOME/swapd/vram.json`, XDG_STATE_HOME defaulting to `~/.local/state`."""
    xdg = environ.get("XDG_STATE_HOME", "")
    # The XDG spec says to ignore a relative XDG_STATE_HOME.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / STATE_FILE_NAME
    try:
        home = Path.home()
    except RuntimeError:
        report.warn(
            ("vramStateFile",),
            "no home directory and no XDG_STATE_HOME: learned VRAM figures are not kept "
            "across restarts; set vramStateFile",
        )
        return None
    return home / ".local" / "state" / STATE_FILE_NAME
