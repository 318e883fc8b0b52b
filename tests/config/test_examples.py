"""The shipped example configs load cleanly and validate against the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from swapd.config.load import (
    UNSUPPORTED_FILTERS,
    UNSUPPORTED_MODEL,
    UNSUPPORTED_TOP_LEVEL,
    load_config,
)
from swapd.config.schema import load_schema

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
# The API keys examples/api-keys.yaml reads from the environment.
EXAMPLE_KEYS = ("SWAPD_API_KEY", "SWAPD_CI_KEY")


def _all_free(port: int) -> bool:
    return True


@pytest.fixture(autouse=True)
def _demo_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMA_SERVER_BIN", "/opt/llama.cpp/bin/llama-server")
    monkeypatch.setenv("SWAPD_DEMO_DIR", "/tmp/swapd-demo")
    for name in EXAMPLE_KEYS:
        monkeypatch.setenv(name, f"key-of-{name.lower()}")


def test_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "single-model.yaml",
        "llama-swap-migration.yaml",
        "demo.yaml",
        "groups.yaml",
        "matrix.yaml",
        "multi-gpu.yaml",
        "serial.yaml",
        "api-keys.yaml",
    } <= names


@pytest.mark.parametrize("path", [REPO / "config.example.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_example_loads_without_problems_or_warnings(path: Path) -> None:
    config = load_config(path, port_free=_all_free)
    assert config.models
    assert config.warnings == ()
    assert config.source == path


@pytest.mark.parametrize("path", [REPO / "config.example.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_example_validates_against_the_schema(path: Path) -> None:
    text = path.read_text()
    for name in ("LLAMA_SERVER_BIN", "SWAPD_DEMO_DIR", *EXAMPLE_KEYS):
        text = text.replace("${env." + name + "}", "/x")
    errors = list(Draft202012Validator(load_schema()).iter_errors(yaml.safe_load(text)))
    assert errors == []


def test_config_example_uses_every_supported_key() -> None:
    schema = load_schema()
    doc = yaml.safe_load((REPO / "config.example.yaml").read_text())
    text = (REPO / "config.example.yaml").read_text()
    ignored = "Not implemented by swapd yet"
    # One file cannot use a legacy spelling beside its replacement (routing), which it shows.
    legacy = "legacy spelling"
    top = {
        k
        for k, v in schema["properties"].items()
        if ignored not in v["description"] and legacy not in v["description"]
    }
    assert top <= set(doc)
    model_keys = {
        k
        for k, v in schema["$defs"]["model"]["properties"].items()
        if ignored not in v["description"]
    }
    used = set().union(*(set(m) for m in doc["models"].values()))
    assert model_keys <= used
    for key in schema["$defs"]["filters"]["properties"]:
        assert key in text, f"filters.{key} is not documented"


def test_config_example_lists_every_ignored_llama_swap_key() -> None:
    text = (REPO / "config.example.yaml").read_text()
    for key in (*UNSUPPORTED_TOP_LEVEL, *UNSUPPORTED_MODEL, *UNSUPPORTED_FILTERS):
        assert f" {key}" in text, key


def test_demo_uses_the_environment_and_real_llama_server_flags() -> None:
    config = load_config(REPO / "examples" / "demo.yaml", port_free=_all_free)
    assert set(config.models) >= {"tiny-a", "tiny-b", "tiny-c"}
    for model in config.models.values():
        assert model.argv[0] == "/opt/llama.cpp/bin/llama-server"
        assert model.argv[2].startswith("/tmp/swapd-demo/tiny-")
        assert "--no-webui" in model.argv
        assert model.aliases
    assert any(m.ttl_s > 0 for m in config.models.values())
    assert any("--embeddings" in m.argv for m in config.models.values())


def test_multi_gpu_example_places_models_as_its_comments_say() -> None:
    config = load_config(REPO / "examples" / "multi-gpu.yaml", port_free=_all_free)
    models = config.models
    assert (models["llama-70b"].gpus, models["llama-70b"].gpu_split) == ((0, 1), True)
    assert models["llama-70b"].vram_bytes == 40 * 1024**3
    for mid in ("chat-8b", "coder-8b"):
        assert (models[mid].gpus, models[mid].gpu_split) == ((0, 1), False)
        assert models[mid].vram_bytes is not None
    assert (models["embed"].gpus, models["embed"].vram_bytes) == ((1,), None)
    assert config.gpu.headroom_bytes == 512 * 1024**2
    assert config.routing.planner == "matrix"
