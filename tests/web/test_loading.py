"""sendLoadingState: progress chunks while a streaming chat request waits, then the answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from swapd.config.load import load_config_text
from swapd.config.model import Config
from swapd.core.state import Lease, ModelSnapshot, ModelState
from swapd.errors import ConfigError, ModelUnavailable
from swapd.web import loading
from swapd.web.context import CONTEXT

from .conftest import MakeClient, spec
from .fake_router import FakeRouter, FakeUpstream

Client = TestClient[Any, Any]
CHAT = "/v1/chat/completions"
SSE = {"X-Fake-Mode": "sse"}
ANSWER = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
DONE = b"data: [DONE]\n\n"


def _config(**kw: Any) -> Config:
    models = [
        spec("llama", aliases=("l",), send_loading_state=True),
        spec("quiet"),
        spec("org"),
    ]
    return Config(models={m.id: m for m in models}, **kw)


def _snap(model: str, state: ModelState, in_flight: int = 0, queued: int = 0) -> ModelSnapshot:
    return ModelSnapshot(model=model, state=state, in_flight=in_flight, queued=queued)


@pytest.fixture
async def client(make_client: MakeClient, router: FakeRouter) -> Client:
    router.snapshots = {
        "llama": _snap("llama", ModelState.STOPPED, queued=1),
        "quiet": _snap("quiet", ModelState.STOPPED),
        "org": _snap("org", ModelState.STOPPED),
    }
    return await make_client(_config())


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "GRACE_S", 0.02)
    monkeypatch.setattr(loading, "MIN_GAP_S", 0.01)


async def _event(resp: ClientResponse) -> str:
    """The data of the next event; EOFError at the end of the stream."""
    data: list[str] = []
    async with asyncio.timeout(5):
        while True:
            line = await resp.content.readline()
            if not line:
                if data:
                    return "\n".join(data)
                raise EOFError
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    return "\n".join(data)
                continue
            assert line.startswith(b"data:"), line
            data.append(line[5:].strip().decode())


async def _rest(resp: ClientResponse) -> list[str]:
    events = []
    while True:
        try:
            events.append(await _event(resp))
        except EOFError:
            return events


def _reasoning(event: str) -> str | None:
    if event == "[DONE]":
        return None
    delta = json.loads(event)["choices"][0]["delta"]
    text = delta.get("reasoning_content")
    return text if isinstance(text, str) else None


async def _start(client: Client, router: FakeRouter, **body: Any) -> ClientResponse:
    router.gate = asyncio.Event()
    payload = {"model": "l", "stream": True, "messages": [], **body}
    resp = await client.post(CHAT, json=payload, headers=SSE)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    return resp


async def _records(client: Client) -> list[dict[str, Any]]:
    async with asyncio.timeout(5):
        while True:
            records = client.app[CONTEXT].obs.activity.recent()
            if records:
                return [r.as_json() for r in records]
            await asyncio.sleep(0.01)


async def test_loading_progress_then_the_answer_in_one_stream(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await _start(client, router)
    first = json.loads(await _event(resp))
    assert first["object"] == "chat.completion.chunk"
    assert first["model"] == "l"  # the name the client used
    assert first["choices"][0]["delta"]["role"] == "assistant"
    text = first["choices"][0]["delta"]["reasoning_content"]
    assert text.startswith(loading.BANNER + "\nswapd loading model: llama\n")
    assert "] queued" in text
    assert first["choices"][0]["finish_reason"] is None

    # The swap starts: a swap notice wakes the writer, which reads the new state.
    router.snapshots = {
        **router.snapshots,
        "llama": _snap("llama", ModelState.STARTING, queued=1),
        "org": _snap("org", ModelState.STOPPING),
    }
    client.app[CONTEXT].obs.bus.publish(
        "swap", {"model": "llama", "phase": "start", "evict": ["org"], "detail": ""}
    )
    assert "] starting llama (evicting org)\n" in (_reasoning(await _event(resp)) or "")

    router.gate.set()
    done = _reasoning(await _event(resp)) or ""
    assert done.startswith("Done! (")
    assert done.endswith(f"s)\n{loading.BANNER}\n\n")
    async with asyncio.timeout(5):
        await upstream.started.wait()
    upstream.send(ANSWER)
    upstream.send(DONE)
    upstream.end()
    rest = await _rest(resp)
    assert rest == [ANSWER[6:-2].decode(), "[DONE]"]
    await router.wait_released(1)
    # The upstream got the request as the client sent it.
    assert json.loads(upstream.seen[0].body)["stream"] is True

    (record,) = await _records(client)
    assert record["status"] == 200
    assert record["streamed"] is True
    assert record["queue_wait_s"] > 0
    # The first byte is the model's, not the first progress chunk.
    assert record["ttfb_s"] >= record["queue_wait_s"]


async def test_loading_a_grant_within_the_grace_period_sends_no_progress(
    client: Client, router: FakeRouter, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "GRACE_S", 5.0)
    resp = await client.post(CHAT, json={"model": "llama", "stream": True}, headers=SSE)
    assert resp.status == 200
    upstream.send(ANSWER + DONE)
    upstream.end()
    assert await resp.content.read() == ANSWER + DONE
    await router.wait_released(1)


@pytest.mark.parametrize(
    ("body", "path", "ready"),
    [
        ({"model": "llama", "stream": True}, CHAT, True),  # ready: no load to report
        ({"model": "quiet", "stream": True}, CHAT, False),  # sendLoadingState off
        ({"model": "llama"}, CHAT, False),  # not streaming
        ({"model": "llama", "stream": "yes"}, CHAT, False),
        ({"model": "llama", "stream": True}, "/v1/completions", False),  # not chat
    ],
)
async def test_loading_applies_only_to_streaming_chat_for_models_not_ready(
    client: Client,
    router: FakeRouter,
    upstream: FakeUpstream,
    body: dict[str, Any],
    path: str,
    ready: bool,
) -> None:
    if ready:
        router.snapshots = {**router.snapshots, "llama": _snap("llama", ModelState.READY)}
    router.gate = asyncio.Event()
    request = asyncio.ensure_future(client.post(path, json=body, headers=SSE))
    async with asyncio.timeout(5):
        await router.waiting.wait()
    await asyncio.sleep(0.1)  # well past the grace period
    assert not request.done()  # nothing was answered while waiting
    router.gate.set()
    resp = await request
    upstream.send(ANSWER)
    upstream.end()
    assert await resp.content.read() == ANSWER
    await router.wait_released(1)


def test_loading_config_default_is_off() -> None:
    config = load_config_text(
        "models:\n  a:\n    cmd: llama-server --port 9\n    proxy: http://127.0.0.1:9\n"
    )
    assert config.send_loading_state is False
    assert config.models["a"].send_loading_state is False


def test_loading_config_global_and_per_model_override() -> None:
    text = """
sendLoadingState: true
models:
  a:
    cmd: llama-server --port 9
    proxy: http://127.0.0.1:9
  b:
    cmd: llama-server --port 9
    proxy: http://127.0.0.1:9
    sendLoadingState: false
  c:
    cmd: llama-server --port 9
    proxy: http://127.0.0.1:9
    sendLoadingState: ${on}
    macros:
      on: true
"""
    config = load_config_text(text)
    assert config.send_loading_state is True
    assert {m: s.send_loading_state for m, s in config.models.items()} == {
        "a": True,
        "b": False,
        "c": True,
    }
    assert not [w for w in config.warnings if "sendLoadingState" in w]


def test_loading_config_rejects_a_non_boolean() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text("sendLoadingState: yes please\nmodels: {}\n")
    assert "sendLoadingState" in str(info.value)


async def test_loading_error_after_the_200_is_an_sse_error_event(
    client: Client, router: FakeRouter
) -> None:
    resp = await _start(client, router)
    assert "swapd loading model" in (_reasoning(await _event(resp)) or "")
    router.error = ModelUnavailable("model 'llama' failed to start: exit code 1")
    router.gate.set()
    events = await _rest(resp)
    assert "Failed: model 'llama' failed to start" in (_reasoning(events[-3]) or "")
    assert json.loads(events[-2]) == {
        "error": {
            "message": "model 'llama' failed to start: exit code 1",
            "type": "server_error",
            "code": "model_unavailable",
            "param": None,
        }
    }
    assert events[-1] == "[DONE]"
    assert router.leases == []
    (record,) = await _records(client)
    assert (record["status"], record["streamed"]) == (503, True)
    assert record["error"] == "model 'llama' failed to start: exit code 1"


async def test_loading_error_before_any_progress_is_a_plain_json_error(
    client: Client, router: FakeRouter
) -> None:
    router.error = ModelUnavailable("no room")
    resp = await client.post(CHAT, json={"model": "llama", "stream": True})
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "model_unavailable"


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"X-Fake-Mode": "status", "X-Fake-Status": "500"}, 500, "HTTP 500 Internal Server Error"),
        ({}, 502, "a application/json body instead of an event stream"),
    ],
)
async def test_loading_upstream_that_does_not_stream_ends_with_an_error_event(
    client: Client,
    router: FakeRouter,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    router.gate = asyncio.Event()
    resp = await client.post(CHAT, json={"model": "llama", "stream": True}, headers=headers)
    assert resp.status == 200
    await _event(resp)
    router.gate.set()
    events = await _rest(resp)
    assert (_reasoning(events[-3]) or "").startswith("Done!")
    error = json.loads(events[-2])["error"]
    assert message in error["message"]
    assert error["code"] == "upstream_error"
    assert events[-1] == "[DONE]"
    await router.wait_released(1)
    (record,) = await _records(client)
    assert record["status"] == status


async def test_loading_upstream_json_error_is_passed_on_as_the_event(
    client: Client, router: FakeRouter, aiohttp_server: AiohttpServer
) -> None:
    error = {"code": 400, "message": "the request exceeds the context size", "type": "x"}

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": error}, status=400)

    app = web.Application()
    app.router.add_post(CHAT, refuse)
    router.upstream = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    resp = await _start(client, router)
    await _event(resp)
    router.gate.set()
    events = await _rest(resp)
    assert json.loads(events[-2]) == {"error": error}
    assert events[-1] == "[DONE]"
    await router.wait_released(1)
    (record,) = await _records(client)
    assert (record["status"], record["error"]) == (400, error["message"])


async def test_loading_upstream_breaking_off_ends_with_an_error_event(
    client: Client, router: FakeRouter, upstream: FakeUpstream
) -> None:
    resp = await _start(client, router)
    await _event(resp)
    router.gate.set()
    async with asyncio.timeout(5):
        await upstream.started.wait()
    upstream.send(ANSWER + b'data: {"choices":[{"ind')
    upstream.abort()
    events = await _rest(resp)
    assert events[-4] == ANSWER[6:-2].decode()
    assert events[-3] == '{"choices":[{"ind'  # what had been sent of the broken event
    error = json.loads(events[-2])["error"]
    assert "broke off" in error["message"]
    assert events[-1] == "[DONE]"
    await router.wait_released(1)
    (record,) = await _records(client)
    assert record["status"] == 502


async def test_loading_client_leaving_while_waiting_withdraws_the_request(
    client: Client, router: FakeRouter
) -> None:
    resp = await _start(client, router)
    await _event(resp)
    resp.close()
    async with asyncio.timeout(5):
        await router.withdrawn.wait()
    assert router.leases == []
    (record,) = await _records(client)
    assert record["status"] == 499


async def test_loading_a_grant_that_races_a_departure_is_released(router: FakeRouter) -> None:
    lease = Lease(req_id=1, model="llama", upstream="http://x")
    router.leases.append(lease)

    async def granted() -> Lease:
        return lease

    task = asyncio.get_running_loop().create_task(granted())
    await asyncio.sleep(0)
    assert task.done()
    loading._withdraw(router, task)
    await asyncio.sleep(0)
    assert router.released == [lease]


async def test_loading_ticks_and_shows_the_models_latest_output(
    client: Client, router: FakeRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "TICK_S", 0.05)
    output = ["main: loading model"]
    monkeypatch.setattr(router, "recent_output", lambda model, lines=20: output[-lines:])
    resp = await _start(client, router)
    first = _reasoning(await _event(resp)) or ""
    assert "llama> main: loading model" in first
    output.append("load_tensors: " + "x" * 1000)
    client.app[CONTEXT].obs.bus.publish("log", {"model": "llama", "line": "", "output": ""})
    texts = [_reasoning(await _event(resp)) or "" for _ in range(5)]
    shown = [t for t in texts if "llama> load_tensors" in t]
    assert len(shown) == 1  # a new output line once, not on every tick
    assert len(shown[0].split("llama> ")[1]) <= loading.OUTPUT_MAX + 1
    assert sum("] queued" in t for t in texts) >= 3  # the ticks repeat the status
    resp.close()
    async with asyncio.timeout(5):
        await router.withdrawn.wait()


async def test_loading_is_rate_limited_however_many_notices_arrive(
    client: Client, router: FakeRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loading, "MIN_GAP_S", 0.2)
    counter = iter(range(1_000_000))
    monkeypatch.setattr(router, "recent_output", lambda model, lines=20: [str(next(counter))])
    resp = await _start(client, router)
    await _event(resp)
    bus = client.app[CONTEXT].obs.bus
    for _ in range(30):
        bus.publish("log", {"model": "llama", "line": "", "output": ""})
        await asyncio.sleep(0.01)
    resp.close()
    async with asyncio.timeout(5):
        await router.withdrawn.wait()
    # 0.3 s of notices at most every 0.2 s: the opening chunk plus at most two more.
    assert next(counter) <= 4
