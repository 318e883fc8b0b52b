"""The shell around the VRAM ledger: GPU samples, estimates, the state file, release waits.

The ledger itself is routing state: only the router's owner task changes it (GpuSampled events
and the planner's placements). This module feeds it and reads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from swapd.config.gpu_fit import gpu_problems
from swapd.config.model import Config, ModelSpec
from swapd.core.events import GpuSampled
from swapd.core.gpu_sample import GpuSample
from swapd.core.plan import Planner
from swapd.core.vram import VramLedger, VramPlanner, VramRules, gib
from swapd.gpu.estimate import estimate_vram
from swapd.gpu.nvml import GpuMonitor
from swapd.obs.hub import Observer

log = logging.getLogger(__name__)

RELEASE_POLL_S = 0.05
STATE_VERSION = 1


def _cmd_key(spec: ModelSpec) -> str:
    """Identifies a model's command across restarts, whatever `${PORT}` it was given."""
    text = "\0".join(spec.argv)
    if spec.port is not None:
        text = re.sub(rf"(?<!\d){spec.port}(?!\d)", "${PORT}", text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GpuCoordinator:
    def __init__(self, config: Config, monitor: GpuMonitor, obs: Observer | None = None) -> None:
        self._config = config
        self.monitor = monitor
        self._obs = obs
        rules = {
            mid: VramRules(gpus=spec.gpus, split=spec.gpu_split, need=spec.vram_bytes)
            for mid, spec in config.models.items()
        }
        self.ledger = VramLedger(rules, headroom=config.gpu.headroom_bytes)
        self.active = False
        """VRAM-aware planning is on: set by prepare()."""
        self.estimates: dict[str, str] = {}
        """Model id -> how its estimate was made, for the admin endpoints."""
        self._saving: asyncio.Task[None] | None = None

    async def prepare(self) -> list[str]:
        """Before serving: first sample, config checks against the GPUs, learned and estimated
        footprints. Returns config problems (nothing may start when there are any)."""
        first = await self.monitor.sample({})
        planning = self._config.gpu.planning
        self.active = planning != "off" and first is not None and bool(first.gpus)
        if planning == "on" and not self.active:
            log.warning("vramPlanning is on, but no NVIDIA GPU is visible: planning by VRAM is off")
        if first is None:
            return []
        problems = gpu_problems(self._config, first.gpus)
        if problems or not self.active:
            return problems
        self.ledger.observe(first, running=frozenset(), ready=frozenset())
        for gpu in first.gpus:
            log.info(
                "gpu index=%d name=%s total=%s used=%s",
                gpu.index,
                gpu.name,
                gib(gpu.total),
                gib(gpu.used),
            )
        self._load_learned()
        await self._estimate()
        return []

    def wrap(self, planner: Planner, costs: Mapping[str, float]) -> Planner:
        return VramPlanner(planner, self.ledger, costs) if self.active else planner

    def gpus_for(self, model: str) -> tuple[int, ...] | None:
        """Where a new child of `model` goes: its placement, else the GPUs its config names.

        A model without `gpus` sees every GPU as the user set it up (CUDA's own numbering and
        their env): the ledger counts it across all of them, but nothing is exported."""
        configured = self._config.models[model].gpus
        if configured is not None and self.active:
            return self.ledger.placement(model) or configured
        return configured

    def describe(self, model: str) -> str:
        """Where the planner put `model` and what it counted on, for the swap log line."""
        placed = self.ledger.placement(model) if self.active else None
        if placed is None:
            return ""
        fp = self.ledger.footprint(model)
        need = f" vram={gib(fp.bytes)}({fp.source})" if fp is not None else ""
        return f"gpus={','.join(map(str, placed))}{need}"

    # -- samples ---------------------------------------------------------------------------

    async def sample_forever(
        self, pids: Callable[[], Mapping[str, int]], post: Callable[[GpuSampled], None]
    ) -> None:
        """The `gpu-monitor` task: a sample every gpuPollInterval, handed to the owner."""
        if not self.monitor.available:
            return
        while True:
            sample = await self.monitor.sample(pids())
            if sample is not None:
                post(GpuSampled(sample=sample))
            await asyncio.sleep(self._config.gpu.poll_interval_s)

    def observe(self, sample: GpuSample, running: frozenset[str], ready: frozenset[str]) -> None:
        """In the owner task: take a sample into the ledger; remember what was learned."""
        changed = self.ledger.observe(sample, running, ready)
        if self._obs is not None:
            self._obs.gpu_sampled(self.gpus_view(running))
        for model in changed:
            log.info(
                "vram learned model=%s bytes=%d (%s)",
                model,
                self.ledger.learned()[model],
                gib(self.ledger.learned()[model]),
            )
        saving = self._saving is not None and not self._saving.done()
        if changed and self._config.gpu.state_file is not None and not saving:
            self._saving = asyncio.get_running_loop().create_task(
                self._save_learned(), name="vram-state"
            )

    async def wait_for_room(
        self,
        model: str,
        evicted: tuple[str, ...],
        pids: Callable[[], Mapping[str, int]],
        post: Callable[[GpuSampled], None],
    ) -> None:
        """After evictions, wait (bounded) until the driver shows the memory the target needs
        actually free, as a stopped process's memory can take a moment to be released."""
        placed = self.ledger.placement(model) if self.active else None
        if not placed or not any(self.ledger.share(m, g) for m in evicted for g in placed):
            return
        limit = self._config.gpu.release_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            sample = await self.monitor.sample(pids())
            if sample is not None:
                post(GpuSampled(sample=sample))
                if self._room(sample, model, placed):
                    return
            if loop.time() >= deadline:
                log.warning(
                    "vram not released in time model=%s gpus=%s waited_s=%g: starting anyway",
                    model,
                    ",".join(map(str, placed)),
                    limit,
                )
                return
            await asyncio.sleep(RELEASE_POLL_S)

    def _room(self, sample: GpuSample, model: str, placed: tuple[int, ...]) -> bool:
        fp = self.ledger.footprint(model)
        need = (fp.bytes // len(placed) if fp is not None else 0) + self.ledger.headroom
        for g in placed:
            info = sample.gpu(g)
            if info is None or info.free < need:
                return False
        return True

    # -- footprints --------------------------------------------------------------------------

    async def _estimate(self) -> None:
        todo = [
            spec
            for spec in self._config.models.values()
            if spec.vram_bytes is None and self.ledger.footprint(spec.id) is None
        ]
        results = await asyncio.gather(
            *(asyncio.to_thread(estimate_vram, spec.argv) for spec in todo)
        )
        for spec, estimate in zip(todo, results, strict=True):
            if estimate is None:
                self.estimates[spec.id] = "no model file in cmd: learned after the first load"
                continue
            self.ledger.set_estimate(spec.id, estimate.total)
            self.estimates[spec.id] = estimate.detail
            log.info("vram estimate model=%s %s", spec.id, estimate.detail)

    def _load_learned(self) -> None:
        path = self._config.gpu.state_file
        if path is None or not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            entries = saved["models"] if saved.get("version") == STATE_VERSION else {}
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            log.warning("vram state file unreadable path=%s error=%s: ignored", path, exc)
            return
        for model, entry in entries.items():
            spec = self._config.models.get(model)
            if spec is None or not isinstance(entry, dict):
                continue
            size = entry.get("bytes")
            if entry.get("cmd") == _cmd_key(spec) and isinstance(size, int) and size > 0:
                self.ledger.set_learned(model, size)

    async def _save_learned(self) -> None:
        path = self._config.gpu.state_file
        if path is None:
            return
        learned = self.ledger.learned()
        models: dict[str, Any] = {
            model: {"cmd": _cmd_key(self._config.models[model]), "bytes": size}
            for model, size in learned.items()
            if model in self._config.models
        }
        try:
            await asyncio.to_thread(
                _write_atomically, path, {"version": STATE_VERSION, "models": models}
            )
        except OSError as exc:
            log.warning("vram state file not written path=%s error=%s", path, exc)

    async def close(self) -> None:
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        await self.monitor.close()

    # -- for the admin endpoints -------------------------------------------------------------

    def model_view(self, model: str) -> dict[str, Any]:
        """GPU placement and VRAM of one model, JSON-ready."""
        fp = self.ledger.footprint(model) if self.active else None
        spec = self._config.models[model]
        placed = self.ledger.placement(model) if self.active else spec.gpus
        view: dict[str, Any] = {"gpus": list(placed) if placed is not None else None}
        if fp is None and spec.vram_bytes is not None:
            view["vram"] = {"bytes": spec.vram_bytes, "source": "config"}
        elif fp is not None:
            view["vram"] = {"bytes": fp.bytes, "source": fp.source}
            if fp.source == "estimate":
                view["vram"]["detail"] = self.estimates.get(model, "")
        latest = self.monitor.latest
        if latest is not None and model in latest.model_usage:
            view["vram_measured"] = {str(g): b for g, b in latest.model_usage[model].items()}
        return view

    def gpus_view(self, running: frozenset[str]) -> dict[str, Any]:
        latest = self.monitor.latest
        usage = latest.model_usage if latest is not None else {}
        gpus = []
        for info in latest.gpus if latest is not None else ():
            holders = []
            for m in sorted(running):
                planned = self.ledger.share(m, info.index)
                measured = usage.get(m, {}).get(info.index)
                if planned or measured is not None:
                    holders.append(
                        {"model": m, "planned_bytes": planned, "measured_bytes": measured}
                    )
            gpus.append(
                {
                    "index": info.index,
                    "name": info.name,
                    "uuid": info.uuid,
                    "total_bytes": info.total,
                    "used_bytes": info.used,
                    "free_bytes": info.free,
                    "utilization_percent": info.utilization,
                    "other_processes_bytes": self.ledger.external(info.index),
                    "models": holders,
                }
            )
        return {
            "monitor": "nvml" if self.monitor.available else "none",
            "planning": self.active,
            "headroom_bytes": self.ledger.headroom,
            "sampled_at": latest.taken_at if latest is not None else None,
            "gpus": gpus,
        }


def _write_atomically(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
