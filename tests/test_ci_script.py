"""The CI entry point must stay a valid shell script that runs the README's test command."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_script_parses() -> None:
    result = subprocess.run(
        ["bash", "-n", str(ROOT / ".ci" / "run")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_ci_script_runs_make_test_last() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[-1] == "make test"
    assert "set -euo pipefail" in lines


def test_readme_names_the_ci_test_command() -> None:
    assert "make test" in (ROOT / "README.md").read_text()
