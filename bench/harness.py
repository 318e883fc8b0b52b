"""Shared pieces of the benchmarks: tiny models, a direct llama-server, swapd, and wrk."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA_FLAGS = ("-np", "8", "-t", "1", "-c", "4096", "--no-webui", "--sse-ping-interval", "1")


def llama_server_bin() -> str:
    env = os.environ.get("LLAMA_SERVER_BIN")
    if env:
        return env
    out = subprocess.run(
        [str(ROOT / "scripts" / "ensure_llama_server.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_models(directory: Path, names: tuple[str, ...]) -> dict[str, Path]:
    paths = {}
    for seed, name in enumerate(names, start=1):
        path = directory / f"{name}.gguf"
        if not path.exists():
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "make_tiny_gguf.py"),
                    str(path),
                    "--seed",
                    str(seed),
                ],
                check=True,
            )
        paths[name] = path
    return paths


def wait_http_ok(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s")


@contextmanager
def running(argv: list[str], health_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http_ok(health_url)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def direct_llama_server(model: Path, workdir: Path) -> Iterator[str]:
    port = free_port()
    argv = [llama_server_bin(), "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    with running([*argv, *LLAMA_FLAGS], f"http://127.0.0.1:{port}/health", workdir / "direct.log"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def swapd(config_text: str, workdir: Path, log_level: str = "warn") -> Iterator[str]:
    config = workdir / "swapd.yaml"
    config.write_text(config_text)
    port = free_port()
    argv = [sys.executable, "-m", "swapd", "-config", str(config), "-listen", f"127.0.0.1:{port}"]
    argv += ["--log-level", log_level]
    with running(argv, f"http://127.0.0.1:{port}/health", workdir / "swapd.log"):
        yield f"http://127.0.0.1:{port}"


def model_entry(name: str, model: Path, extra: str = "") -> str:
    flags = " ".join(LLAMA_FLAGS)
    return (
        f"  {name}:\n    cmd: {llama_server_bin()} -m {model} --host 127.0.0.1 --port ${{PORT}} "
        f"{flags}\n{extra}"
    )


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, body: dict[str, object], *, connections: int, seconds: int) -> WrkResult:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        payload = json.dumps(json.dumps(body))  # a Lua string literal of the JSON body
        lua.write(
            'wrk.method = "POST"\n'
            f"wrk.body = {payload}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", lua.name, url]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    os.unlink(lua.name)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if not (p50 and p99 and rps):
        raise RuntimeError(f"cannot parse wrk output:\n{out}")
    n_errors = int(errors.group(1)) if errors else 0
    if socket_errors:
        n_errors += sum(int(g) for g in socket_errors.groups())
    return WrkResult(float(rps.group(1)), _ms(p50.group(1)), _ms(p99.group(1)), n_errors)


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}"
