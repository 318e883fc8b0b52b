"""End-to-end tier: a real llama-server binary serving real tiny GGUF models.

Fixtures
--------
* ``llama_server_bin`` (session) -> Path of the llama-server binary: ``$LLAMA_SERVER_BIN``, else
  the cached build of ``scripts/ensure_llama_server.sh`` (never built from here). Missing:
  skip, or fail when ``SWAPD_REQUIRE_REAL=1`` (``make test`` and CI set it).
* ``tiny_models`` (session) -> directory holding ``tiny-a.gguf``, ``tiny-b.gguf`` and
  ``tiny-c.gguf``: three seeds of the default tiny model (355 kB, ready in ~20 ms).
* ``slow_model`` (session) -> Path of a 53 MB model (~350 tokens/s on 2 cores) for tests
  that need requests to overlap: concurrency, queueing, cancellation.
* ``llama_servers`` (function) -> ``start(model, extra=()) -> LlamaServer``; every server it
  started is stopped (SIGTERM, bounded wait, SIGKILL) at teardown.

Helpers importable as ``from tests.e2e.conftest import ...``: ``free_port``,
``llama_server_cmd`` (flags with a literal ``${PORT}`` for swapd configs), ``with_port``,
``make_tiny_gguf``, ``start_llama_server`` and ``LlamaServer``.

Every test under tests/e2e is marked ``real_llama``.
"""

from __future__ import annotations

import ctypes
import functools
import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure_llama_server.sh"
GENERATOR_SCRIPT = REPO_ROOT / "scripts" / "make_tiny_gguf.py"

PORT_PLACEHOLDER = "${PORT}"
# -t 1: two servers do not fight over 2 cores. --sse-ping-interval 1: SIGTERM with an open
# stream exits within ~1 s instead of 30 s. -c is the total context: 512 per slot with -np 2.
LLAMA_SERVER_FLAGS: tuple[str, ...] = (
    "-np", "2", "-t", "1", "-c", "1024", "--metrics", "--embeddings", "--pooling", "mean",
    "--no-webui", "--sse-ping-interval", "1",
)  # fmt: skip
TINY_MODEL_SEEDS = {"tiny-a": 1, "tiny-b": 2, "tiny-c": 3}
SLOW_MODEL_SHAPE = {"n_embd": 512, "n_layer": 8, "n_head": 8, "n_ff": 1408, "n_ctx": 2048}
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the whole session's items: mark only ours.
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.real_llama)


def require_real() -> bool:
    """True when missing real parts must fail the run instead of skipping (make test, CI)."""
    return os.environ.get("SWAPD_REQUIRE_REAL", "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    if require_real():
        pytest.fail(f"{reason} (SWAPD_REQUIRE_REAL is set, so this is an error)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port that was free a moment ago (tiny race: the caller binds it next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def llama_server_cmd(
    bin_path: Path | str, model: Path | str, extra: Sequence[str] = ()
) -> list[str]:
    """The standard test argv, with ``${PORT}`` left literal for swapd to fill in."""
    return [
        str(bin_path), "-m", str(model), "--host", "127.0.0.1", "--port", PORT_PLACEHOLDER,
        *LLAMA_SERVER_FLAGS, *extra,
    ]  # fmt: skip


def with_port(cmd: Sequence[str], port: int) -> list[str]:
    return [arg.replace(PORT_PLACEHOLDER, str(port)) for arg in cmd]


@functools.cache
def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_tiny_gguf", GENERATOR_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


def make_tiny_gguf(out: Path, *, seed: int = 0, **shape: int | bool) -> Path:
    """Write a tiny model in-process (same result as scripts/make_tiny_gguf.py)."""
    gen = _generator()
    gen.write_model(out, gen.Config(seed=seed, **shape))
    return out


def _die_with_parent() -> None:
    # Runs in the child before exec: if the test process dies, so does the server.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class LlamaServer:
    """A llama-server child started directly (no swapd)."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health_status(self) -> int | None:
        """HTTP status of GET /health, or None while nothing listens."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status
        except OSError:
            return None
        finally:
            conn.close()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll /health until 200 (refused and 503 mean "not yet"); seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"llama-server exited with {self.proc.returncode} before ready "
                    f"(1: bad model or port; 132: binary built for another CPU)\n{self.log()}"
                )
            if self.health_status() == 200:
                return time.monotonic() - start
            time.sleep(0.01)  # poll interval, bounded by the deadline
        raise AssertionError(f"llama-server not ready within {timeout} s\n{self.log()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code (-9 if killed).

        An in-flight request keeps llama-server alive after SIGTERM (a stream until the next
        SSE ping, a plain request until the client hangs up), hence the bounded wait.
        """
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout)


def start_llama_server(
    bin_path: Path,
    model: Path,
    log_dir: Path,
    extra: Sequence[str] = (),
    *,
    wait: bool = True,
) -> LlamaServer:
    """Spawn llama-server on a free port with the standard flags; by default wait for ready."""
    port = free_port()
    log_path = log_dir / f"llama-server-{port}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            with_port(llama_server_cmd(bin_path, model, extra), port),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    server = LlamaServer(proc=proc, port=port, log_path=log_path)
    if wait:
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
    return server


@pytest.fixture(scope="session")
def llama_server_bin() -> Path:
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"LLAMA_SERVER_BIN={env} is not an executable file", pytrace=False)
        return path
    result = subprocess.run(
        ["bash", str(ENSURE_SCRIPT)],
        env={**os.environ, "ENSURE_LLAMA_SERVER_NO_BUILD": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        unavailable(
            "llama-server not built: run scripts/ensure_llama_server.sh or set LLAMA_SERVER_BIN"
        )
    return Path(lines[-1])


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-models")
    for name, seed in TINY_MODEL_SEEDS.items():
        make_tiny_gguf(directory / f"{name}.gguf", seed=seed)
    return directory


@pytest.fixture(scope="session")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("slow-model") / "slow.gguf", **SLOW_MODEL_SHAPE)


@pytest.fixture
def llama_servers(llama_server_bin: Path, tmp_path: Path) -> Iterator[Callable[..., LlamaServer]]:
    started: list[LlamaServer] = []

    def start(model: Path, extra: Sequence[str] = (), *, wait: bool = True) -> LlamaServer:
        server = start_llama_server(llama_server_bin, model, tmp_path, extra, wait=wait)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
