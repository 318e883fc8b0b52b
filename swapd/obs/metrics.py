"""Prometheus metrics behind GET /metrics, in swapd's own registry.

Cheap on the request path, which is benchmarked: what each request feeds (counts, durations,
tokens) is added to plain Python counters and bucket lists found by one dict lookup, and turned
into metric families only when /metrics is scraped; prometheus_client's own metric objects
(a lock per update) serve only the rare events (swaps, crashes). What the router and the GPU
monitor report (model states, in-flight and queued counts, GPU memory) is only stored when it
changes hands and becomes gauges at scrape time too.

The number of series is bounded: model labels come only from the configured model ids, the
endpoint label from a fixed list, the status label is the numeric HTTP status (100-599, else
"other"), GPU labels from the GPUs NVML reports. docs/observability.md lists every metric.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from swapd.core.endpoints import MODEL_ENDPOINTS
from swapd.core.state import ModelSnapshot, ModelState
from swapd.obs.activity import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ENDPOINTS = MODEL_ENDPOINTS
"""The endpoint label's values besides "/upstream" and "other"."""
UPSTREAM_LABEL = "/upstream"
OTHER_LABEL = "other"

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SWAP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
SPEED_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

_ENDPOINT_LABELS = {path: path for path in ENDPOINTS}
_STATES = tuple(ModelState)


def endpoint_label(endpoint: str) -> str:
    label = _ENDPOINT_LABELS.get(endpoint)
    if label is not None:
        return label
    return UPSTREAM_LABEL if endpoint.startswith("/upstream/") else OTHER_LABEL


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER_LABEL


class _Histogram:
    """Observations per bucket (the last one is +Inf) and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0


class _Model:
    __slots__ = ("queue_wait", "speed", "tokens_in", "tokens_out")

    def __init__(self) -> None:
        self.queue_wait = _Histogram(QUEUE_BUCKETS)
        self.speed = _Histogram(SPEED_BUCKETS)
        self.tokens_in = 0
        self.tokens_out = 0


class _Route:
    """One (model, endpoint)."""

    __slots__ = ("duration", "ttfb")

    def __init__(self) -> None:
        self.duration = _Histogram(LATENCY_BUCKETS)
        self.ttfb = _Histogram(LATENCY_BUCKETS)


class _Kind:
    """One (model, endpoint, status): its count, and where the rest of the request goes."""

    __slots__ = ("count", "model", "route")

    def __init__(self, model: _Model, route: _Route) -> None:
        self.count = 0
        self.model = model
        self.route = route


class _Requests(Collector):
    """The per-request metrics, as plain counters; metric families only when scraped."""

    def __init__(self, models: tuple[str, ...]) -> None:
        self.models = {m: _Model() for m in models}
        self.routes: dict[tuple[str, str], _Route] = {}
        self.kinds: dict[tuple[str, str, int], _Kind] = {}
        """(model, endpoint label, status) -> its accumulators; bounded like the labels."""

    def finished(self, record: RequestRecord) -> None:
        model = record.model
        endpoint = _ENDPOINT_LABELS.get(record.endpoint) or endpoint_label(record.endpoint)
        kind = self.kinds.get((model, endpoint, record.status))
        if kind is None:
            per_model = self.models.get(model)
            if per_model is None:
                return  # not a configured model: no series for it
            route = self.routes.get((model, endpoint))
            if route is None:
                route = self.routes[(model, endpoint)] = _Route()
            kind = self.kinds[(model, endpoint, record.status)] = _Kind(per_model, route)
        kind.count += 1
        route = kind.route
        _observe(route.duration, LATENCY_BUCKETS, record.total_s)
        if record.ttfb_s is not None:
            _observe(route.ttfb, LATENCY_BUCKETS, record.ttfb_s)
        per_model = kind.model
        _observe(per_model.queue_wait, QUEUE_BUCKETS, record.queue_wait_s)
        if record.tokens_in:
            per_model.tokens_in += record.tokens_in
        if record.tokens_out:
            per_model.tokens_out += record.tokens_out
        if record.tokens_per_s is not None:
            _observe(per_model.speed, SPEED_BUCKETS, record.tokens_per_s)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "swapd_requests",
            "Requests answered, by model, endpoint and HTTP status (499: the client left).",
            labels=("model", "endpoint", "status"),
        )
        statuses: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for (model, endpoint, status), kind in self.kinds.items():
            # Statuses outside 100-599 share the label "other": add them up.
            statuses.setdefault((model, endpoint), []).append((status_label(status), kind.count))
        for (model, endpoint), counts in statuses.items():
            summed: dict[str, int] = {}
            for label, count in counts:
                summed[label] = summed.get(label, 0) + count
            for label, count in summed.items():
                requests.add_metric((model, endpoint, label), count)
        yield requests
        routes = sorted(self.routes.items())
        yield _histogram_family(
            "swapd_request_duration_seconds",
            "Arrival to the end of the response (queueing and model loads included).",
            ("model", "endpoint"),
            LATENCY_BUCKETS,
            [(key, route.duration) for key, route in routes],
        )
        yield _histogram_family(
            "swapd_request_ttfb_seconds",
            "Arrival to the first byte of the model's response sent to the client.",
            ("model", "endpoint"),
            LATENCY_BUCKETS,
            [(key, route.ttfb) for key, route in routes],
        )
        models = list(self.models.items())
        yield _histogram_family(
            "swapd_queue_wait_seconds",
            "Arrival until the model was granted to the request (queueing and loads included).",
            ("model",),
            QUEUE_BUCKETS,
            [((m,), per.queue_wait) for m, per in models],
        )
        tokens_in = CounterMetricFamily(
            "swapd_tokens_in", "Prompt tokens, as the model reported them.", labels=("model",)
        )
        tokens_out = CounterMetricFamily(
            "swapd_tokens_out", "Generated tokens, as the model reported them.", labels=("model",)
        )
        for model, per in models:
            tokens_in.add_metric((model,), per.tokens_in)
            tokens_out.add_metric((model,), per.tokens_out)
        yield tokens_in
        yield tokens_out
        yield _histogram_family(
            "swapd_generation_tokens_per_second",
            "Generation speed per request (llama.cpp's timings.predicted_per_second).",
            ("model",),
            SPEED_BUCKETS,
            [((m,), per.speed) for m, per in models],
        )


def _observe(histogram: _Histogram, bounds: tuple[float, ...], value: float) -> None:
    # bisect_left: the first bound >= value, Prometheus's "le".
    histogram.counts[bisect_left(bounds, value)] += 1
    histogram.sum += value


def _histogram_family(
    name: str,
    documentation: str,
    labels: tuple[str, ...],
    bounds: tuple[float, ...],
    items: list[tuple[tuple[str, ...], _Histogram]],
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    les = [*(repr(float(b)) for b in bounds), "+Inf"]  # "0.005", "1.0": as prometheus_client
    for values, histogram in items:
        cumulative = list(zip(les, itertools.accumulate(histogram.counts), strict=True))
        family.add_metric(values, cumulative, histogram.sum)
    return family


class Metrics:
    def __init__(self, models: Iterable[str]) -> None:
        self.models = tuple(models)
        # `_created` series would double the series count and say nothing a scraper needs.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        reg = self.registry
        self._requests = _Requests(self.models)
        reg.register(self._requests)
        self.swaps = Counter(
            "swapd_swaps",
            "Model loads (swaps), by target model and result (ok, failed).",
            ("model", "result"),
            registry=reg,
        )
        self.swap_duration = Histogram(
            "swapd_swap_duration_seconds",
            "Whole swap: evictions stopped plus the target started and ready.",
            ("model",),
            buckets=SWAP_BUCKETS,
            registry=reg,
        )
        self.swap_evict = Histogram(
            "swapd_swap_evict_seconds",
            "Swap phase 1: waiting for the evicted models to stop (and their memory to free).",
            ("model",),
            buckets=SWAP_BUCKETS,
            registry=reg,
        )
        self.swap_ready = Histogram(
            "swapd_swap_ready_seconds",
            "Swap phase 2: the target's spawn until it answered its health check.",
            ("model",),
            buckets=SWAP_BUCKETS,
            registry=reg,
        )
        self.crashes = Counter(
            "swapd_child_crashes",
            "Model processes that exited when swapd had not asked them to.",
            ("model",),
            registry=reg,
        )
        self.restarts = Counter(
            "swapd_child_restarts",
            "Successful starts of a model whose previous process had crashed.",
            ("model",),
            registry=reg,
        )
        for model in self.models:
            # Present from the start at 0, so rates and alerts need no special case.
            self.crashes.labels(model)
            self.restarts.labels(model)
            for result in ("ok", "failed"):
                self.swaps.labels(model, result)
        self._crashed: set[str] = set()
        self.live = _Live(self.models)
        reg.register(self.live)

    # -- web ---------------------------------------------------------------------------------

    def request_finished(self, record: RequestRecord) -> None:
        self._requests.finished(record)

    def queue_wait(self, model: str, seconds: float) -> None:
        per_model = self._requests.models.get(model)
        if per_model is not None:
            _observe(per_model.queue_wait, QUEUE_BUCKETS, seconds)

    # -- router ------------------------------------------------------------------------------

    def models_changed(self, snapshot: Mapping[str, ModelSnapshot]) -> None:
        self.live.snapshot = snapshot

    def swap_finished(
        self, model: str, *, ok: bool, evict_s: float, ready_s: float, total_s: float
    ) -> None:
        if model not in self._requests.models:
            return
        self.swaps.labels(model, "ok" if ok else "failed").inc()
        self.swap_duration.labels(model).observe(total_s)
        self.swap_evict.labels(model).observe(evict_s)
        self.swap_ready.labels(model).observe(ready_s)
        if ok and model in self._crashed:
            self._crashed.discard(model)
            self.restarts.labels(model).inc()

    def child_exited(self, model: str) -> None:
        if model not in self._requests.models:
            return
        self.crashes.labels(model).inc()
        self._crashed.add(model)

    # -- gpu ---------------------------------------------------------------------------------

    def gpu_sampled(self, gpus: list[dict[str, object]]) -> None:
        self.live.gpus = gpus

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return prometheus_client.generate_latest(self.registry), CONTENT_TYPE


class _Live(Collector):
    """Gauges built at scrape time from the last snapshot and GPU sample handed over."""

    def __init__(self, models: tuple[str, ...]) -> None:
        self.models = models
        self._known = frozenset(models)
        self.snapshot: Mapping[str, ModelSnapshot] = {}
        self.gpus: list[dict[str, object]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._models()
        yield from self._gpus()

    def _models(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "swapd_model_state",
            "1 for the state each model is in, 0 for the others.",
            labels=("model", "state"),
        )
        in_flight = GaugeMetricFamily(
            "swapd_model_in_flight", "Requests being served by the model now.", labels=("model",)
        )
        queued = GaugeMetricFamily(
            "swapd_queue_depth",
            "Requests waiting for the model (queued or joined to its load).",
            labels=("model",),
        )
        snapshot = self.snapshot
        for model in self.models:
            snap = snapshot.get(model)
            current = snap.state if snap is not None else ModelState.STOPPED
            for candidate in _STATES:
                state.add_metric((model, candidate.value), 1.0 if candidate == current else 0.0)
            in_flight.add_metric((model,), snap.in_flight if snap is not None else 0)
            queued.add_metric((model,), snap.queued if snap is not None else 0)
        yield state
        yield in_flight
        yield queued

    def _gpus(self) -> Iterator[GaugeMetricFamily]:
        gpus = self.gpus
        if not gpus:
            return
        labels = ("gpu", "name")
        families = {
            "total_bytes": GaugeMetricFamily(
                "swapd_gpu_memory_total_bytes", "GPU memory size.", labels=labels
            ),
            "used_bytes": GaugeMetricFamily(
                "swapd_gpu_memory_used_bytes", "GPU memory in use (any process).", labels=labels
            ),
            "free_bytes": GaugeMetricFamily(
                "swapd_gpu_memory_free_bytes", "GPU memory free.", labels=labels
            ),
            "other_processes_bytes": GaugeMetricFamily(
                "swapd_gpu_memory_other_bytes",
                "GPU memory used by processes that are not swapd's models.",
                labels=labels,
            ),
            "utilization_percent": GaugeMetricFamily(
                "swapd_gpu_utilization_percent", "GPU utilisation (NVML).", labels=labels
            ),
        }
        measured = GaugeMetricFamily(
            "swapd_model_gpu_memory_bytes",
            "GPU memory a model's processes use, measured by NVML.",
            labels=("model", "gpu"),
        )
        planned = GaugeMetricFamily(
            "swapd_model_gpu_memory_planned_bytes",
            "GPU memory the placement planner counts for a model.",
            labels=("model", "gpu"),
        )
        for gpu in gpus:
            index = str(gpu.get("index"))
            ids = (index, str(gpu.get("name", "")))
            for key, family in families.items():
                value = _number(gpu.get(key))
                if value is not None:
                    family.add_metric(ids, value)
            holders = gpu.get("models")
            for holder in holders if isinstance(holders, list) else ():
                if not isinstance(holder, dict) or holder.get("model") not in self._known:
                    continue
                model = str(holder["model"])
                value = _number(holder.get("measured_bytes"))
                if value is not None:
                    measured.add_metric((model, index), value)
                value = _number(holder.get("planned_bytes"))
                if value is not None:
                    planned.add_metric((model, index), value)
        yield from families.values()
        yield measured
        yield planned


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
