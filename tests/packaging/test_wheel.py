"""`pip install .` from a clean checkout gives a working swapd, schema and UI included.

The wheel is built from a copy of the checkout's files as git sees them (tracked plus new,
unignored ones: no stale build/ or egg-info), installed with its dependencies into a fresh
virtual environment, and run from outside the repository, so nothing can come from the
checkout. Takes about 10 s (the dependencies come from pip's cache or the index).
"""

from __future__ import annotations

import contextlib
import email.parser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swapd import __version__
from tests.e2e.conftest import make_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schema" / "swapd.schema.json"
STATIC = REPO / "swapd" / "web" / "static"
PIP_TIMEOUT_S = 300
_IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache"
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path
    """Outside the repository: the cwd of every command, so no import finds the checkout."""

    @property
    def swapd(self) -> Path:
        return self.venv / "bin" / "swapd"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(
    args: list[str | Path], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _checked(args: list[str | Path], cwd: Path, timeout: float) -> None:
    result = _run(args, cwd, timeout)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"


def _clean_checkout(dest: Path) -> None:
    """The files a fresh clone (plus uncommitted work) has; symlinks stay links."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(REPO, dest, symlinks=True, ignore=_IGNORED)
        return
    for name in sorted({n for n in listed.decode().split("\0") if n}):
        source = REPO / name
        if not (source.exists() or source.is_symlink()):
            continue  # deleted in the work tree, not yet in the index
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "checkout"
    _clean_checkout(source)
    dist = work / "dist"
    _checked(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source],
        work,
        PIP_TIMEOUT_S,
    )
    wheels = sorted(dist.glob("swapd-*.whl"))
    assert len(wheels) == 1, wheels
    venv = work / "venv"
    _checked([sys.executable, "-m", "venv", venv], work, 120)
    _checked(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", wheels[0]], work, PIP_TIMEOUT_S
    )
    return Installed(wheel=wheels[0], venv=venv, workdir=work)


def test_wheel_holds_the_schema_the_ui_and_the_entry_point(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        # The schema is a symlink in the checkout; the wheel must hold the file itself.
        assert wheel.read("swapd/_schema/swapd.schema.json") == SCHEMA.read_bytes()
        assert "swapd/py.typed" in names
        if STATIC.is_dir():
            static = [p for p in STATIC.rglob("*") if p.is_file()]
            assert any(p.name == "index.html" for p in static)
            for path in static:
                member = "swapd/" + path.relative_to(REPO / "swapd").as_posix()
                assert wheel.read(member) == path.read_bytes(), member
        dist_info = f"swapd-{__version__}.dist-info"
        metadata = email.parser.Parser().parsestr(wheel.read(f"{dist_info}/METADATA").decode())
        assert metadata["Version"] == __version__
        entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode()
        assert "swapd = swapd.cli:main" in entry_points
    assert not [n for n in names if n.startswith(("tests/", "bench/", "scripts/"))]
    assert not [n for n in names if n.endswith(".pyc")]


def test_installed_swapd_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    result = _run(
        [installed.python, "-c", "import swapd; print(swapd.__file__)"], installed.workdir
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.venv)


def test_installed_swapd_reports_its_version(installed: Installed) -> None:
    result = _run([installed.swapd, "--version"], installed.workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"swapd {__version__}"


@pytest.mark.parametrize("config", ["examples/single-model.yaml", "docker/config.yaml"])
def test_installed_swapd_checks_a_config(installed: Installed, config: str) -> None:
    result = _run([installed.swapd, "--check", "-config", REPO / config], installed.workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok (1 models)" in result.stdout


def test_installed_swapd_validates_with_the_packaged_schema(installed: Installed) -> None:
    bad = installed.workdir / "bad.yaml"
    bad.write_text("modles:\n  a:\n    cmd: llama-server --port ${PORT}\n")
    result = _run([installed.swapd, "--check", "-config", bad], installed.workdir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "did you mean 'models'" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, body: object = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@contextlib.contextmanager
def _daemon(
    installed: Installed, config: Path, **env: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """swapd from the wheel, answering /health at the URL it yields with."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = [installed.swapd, "-config", config, "-listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [str(a) for a in args],
        cwd=installed.workdir,
        env={**_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"swapd exited with {proc.returncode}"
            with contextlib.suppress(OSError):
                if _get(base + "/health") == (200, "OK"):
                    break
            assert time.monotonic() < deadline, "swapd did not answer /health"
            time.sleep(0.05)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        output, _ = proc.communicate(timeout=10)
        print(output)


def test_installed_swapd_serves_health_and_the_ui(installed: Installed) -> None:
    with _daemon(installed, REPO / "examples" / "single-model.yaml") as (proc, base):
        if (STATIC / "index.html").exists():
            status, body = _get(base + "/ui")
            assert status == 200
            assert "<html" in body.lower()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


@pytest.mark.real_llama
def test_installed_swapd_runs_the_images_config_on_a_real_llama_server(
    installed: Installed, llama_server_bin: Path, tmp_path: Path
) -> None:
    """The image without Docker: the wheel's swapd on docker/config.yaml, with the image's
    paths pointed at a real llama-server (a CPU build, as in the CPU image) and a tiny model."""
    make_tiny_gguf(tmp_path / "model.gguf", seed=1)
    text = (REPO / "docker" / "config.yaml").read_text()
    assert "/app/llama-server " in text
    assert "/models/model.gguf" in text
    text = text.replace("/app/llama-server ", f"{llama_server_bin} ")
    config = tmp_path / "config.yaml"
    config.write_text(text.replace("/models/model.gguf", str(tmp_path / "model.gguf")))
    # What the image sets (Dockerfile ENV): llama-server's own default would be 0.0.0.0.
    image_env = {"LLAMA_ARG_HOST": "127.0.0.1", "XDG_STATE_HOME": str(tmp_path / "state")}
    with _daemon(installed, config, **image_env) as (proc, base):
        request = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Hello"}],
            "max_tokens": 4,
        }
        status, body = _get(base + "/v1/chat/completions", request)
        assert status == 200, body
        answer = json.loads(body)
        assert answer["choices"][0]["message"]["role"] == "assistant"
        status, body = _get(base + "/running")
        assert status == 200
        assert [(m["model"], m["state"]) for m in json.loads(body)["running"]] == [
            ("default", "ready")
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
