"""examples/ covers what a new user looks for, each file showing what its name promises.

tests/config/test_examples.py checks that every examples/*.yaml loads without problems or
warnings and validates against the schema; this checks what each one demonstrates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from swapd.config.load import load_config
from swapd.config.model import Config
from swapd.config.schema import load_schema

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
ENV = {
    "LLAMA_SERVER_BIN": "/opt/llama.cpp/build/bin/llama-server",
    "SWAPD_DEMO_DIR": "/tmp/swapd-demo",
    "SWAPD_API_KEY": "key-one",
    "SWAPD_CI_KEY": "key-two",
}


def _all_free(port: int) -> bool:
    return True


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    return load_config(EXAMPLES / name, port_free=_all_free)


def test_single_model(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("single-model.yaml", monkeypatch)
    assert len(config.models) == 1


def test_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("groups.yaml", monkeypatch)
    assert config.routing.planner == "group"
    assert len(config.routing.groups) >= 2


def test_matrix_with_evict_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("matrix.yaml", monkeypatch)
    assert config.routing.planner == "matrix"
    matrix = config.routing.matrix
    assert matrix is not None
    assert any(matrix.cost(model) > 1 for model in config.models)


def test_multi_gpu_with_vram_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("multi-gpu.yaml", monkeypatch)
    assert any(m.vram_bytes for m in config.models.values())
    assert {g for m in config.models.values() for g in m.gpus or ()} >= {0, 1}


def test_serial_scheduler(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("serial.yaml", monkeypatch)
    assert config.routing.scheduler == "serial"
    assert len(config.models) >= 2
    for model in config.models.values():
        # One request at a time: a second llama-server slot would only cost memory.
        assert model.argv[model.argv.index("-np") + 1] == "1"


def test_api_keys_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("api-keys.yaml", monkeypatch)
    assert config.api_keys == ("key-one", "key-two")
    doc = yaml.safe_load((EXAMPLES / "api-keys.yaml").read_text())
    assert all(key.startswith("${env.") for key in doc["apiKeys"]), "no literal keys in files"
    for model in config.models.values():
        assert model.argv[model.argv.index("--host") + 1] == "127.0.0.1"


def _swapd_only(props: dict[str, Any], key: str) -> bool:
    description = props.get(key, {}).get("description", "")
    return isinstance(description, str) and "swapd only" in description.lower()


def test_llama_swap_migration_uses_no_swapd_only_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config in llama-swap's syntax: nothing in it would stop llama-swap from running it."""
    config = _load("llama-swap-migration.yaml", monkeypatch)
    assert config.warnings == ()
    schema = load_schema()
    doc = yaml.safe_load((EXAMPLES / "llama-swap-migration.yaml").read_text())
    assert "routing" not in doc  # swapd's spelling; llama-swap has top-level groups/matrix
    for key in doc:
        assert not _swapd_only(schema["properties"], key), key
    model_props = schema["$defs"]["model"]["properties"]
    for model_id, model in doc["models"].items():
        for key in model:
            assert key not in ("vram", "gpus", "gpuSplit"), f"{model_id}.{key}"
            assert not _swapd_only(model_props, key), f"{model_id}.{key}"
