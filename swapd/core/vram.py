"""VRAM-aware placement on top of the group/matrix planners. Pure; the router owns one ledger.

The ledger is what swapd knows about GPU memory: each GPU's capacity and the memory used by
processes that are not swapd's children (from the latest monitor sample), each model's
footprint (configured `vram`, else the figure learned from NVML after a load, else an
estimate from its GGUF file) and where each model was placed.

`VramPlanner` asks the wrapped planner which models must go, then, for each GPU (or set of
GPUs) the target may use, evicts further models on those GPUs until the target fits with the
headroom: idle before busy, cheapest first (`evict_costs`), then least recently used. The
placement with the fewest busy evictions, then the least cost, then the most free memory left
wins. A busy model in the plan makes the scheduler wait for it to drain; it is never stopped
under a request.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Literal

from swapd.core.gpu_sample import GpuInfo, GpuSample
from swapd.core.plan import ModelUsage, Planner

FootprintSource = Literal["config", "learned", "estimate"]


class DoesNotFit(Exception):
    """The target cannot be placed on any of its GPUs, whatever is evicted."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VramRules:
    gpus: tuple[int, ...] | None = None
    """The GPUs the model may use; None: every GPU, split (llama.cpp's default)."""
    split: bool = False
    """True: the model uses all of `gpus` at once, its footprint divided evenly."""
    need: int | None = None
    """Bytes from the config's `vram`; None when not given."""


@dataclass(frozen=True, slots=True)
class Footprint:
    bytes: int
    source: FootprintSource


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


class VramLedger:
    def __init__(self, rules: Mapping[str, VramRules], *, headroom: int) -> None:
        self._rules = dict(rules)
        self.headroom = headroom
        self.gpus: dict[int, GpuInfo] = {}
        self._external: dict[int, int] = {}
        self._estimates: dict[str, int] = {}
        self._learned: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._placement: dict[str, tuple[int, ...]] = {}

    # -- what is known ---------------------------------------------------------------------

    def rules(self, model: str) -> VramRules:
        return self._rules.get(model, VramRules())

    def footprint(self, model: str) -> Footprint | None:
        rules = self.rules(model)
        if rules.need is not None:
            return Footprint(rules.need, "config")
        if (learned := self._learned.get(model)) is not None:
            return Footprint(learned, "learned")
        if (estimate := self._estimates.get(model)) is not None:
            return Footprint(estimate, "estimate")
        return None

    def placement(self, model: str) -> tuple[int, ...] | None:
        return self._placement.get(model)

    def external(self, gpu: int) -> int:
        """Bytes in use on `gpu` by processes that are not swapd's models."""
        return self._external.get(gpu, 0)

    def learned(self) -> Mapping[str, int]:
        return dict(self._learned)

    def share(self, model: str, gpu: int) -> int:
        """The part of `model`'s footprint on `gpu`, given where it was placed."""
        placed = self._placement.get(model)
        if not placed or gpu not in placed:
            return 0
        fp = self.footprint(model)
        return fp.bytes // len(placed) if fp is not None else 0

    # -- what changes it -------------------------------------------------------------------

    def set_estimate(self, model: str, size: int) -> None:
        self._estimates[model] = size

    def set_learned(self, model: str, size: int) -> None:
        self._learned[model] = size

    def place(self, model: str, gpus: tuple[int, ...]) -> None:
        self._placement[model] = gpus
        self._peak.pop(model, None)  # a new instance: learn its footprint afresh

    def observe(self, sample: GpuSample, running: Set[str], ready: Set[str]) -> list[str]:
        """Take in a monitor sample; returns the models whose learned footprint changed.

        `running` are the models with a live child (starting, ready or stopping); `ready` those
        whose load has finished, the only ones whose memory use is a footprint worth learning.
        """
        self.gpus = {info.index: info for info in sample.gpus}
        usage = sample.model_usage
        measured = bool(usage)
        for index, info in self.gpus.items():
            if measured:
                ours = sum(per_gpu.get(index, 0) for per_gpu in usage.values())
            else:
                # No per-process figures (e.g. a container without the host's PID namespace):
                # assume swapd's running models use what the ledger says they do.
                ours = sum(self.share(m, index) for m in running)
            self._external[index] = max(0, info.used - ours)
        changed = []
        for model in sorted(ready):
            total = sum(usage.get(model, {}).values())
            if total > self._peak.get(model, 0):
                self._peak[model] = total
                if self._learned.get(model) != total:
                    self._learned[model] = total
                    changed.append(model)
        return changed


@dataclass(frozen=True, slots=True)
class _Option:
    gpus: tuple[int, ...]
    extra: tuple[str, ...]
    busy: int
    cost: float
    spare: int


class VramPlanner:
    """Planner decorator: the wrapped planner's evictions, plus whatever the target's fit needs."""

    def __init__(
        self, inner: Planner, ledger: VramLedger, costs: Mapping[str, float] | None = None
    ) -> None:
        self.inner = inner
        self.ledger = ledger
        self._costs = dict(costs or {})
        self._chosen: dict[str, tuple[int, ...]] = {}

    def evictions(
        self, target: str, running: Set[str], usage: ModelUsage | None = None
    ) -> tuple[str, ...]:
        base = self.inner.evictions(target, running, usage)
        ledger = self.ledger
        if not ledger.gpus:
            return base  # no sample yet: nothing to place by
        if usage is not None and usage.is_running(target):
            return base  # already loaded: its memory is in use, there is nothing to place
        options = [
            option
            for gpus in self._candidates(target)
            if (option := self._fit(target, gpus, running, set(base), usage)) is not None
        ]
        if not options:
            raise DoesNotFit(self._explain(target, running))
        best = min(options, key=lambda o: (o.busy, o.cost, -o.spare))
        self._chosen[target] = best.gpus
        return tuple(sorted({*base, *best.extra}))

    def on_swap_start(self, target: str, evict: tuple[str, ...]) -> None:
        self.inner.on_swap_start(target, evict)
        gpus = self._chosen.pop(target, None)
        if gpus is None:
            candidates = self._candidates(target)
            gpus = candidates[0] if candidates else None
        if gpus is not None:
            self.ledger.place(target, gpus)

    # -- the search ------------------------------------------------------------------------

    def _candidates(self, target: str) -> list[tuple[int, ...]]:
        rules = self.ledger.rules(target)
        present = self.ledger.gpus
        allowed = tuple(g for g in (rules.gpus or sorted(present)) if g in present)
        if not allowed:
            return []
        if rules.gpus is None or rules.split:
            return [allowed]
        return [(g,) for g in allowed]

    def _need_on(self, target: str, gpus: tuple[int, ...]) -> int:
        fp = self.ledger.footprint(target)
        return (fp.bytes // len(gpus) if fp is not None else 0) + self.ledger.headroom

    def _free(self, gpu: int, staying: Set[str]) -> int:
        ledger = self.ledger
        used = ledger.external(gpu) + sum(ledger.share(m, gpu) for m in staying)
        return ledger.gpus[gpu].total - used

    def _fit(
        self,
        target: str,
        gpus: tuple[int, ...],
        running: Set[str],
        base: set[str],
        usage: ModelUsage | None,
    ) -> _Option | None:
        need = self._need_on(target, gpus)
        staying = {m for m in running if m not in base and m != target}
        extra: list[str] = []

        def short() -> list[int]:
            return [g for g in gpus if self._free(g, staying) < need]

        def order(m: str) -> tuple[bool, float, float, str]:
            busy = usage is not None and usage.in_flight(m) > 0
            last = usage.last_used(m) if usage is not None else 0.0
            return (busy, self._costs.get(m, 1), last, m)

        lacking = short()
        for model in sorted(staying, key=order):
            if not lacking:
                break
            if any(self.ledger.share(model, g) for g in lacking):
                staying.discard(model)
                extra.append(model)
                lacking = short()
        if lacking:
            return None
        busy = sum(1 for m in extra if usage is not None and usage.in_flight(m) > 0)
        cost = sum(self._costs.get(m, 1) for m in extra)
        spare = min(self._free(g, staying) - need for g in gpus)
        return _Option(gpus, tuple(extra), busy, cost, spare)

    def _explain(self, target: str, running: Set[str]) -> str:
        ledger = self.ledger
        candidates = self._candidates(target)
        if not candidates:
            wanted = ", ".join(map(str, ledger.rules(target).gpus or ()))
            return f"model '{target}' may only use GPU(s) {wanted}, which this host does not have"
        fp = ledger.footprint(target)
        need = f"{gib(fp.bytes)} of VRAM ({fp.source})" if fp is not None else "VRAM"
        where = "split evenly across its GPUs" if len(candidates[0]) > 1 else "on one GPU"
        rooms = []
        for g in sorted({g for gpus in candidates for g in gpus}):
            info = ledger.gpus[g]
            room = max(0, info.total - ledger.headroom - ledger.external(g))
            rooms.append(
                f"GPU {g} ({info.name}): {gib(info.total)} total, {gib(ledger.external(g))} used "
                f"by other processes, {gib(ledger.headroom)} headroom -> {gib(room)} for models"
            )
        return (
            f"model '{target}' needs {need} {where}, more than fits even with every other "
            f"model stopped: " + "; ".join(rooms)
        )
