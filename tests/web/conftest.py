from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from swapd.config.model import Config, Filters, ModelSpec
from swapd.web.server import make_app

from .fake_router import FakeRouter, FakeUpstream

MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


def spec(model_id: str, **kw: Any) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        cmd=f"llama-server -m {model_id}.gguf --port 5800",
        argv=("llama-server", "-m", f"{model_id}.gguf", "--port", "5800"),
        proxy="http://127.0.0.1:5800",
        **kw,
    )


def make_config(**kw: Any) -> Config:
    models = [
        spec("llama", aliases=("l", "gpt-4o"), name="Llama", description="small llama"),
        spec("org", aliases=()),
        spec("org/qwen:7b", aliases=("qwen",), metadata={"family": "qwen", "ctx": 4096}),
        spec("hidden", unlisted=True),
        spec("renamed", use_model_name="upstream-name"),
        spec(
            "filtered",
            filters=Filters(strip_params=("temperature", "model"), set_params={"top_k": 5}),
        ),
    ]
    return Config(models={m.id: m for m in models}, **kw)


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> FakeUpstream:
    fake = FakeUpstream()
    server = await aiohttp_server(fake.app())
    fake.url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
async def router(upstream: FakeUpstream) -> AsyncIterator[FakeRouter]:
    fake = FakeRouter(upstream.url)
    yield fake
    # Torn down after the clients (requested later), so every handler has finished by now.
    assert fake.problems == []
    assert fake.outstanding == [], "a lease was never released"


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, router: FakeRouter) -> MakeClient:
    async def make(config: Config | None = None, **client_kw: Any) -> TestClient[Any, Any]:
        app = make_app(config or make_config(), router)
        # aiohttp's TestServer always runs with handler_cancellation=True, as the daemon does.
        client = await aiohttp_client(app, **client_kw)
        assert client.server.runner is not None
        assert client.server.runner.server is not None
        assert client.server.runner.server.handler_cancellation
        return client

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client()
