"""Schema validation: every problem at once, key paths, lines, did-you-mean, descriptions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swapd.config import schema as schema_module
from swapd.config.load import UNSUPPORTED_FILTERS, UNSUPPORTED_MODEL, UNSUPPORTED_TOP_LEVEL
from swapd.config.problems import KeyPath
from swapd.config.schema import load_schema, schema_problems
from tests.config.helpers import load, problems

REPO = Path(__file__).resolve().parents[2]


def test_schema_is_found_and_is_the_repository_copy() -> None:
    on_disk = json.loads((REPO / "schema" / "swapd.schema.json").read_text())
    assert schema_module._packaged().is_file(), "swapd/_schema/swapd.schema.json is missing"
    assert load_schema() == on_disk
    assert on_disk["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_falls_back_to_the_repository_when_not_packaged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(schema_module, "_packaged", lambda: tmp_path / "not-packaged.json")
    schema_module._schema_text.cache_clear()
    try:
        assert load_schema()["title"] == "swapd configuration"
    finally:
        schema_module._schema_text.cache_clear()


def _properties(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{where}.{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _properties(sub, f"{where}[{index}]")


def test_schema_every_property_has_a_description() -> None:
    found = list(_properties(load_schema(), "#"))
    assert len(found) > 40
    missing = [where for where, sub in found if not str(sub.get("description", "")).strip()]
    assert missing == []


def test_schema_objects_forbid_unknown_keys() -> None:
    schema = load_schema()
    for node in (schema, schema["$defs"]["model"], schema["$defs"]["filters"]):
        assert node["additionalProperties"] is False
    hooks = schema["properties"]["hooks"]
    assert hooks["additionalProperties"] is False
    assert hooks["properties"]["on_startup"]["additionalProperties"] is False


def test_schema_lists_every_ignored_llama_swap_key_as_not_implemented() -> None:
    schema = load_schema()
    levels = [
        (UNSUPPORTED_TOP_LEVEL, schema["properties"]),
        (UNSUPPORTED_MODEL, schema["$defs"]["model"]["properties"]),
        (UNSUPPORTED_FILTERS, schema["$defs"]["filters"]["properties"]),
    ]
    for keys, properties in levels:
        for key in keys:
            assert "Not implemented by swapd yet" in properties[key]["description"], key


def test_schema_unknown_keys_get_did_you_mean_at_every_level() -> None:
    found = problems(
        """
        startport: 6000
        models:
          a:
            cmd: llama-server --port ${PORT}
            chekEndpoint: /health
            filters:
              stripParam: x
        hooks:
          onstartup: {}
        colour: blue
        """
    )
    assert found == [
        "(top level) (line 2): unknown key 'startport' (did you mean 'startPort'?)",
        "models.a (line 6): unknown key 'chekEndpoint' (did you mean 'checkEndpoint'?)",
        "models.a.filters (line 8): unknown key 'stripParam' (did you mean 'stripParams'?)",
        "hooks (line 10): unknown key 'onstartup' (did you mean 'on_startup'?)",
        "(top level) (line 11): unknown key 'colour'",
    ]


def test_schema_reports_all_problems_at_once_with_paths_and_lines() -> None:
    found = problems(
        """
        healthCheckTimeout: 0
        logLevel: verbose
        startPort: 70000
        unloadTimeout: -1
        apiKeys: ["", "has space"]
        models:
          a:
            ttl: soon
          b:
            cmd: llama-server --port ${PORT}
            aliases: x
            unlisted: "yes"
            concurrencyLimit: -2
        """
    )
    assert found == [
        "healthCheckTimeout (line 2): must be at least 1, got 0",
        'logLevel (line 3): "verbose" is not one of "debug", "info", "warn", "error"',
        "startPort (line 4): must be at most 65535, got 70000",
        "unloadTimeout (line 5): must be at least 0, got -1",
        "apiKeys[0] (line 6): must not be empty",
        'apiKeys[1] (line 6): "has space" must not contain spaces',
        "models.a (line 8): missing required key 'cmd'",
        'models.a.ttl (line 9): expected an integer, got a string ("soon")',
        'models.b.aliases (line 12): expected a list, got a string ("x")',
        'models.b.unlisted (line 13): expected a boolean, got a string ("yes")',
        "models.b.concurrencyLimit (line 14): must be at least 0, got -2",
    ]


def test_schema_problems_api_renders_messages() -> None:
    doc = {"models": {"a": {"cmd": "x", "ttl": "soon"}}, "extra": 1}
    marks: dict[KeyPath, int] = {("extra",): 3, ("models", "a", "ttl"): 7}
    assert schema_problems(doc, marks) == [
        "(top level) (line 3): unknown key 'extra'",
        'models.a.ttl (line 7): expected an integer, got a string ("soon")',
    ]


def test_schema_model_must_be_a_mapping() -> None:
    assert problems("models:\n  a: llama-server\n") == [
        'models.a (line 2): expected a mapping, got a string ("llama-server")'
    ]


def test_schema_unsupported_llama_swap_keys_are_accepted_with_warnings() -> None:
    config = load(
        """
        logToStdout: both
        peers:
          p: {proxy: "http://10.0.0.2:8080", models: [b]}
        models:
          a:
            cmd: llama-server --port ${PORT}
            timeouts: {connect: 5}
            capabilities: {tools: true}
            filters:
              setParamsByID: {"a:hot": {temperature: 1.0}}
        """
    )
    ignored = "llama-swap setting not implemented by swapd yet; ignored"
    assert config.warnings == (
        f"logToStdout (line 2): {ignored}",
        f"peers (line 3): {ignored}",
        f"models.a.timeouts (line 8): {ignored}",
        f"models.a.capabilities (line 9): {ignored}",
        f"models.a.filters.setParamsByID (line 11): {ignored}",
    )
    assert set(config.models) == {"a"}
