"""packaging/systemd/swapd.service: a unit systemd accepts, stopping swapd the way it expects."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from swapd.cli import main

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "packaging" / "systemd" / "swapd.service"
SWAPD = "/opt/swapd/bin/swapd"
CONFIG = "/etc/swapd/config.yaml"


def _read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order; systemd allows a key more than once."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{raw!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {raw!r}"
        assert not value.endswith("\\"), "keep lines unwrapped"
        current.append((key.strip(), value.strip()))
    return sections


UNIT_SECTIONS = _read_unit(UNIT.read_text())


def _one(section: str, key: str) -> str:
    values = [v for k, v in UNIT_SECTIONS[section] if k == key]
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def _all(section: str, key: str) -> list[str]:
    return [v for k, v in UNIT_SECTIONS[section] if k == key]


def test_runs_swapd_on_its_config() -> None:
    start = shlex.split(_one("Service", "ExecStart"))
    assert start[0] == SWAPD
    assert start[start.index("-config") + 1] == CONFIG
    assert "-listen" in start
    check = shlex.split(_one("Service", "ExecStartPre"))
    assert check == [SWAPD, "--check", "-config", CONFIG]


def test_swapd_accepts_the_units_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for key in ("ExecStartPre", "ExecStart"):
        args = shlex.split(_one("Service", key))[1:]
        args = [str(REPO / "examples" / "single-model.yaml") if a == CONFIG else a for a in args]
        if "--check" not in args:
            args.append("--check")
        assert main(args) == 0, capsys.readouterr().err


def test_stop_leaves_the_models_to_swapd() -> None:
    # SIGTERM to swapd only: it drains responses (10 s) and stops the models (unloadTimeout,
    # 10 s by default) before the rest of the group is killed.
    assert _one("Service", "KillMode") == "mixed"
    assert int(_one("Service", "TimeoutStopSec")) >= 30
    assert _one("Service", "Restart") == "on-failure"


def test_runs_as_an_unprivileged_user_with_gpu_access() -> None:
    assert _one("Service", "User") not in ("root", "0")
    assert _one("Service", "StateDirectory") == "swapd"
    assert "XDG_STATE_HOME=%S" in _all("Service", "Environment")
    assert _one("Service", "NoNewPrivileges") == "yes"
    # /dev/nvidia* must stay visible.
    assert _all("Service", "PrivateDevices") in ([], ["no"])
    assert _one("Install", "WantedBy") == "multi-user.target"


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify insists that ExecStart's program exists: stand one in for swapd.
    stub = tmp_path / "swapd"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "swapd.service"
    unit.write_text(UNIT.read_text().replace(SWAPD, str(stub)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
