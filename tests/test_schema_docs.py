"""The schema is usable by editors: every key has a description, and docs/configuration.md's
reference, generated from the schema, is up to date."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from swapd.config.schema import load_schema

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "scripts" / "gen_config_docs.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_docs", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_config_docs", module)
    spec.loader.exec_module(module)
    return module


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def _keys(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node that stands for a key or a value a user writes, with its path.

    Branches of anyOf/oneOf/allOf are walked for the keys inside them but are not keys
    themselves; $ref targets are reached through $defs.
    """
    if not isinstance(node, dict):
        return
    for name, sub in node.get("properties", {}).items():
        yield f"{path}.{name}" if path else name, sub
        yield from _keys(sub, f"{path}.{name}" if path else name)
    for pattern, sub in node.get("patternProperties", {}).items():
        yield f"{path}.<{pattern}>", sub
        yield from _keys(sub, f"{path}.<{pattern}>")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield f"{path}.<name>", extra
        yield from _keys(extra, f"{path}.<name>")
    items = node.get("items")
    if isinstance(items, dict):
        yield f"{path}[]", items
        yield from _keys(items, f"{path}[]")
    for word in ("anyOf", "oneOf", "allOf"):
        for i, branch in enumerate(node.get(word, [])):
            yield from _keys(branch, f"{path}({word} {i})")
    for name, sub in node.get("$defs", {}).items():
        yield f"$defs.{name}", sub
        yield from _keys(sub, f"$defs.{name}")


def _described(root: dict[str, Any], node: dict[str, Any]) -> bool:
    if isinstance(node.get("description"), str) and node["description"].strip():
        return True
    # A bare {"$ref": ...} shows its target's description in editors.
    ref = node.get("$ref")
    return isinstance(ref, str) and _described(root, _resolve(root, ref))


def test_walk_reaches_nested_keys() -> None:
    paths = {path for path, _ in _keys(load_schema(), "")}
    assert {
        "models",
        "apiKeys[]",
        "routing.scheduler.settings.fifo.priority.<name>",
        "$defs.model.gpus[]",
        "$defs.macros.<name>",
        "$defs.filters.setParams",
    } <= paths


def test_every_key_has_a_description() -> None:
    schema = load_schema()
    assert _described(schema, schema)
    missing = [path for path, node in _keys(schema, "") if not _described(schema, node)]
    assert not missing, "keys without a description:\n  " + "\n  ".join(missing)


def test_configuration_reference_is_up_to_date() -> None:
    gen = _generator()
    doc = REPO / "docs" / "configuration.md"
    current = doc.read_text(encoding="utf-8")
    wanted = gen.render_doc(current, load_schema())
    if wanted != current:
        pytest.fail("docs/configuration.md is out of date: run python scripts/gen_config_docs.py")


def test_generated_reference_is_deterministic_and_covers_every_property() -> None:
    gen = _generator()
    schema = load_schema()
    first = gen.render_reference(schema)
    assert first == gen.render_reference(load_schema())
    for name in schema["properties"]:
        assert f"`{name}`" in first
    for name in schema["$defs"]["model"]["properties"]:
        assert f"`models.<id>.{name}`" in first


def test_check_mode_reports_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = _generator()
    doc = tmp_path / "configuration.md"
    doc.write_text(
        f"# Hand-written\n\nprose\n\n{gen.BEGIN}\nstale\n{gen.END}\n\nafter\n",
        encoding="utf-8",
    )
    assert gen.main(["--check", "--doc", str(doc)]) == 1
    assert "run python scripts/gen_config_docs.py" in capsys.readouterr().err
    assert gen.main(["--doc", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Hand-written\n\nprose\n\n")
    assert text.endswith(f"{gen.END}\n\nafter\n")
    assert "stale" not in text
    assert gen.main(["--check", "--doc", str(doc)]) == 0


@pytest.mark.parametrize(
    "path",
    [REPO / "config.example.yaml", *sorted((REPO / "examples").glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_examples_name_the_schema_for_editors(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), f"{path.name}: first line should be {prefix}..."
    target = (path.parent / first.removeprefix(prefix)).resolve()
    assert target == (REPO / "schema" / "swapd.schema.json").resolve()
