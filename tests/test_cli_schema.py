"""`swapd schema` prints the packaged JSON Schema and needs no config; the daemon's own
options still parse as before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from swapd.cli import main
from swapd.config.schema import load_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schema" / "swapd.schema.json"


def test_schema_prints_the_schema_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert json.loads(out) == load_schema()
    assert out == SCHEMA.read_text(encoding="utf-8")


def test_schema_rejects_extra_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["schema", "-config", "x.yaml"])
    assert exc.value.code == 2
    assert "swapd schema" in capsys.readouterr().err


def test_schema_subcommand_runs_as_a_process_without_config() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from swapd.cli import main; sys.exit(main())",
            "schema",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["title"] == "swapd configuration"


def test_config_is_still_required_without_schema(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "-config FILE is required" in capsys.readouterr().err


def test_check_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "# yaml-language-server: $schema=./swapd.schema.json\n"
        "vramPlanning: off\n"
        "models:\n  a:\n    cmd: server --port ${PORT}\n",
        encoding="utf-8",
    )
    assert main(["-config", str(config), "--check"]) == 0
    assert "ok (1 models)" in capsys.readouterr().out


def test_a_config_file_named_schema_is_not_the_subcommand(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "schema"
    config.write_text("models: {}\n", encoding="utf-8")
    assert main(["-config", str(config), "--check"]) == 0
    assert "ok (0 models)" in capsys.readouterr().out
