"""examples/groups.yaml and examples/matrix.yaml run as shipped, on real llama-server children.

Only the model files are swapped for tiny generated ones (same file names, in a temporary
models-dir), so what is exercised is the example's own routing section.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.daemon import Daemon, start_daemon, wait_gone

pytestmark = pytest.mark.real_llama

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _localized(example: str, tmp: Path, tiny_models: Path) -> Path:
    text = (EXAMPLES / example).read_text()
    models_dir = tmp / "models"
    models_dir.mkdir()
    for name in set(re.findall(r"\$\{models-dir\}/([\w.-]+\.gguf)", text)):
        (models_dir / name).symlink_to(tiny_models / "tiny-a.gguf")
    text = text.replace("models-dir: /srv/models", f"models-dir: {models_dir}")
    # Tiny models: no GPU layers, a small context, one thread.
    text = re.sub(r"-c \d+", "-c 512", text).replace("-ngl 99", "-t 1 -np 1")
    path = tmp / example
    path.write_text(text)
    return path


@pytest.fixture
def daemon_for(
    tmp_path: Path, llama_server_bin: Path, tiny_models: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Daemon]]:
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(llama_server_bin))
    started: list[Daemon] = []

    def start(example: str) -> Daemon:
        d = start_daemon(_localized(example, tmp_path, tiny_models), tmp_path)
        started.append(d)
        return d

    yield start
    for d in started:
        assert d.stop() == 0, d.log()
        assert wait_gone(d.children_seen) == [], "a model process outlived swapd"


async def _use(session: aiohttp.ClientSession, url: str, model: str) -> set[str]:
    """Send one request for `model`; return the models running afterwards."""
    body: dict[str, object]
    if model in ("embed", "text-embedding-3-small", "bge-m3"):
        path, body = "/v1/embeddings", {"model": model, "input": "hi"}
    else:
        path, body = "/v1/completions", {"model": model, "prompt": "Hi", "max_tokens": 2}
    async with session.post(url + path, json=body) as r:
        assert r.status == 200, await r.text()
    async with session.get(url + "/running") as r:
        return {e["model"] for e in (await r.json())["running"] if e["state"] == "ready"}


async def test_e2e_groups_example(daemon_for: Callable[[str], Daemon]) -> None:
    d = daemon_for("groups.yaml")
    async with aiohttp.ClientSession() as s:
        assert await _use(s, d.url, "chat-8b") == {"chat-8b"}
        assert await _use(s, d.url, "embed") == {"chat-8b", "embed"}, "non-exclusive groups"
        assert await _use(s, d.url, "coder") == {"coder-14b", "embed"}, "swap inside chat"
        assert await _use(s, d.url, "big") == {"llama-70b"}, "(default) is exclusive"
        # symmetricExclusive: the exclusive 70B gives way to a non-exclusive group's model.
        assert await _use(s, d.url, "embed") == {"embed"}


async def test_e2e_matrix_example(daemon_for: Callable[[str], Daemon]) -> None:
    d = daemon_for("matrix.yaml")
    async with aiohttp.ClientSession() as s:
        assert await _use(s, d.url, "gpt-4o-mini") == {"qwen2.5-7b"}
        assert await _use(s, d.url, "bge-m3") == {"qwen2.5-7b", "bge-m3"}, "set everyday"
        # heavy = large & (embed | rerank): the chat model goes, the embedder stays.
        assert await _use(s, d.url, "gpt-4o") == {"qwen2.5-32b", "bge-m3"}
        assert await _use(s, d.url, "coder") == {"qwen2.5-coder-14b", "bge-m3"}
    assert "matrix: set=heavy" in d.log()
