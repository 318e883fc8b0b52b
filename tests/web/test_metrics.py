"""GET /metrics and GET /api/activity: what each request records, and bounded label sets."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpServer

from swapd.core.state import ModelSnapshot, ModelState
from swapd.errors import ConcurrencyLimited, ModelUnavailable
from swapd.obs.activity import RequestRecord
from swapd.obs.metrics import ENDPOINTS, Metrics
from swapd.web.server import DISPATCHED_PATHS

from .conftest import MakeClient
from .fake_router import FakeRouter, FakeUpstream

Client = TestClient[Any, Any]
CHAT = "/v1/chat/completions"
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
TIMINGS = {"prompt_n": 2, "cache_n": 10, "predicted_n": 5, "predicted_per_second": 250.0}

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _sse_body() -> bytes:
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "timings": TIMINGS},
    ]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


@pytest.fixture
async def llm(aiohttp_server: AiohttpServer, router: FakeRouter) -> str:
    """An upstream that answers like llama-server: usage in JSON, timings in the last chunk."""

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("fail"):
            error = {"code": 400, "message": "the request exceeds the available context size"}
            return web.json_response({"error": error}, status=400)
        if not body.get("stream"):
            return web.json_response({"object": "chat.completion", "usage": USAGE})
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        data = _sse_body()
        for at in range(0, len(data), 7):  # split anywhere, as TCP may
            await out.write(data[at : at + 7])
        await out.write_eof()
        return out

    app = web.Application()
    app.router.add_post(CHAT, chat)
    server = await aiohttp_server(app)
    router.upstream = str(server.make_url("")).rstrip("/")
    return router.upstream


async def _scrape(client: Client) -> Series:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    series: Series = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def _value(series: Series, metric: str, **labels: str) -> float | None:
    return series.get((metric, frozenset(labels.items())))


def _label_values(series: Series, label: str) -> set[str]:
    return {dict(labels)[label] for _, labels in series if label in dict(labels)}


async def _activity(client: Client, query: str = "") -> list[dict[str, Any]]:
    resp = await client.get("/api/activity" + query)
    assert resp.status == 200
    records: list[dict[str, Any]] = (await resp.json())["activity"]
    return records


def test_metrics_endpoint_labels_are_the_dispatched_paths() -> None:
    assert ENDPOINTS == DISPATCHED_PATHS


async def test_metrics_count_requests_ttfb_and_tokens(
    client: Client, router: FakeRouter, llm: str
) -> None:
    resp = await client.post(CHAT, json={"model": "llama"})
    assert (await resp.json())["usage"] == USAGE
    resp = await client.post(CHAT, json={"model": "l", "stream": True})
    assert (await resp.read()).endswith(b"data: [DONE]\n\n")
    await router.wait_released(2)

    series = await _scrape(client)
    labels = {"model": "llama", "endpoint": CHAT}
    assert _value(series, "swapd_requests_total", status="200", **labels) == 2
    assert _value(series, "swapd_request_duration_seconds_count", **labels) == 2
    assert _value(series, "swapd_request_ttfb_seconds_count", **labels) == 2
    assert _value(series, "swapd_queue_wait_seconds_count", model="llama") == 2
    assert _value(series, "swapd_tokens_in_total", model="llama") == 12 + 12
    assert _value(series, "swapd_tokens_out_total", model="llama") == 5 + 5
    assert _value(series, "swapd_generation_tokens_per_second_count", model="llama") == 1
    assert _value(series, "swapd_generation_tokens_per_second_sum", model="llama") == 250.0
    # Every configured model has its series from the start; nothing else does.
    assert _label_values(series, "model") == {
        "llama",
        "org",
        "org/qwen:7b",
        "hidden",
        "renamed",
        "filtered",
    }

    records = await _activity(client)
    assert [r["streamed"] for r in records] == [True, False]  # newest first
    streamed, plain = records
    assert streamed["model"] == plain["model"] == "llama"
    assert streamed["endpoint"] == plain["endpoint"] == CHAT
    assert streamed["status"] == plain["status"] == 200
    assert (plain["tokens_in"], plain["tokens_out"], plain["tokens_per_s"]) == (12, 5, None)
    assert (streamed["tokens_in"], streamed["tokens_out"], streamed["tokens_per_s"]) == (
        12,
        5,
        250.0,
    )
    for record in records:
        assert record["error"] is None
        assert 0 <= record["queue_wait_s"] <= record["ttfb_s"] <= record["total_s"]
        assert record["at"] > 1.7e9


async def test_metrics_swapd_errors_are_counted_with_their_status(
    client: Client, router: FakeRouter
) -> None:
    router.error = ModelUnavailable("model 'llama' failed to start: exit 1")
    assert (await client.post(CHAT, json={"model": "llama"})).status == 503
    router.error = ConcurrencyLimited("too many")
    assert (await client.post("/v1/embeddings", json={"model": "llama"})).status == 429
    series = await _scrape(client)
    assert _value(series, "swapd_requests_total", model="llama", endpoint=CHAT, status="503") == 1
    assert (
        _value(
            series, "swapd_requests_total", model="llama", endpoint="/v1/embeddings", status="429"
        )
        == 1
    )
    records = await _activity(client)
    assert [(r["status"], r["ttfb_s"]) for r in records] == [(429, None), (503, None)]
    assert records[1]["error"] == "model 'llama' failed to start: exit 1"


async def test_activity_records_the_upstreams_error_message(
    client: Client, router: FakeRouter, llm: str
) -> None:
    assert (await client.post(CHAT, json={"model": "llama", "fail": True})).status == 400
    await router.wait_released(1)
    (record,) = await _activity(client)
    assert (record["status"], record["error"]) == (
        400,
        "the request exceeds the available context size",
    )
    series = await _scrape(client)
    assert _value(series, "swapd_requests_total", model="llama", endpoint=CHAT, status="400") == 1


async def test_metrics_unknown_models_and_odd_paths_add_no_series(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    assert (await client.post(CHAT, json={"model": "llama"})).status == 200
    await router.wait_released(1)
    before = set(await _scrape(client))

    assert (await client.post(CHAT, json={"model": "no-such-model"})).status == 404
    assert (await client.post(CHAT, json={"model": "../../etc"})).status == 404
    assert (await client.post("/v1/chat/completions/extra", json={"model": "llama"})).status in (
        404,
        405,
    )
    assert (await client.get("/upstream/nobody/x")).status == 404
    assert (await client.post(CHAT + "?x=1", json={"model": "l"})).status == 200
    await router.wait_released(2)
    after = await _scrape(client)
    assert set(after) == before
    assert _value(after, "swapd_requests_total", model="llama", endpoint=CHAT, status="200") == 2
    # No record for requests that named no configured model.
    assert {r["model"] for r in await _activity(client)} == {"llama"}


async def test_metrics_upstream_paths_share_one_endpoint_label(
    client: Client, router: FakeRouter
) -> None:
    for path in ("/upstream/llama/props", "/upstream/l/slots/0?x=1", "/upstream/llama/a/b/c"):
        assert (await client.get(path)).status == 200
    await router.wait_released(3)
    series = await _scrape(client)
    endpoints = _label_values(series, "endpoint")
    assert endpoints == {"/upstream"}
    assert (
        _value(series, "swapd_requests_total", model="llama", endpoint="/upstream", status="200")
        == 3
    )
    # The activity log keeps the path the client used (without its query).
    assert [r["endpoint"] for r in await _activity(client)] == [
        "/upstream/llama/a/b/c",
        "/upstream/l/slots/0",
        "/upstream/llama/props",
    ]


async def test_metrics_client_that_left_is_recorded_as_499(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    request = asyncio.ensure_future(
        client.post(CHAT, json={"model": "llama"}, headers={"X-Fake-Mode": "hang"})
    )
    async with asyncio.timeout(5):
        await upstream.started.wait()
    request.cancel()
    await router.wait_released(1)
    async with asyncio.timeout(5):
        while not await _activity(client):  # noqa: ASYNC110 - the record follows the release
            await asyncio.sleep(0.01)
    (record,) = await _activity(client)
    assert record["status"] == 499
    assert "disconnected" in record["error"]
    series = await _scrape(client)
    assert _value(series, "swapd_requests_total", model="llama", endpoint=CHAT, status="499") == 1


async def test_activity_limit_and_model_filter(make_client: MakeClient, router: FakeRouter) -> None:
    client = await make_client()
    for model in ("llama", "org", "qwen", "llama"):
        assert (await client.post(CHAT, json={"model": model})).status == 200
    await router.wait_released(4)
    assert len(await _activity(client)) == 4
    assert [r["model"] for r in await _activity(client, "?limit=2")] == ["llama", "org/qwen:7b"]
    assert await _activity(client, "?limit=0") == []
    assert [r["model"] for r in await _activity(client, "?model=qwen")] == ["org/qwen:7b"]
    assert len(await _activity(client, "?model=llama&limit=1000")) == 2
    assert await _activity(client, "?model=unknown") == []
    for bad in ("-1", "x", "1.5"):
        resp = await client.get(f"/api/activity?limit={bad}")
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "bad_request"


async def test_activity_and_metrics_need_the_api_key(
    make_client: MakeClient, router: FakeRouter
) -> None:
    from .conftest import make_config

    client = await make_client(make_config(api_keys=("k",)))
    for path in ("/metrics", "/api/activity"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer k"})).status == 200


# --- the Metrics object fed by the router's and the GPU monitor's hooks ----------------------


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(("a", "b"))


def _series(metrics: Metrics) -> Series:
    body, _ = metrics.render()
    found: Series = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _record(**kw: Any) -> RequestRecord:
    base: dict[str, Any] = {
        "at": 0.0,
        "model": "a",
        "endpoint": CHAT,
        "status": 200,
        "streamed": False,
        "queue_wait_s": 0.5,
        "ttfb_s": 0.6,
        "total_s": 0.7,
    }
    return RequestRecord(**{**base, **kw})


def test_metrics_model_state_in_flight_and_queue_depth(metrics: Metrics) -> None:
    series = _series(metrics)
    assert _value(series, "swapd_model_state", model="a", state="stopped") == 1
    assert _value(series, "swapd_model_state", model="a", state="ready") == 0
    metrics.models_changed(
        {
            "a": ModelSnapshot(model="a", state=ModelState.READY, in_flight=3, queued=0),
            "b": ModelSnapshot(model="b", state=ModelState.STOPPED, in_flight=0, queued=2),
        }
    )
    series = _series(metrics)
    assert _value(series, "swapd_model_state", model="a", state="ready") == 1
    assert _value(series, "swapd_model_state", model="a", state="stopped") == 0
    assert sum(v for (n, lab), v in series.items() if n == "swapd_model_state") == 2
    assert _value(series, "swapd_model_in_flight", model="a") == 3
    assert _value(series, "swapd_queue_depth", model="b") == 2


def test_metrics_swaps_their_phases_crashes_and_restarts(metrics: Metrics) -> None:
    metrics.swap_finished("a", ok=True, evict_s=0.25, ready_s=1.5, total_s=1.75)
    metrics.swap_finished("a", ok=False, evict_s=0.0, ready_s=0.1, total_s=0.1)
    metrics.child_exited("a")
    metrics.child_exited("a")
    metrics.swap_finished("a", ok=True, evict_s=0.0, ready_s=1.0, total_s=1.0)
    metrics.swap_finished("a", ok=True, evict_s=0.0, ready_s=1.0, total_s=1.0)
    metrics.swap_finished("ghost", ok=True, evict_s=0.0, ready_s=1.0, total_s=1.0)
    metrics.child_exited("ghost")
    series = _series(metrics)
    assert _value(series, "swapd_swaps_total", model="a", result="ok") == 3
    assert _value(series, "swapd_swaps_total", model="a", result="failed") == 1
    assert _value(series, "swapd_swap_duration_seconds_count", model="a") == 4
    assert _value(series, "swapd_swap_duration_seconds_sum", model="a") == 3.85
    assert _value(series, "swapd_swap_evict_seconds_sum", model="a") == 0.25
    assert _value(series, "swapd_swap_ready_seconds_sum", model="a") == 3.6
    assert _value(series, "swapd_child_crashes_total", model="a") == 2
    assert _value(series, "swapd_child_restarts_total", model="a") == 1
    assert _value(series, "swapd_swaps_total", model="b", result="ok") == 0
    assert "ghost" not in _label_values(series, "model")


def test_metrics_gpu_memory_per_gpu_and_per_model(metrics: Metrics) -> None:
    assert not [n for n, _ in _series(metrics) if n.startswith("swapd_gpu_")]
    gib = 1024**3
    metrics.gpu_sampled(
        [
            {
                "index": 0,
                "name": "NVIDIA H100",
                "total_bytes": 80 * gib,
                "used_bytes": 10 * gib,
                "free_bytes": 70 * gib,
                "utilization_percent": 42,
                "other_processes_bytes": gib,
                "models": [
                    {"model": "a", "planned_bytes": 8 * gib, "measured_bytes": 9 * gib},
                    {"model": "b", "planned_bytes": gib, "measured_bytes": None},
                    {"model": "not-configured", "planned_bytes": 1, "measured_bytes": 1},
                ],
            },
            {
                "index": 1,
                "name": "NVIDIA H100",
                "total_bytes": 80 * gib,
                "used_bytes": 0,
                "free_bytes": 80 * gib,
                "utilization_percent": None,
                "other_processes_bytes": 0,
                "models": [],
            },
        ]
    )
    series = _series(metrics)
    gpu0 = {"gpu": "0", "name": "NVIDIA H100"}
    assert _value(series, "swapd_gpu_memory_total_bytes", **gpu0) == 80 * gib
    assert _value(series, "swapd_gpu_memory_used_bytes", **gpu0) == 10 * gib
    assert _value(series, "swapd_gpu_memory_free_bytes", **gpu0) == 70 * gib
    assert _value(series, "swapd_gpu_memory_other_bytes", **gpu0) == gib
    assert _value(series, "swapd_gpu_utilization_percent", **gpu0) == 42
    assert _value(series, "swapd_gpu_utilization_percent", gpu="1", name="NVIDIA H100") is None
    assert _value(series, "swapd_model_gpu_memory_bytes", model="a", gpu="0") == 9 * gib
    assert _value(series, "swapd_model_gpu_memory_bytes", model="b", gpu="0") is None
    assert _value(series, "swapd_model_gpu_memory_planned_bytes", model="b", gpu="0") == gib
    assert "not-configured" not in _label_values(series, "model")


def test_metrics_requests_for_unconfigured_models_and_statuses_stay_bounded(
    metrics: Metrics,
) -> None:
    metrics.request_finished(_record())
    before = set(_series(metrics))
    metrics.request_finished(_record(model="ghost"))
    metrics.request_finished(_record(model=""))
    for i in range(50):
        metrics.request_finished(_record(endpoint=f"/upstream/a/path/{i}"))
        metrics.request_finished(_record(endpoint=f"/weird/{i}"))
    metrics.request_finished(_record(status=999))
    metrics.request_finished(_record(status=0))
    series = _series(metrics)
    new = {
        frozenset(pair for pair in labels if pair[0] != "le")
        for name, labels in series
        if (name, labels) not in before
    }
    assert _label_values(series, "endpoint") == {CHAT, "/upstream", "other"}
    assert _label_values(series, "status") == {"200", "other"}
    assert "ghost" not in _label_values(series, "model")
    # 100 odd paths and 2 odd statuses: two new endpoint labels, one new status label.
    assert new == {
        frozenset({("model", "a"), ("endpoint", "/upstream")}),
        frozenset({("model", "a"), ("endpoint", "/upstream"), ("status", "200")}),
        frozenset({("model", "a"), ("endpoint", "other")}),
        frozenset({("model", "a"), ("endpoint", "other"), ("status", "200")}),
        frozenset({("model", "a"), ("endpoint", CHAT), ("status", "other")}),
    }


def test_metrics_queue_wait_hook(metrics: Metrics) -> None:
    metrics.queue_wait("a", 2.0)
    metrics.queue_wait("ghost", 2.0)
    series = _series(metrics)
    assert _value(series, "swapd_queue_wait_seconds_sum", model="a") == 2.0
    assert "ghost" not in _label_values(series, "model")
