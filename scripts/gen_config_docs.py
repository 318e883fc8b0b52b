#!/usr/bin/env python3
"""Generate the key reference in docs/configuration.md from schema/swapd.schema.json.

    python scripts/gen_config_docs.py            # rewrite the reference between the markers
    python scripts/gen_config_docs.py --check    # exit 1 if docs/configuration.md is stale

Only the text between BEGIN and END below is generated; everything else in the file is
hand-written and left as it is. The output depends on the schema alone (schema order, no
timestamps), so the check is stable.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "schema" / "swapd.schema.json"
DOC = REPO / "docs" / "configuration.md"
BEGIN = "<!-- BEGIN GENERATED REFERENCE -->"
END = "<!-- END GENERATED REFERENCE -->"
HINT = "run python scripts/gen_config_docs.py"

# $defs documented in a section of their own; a key that refers to one links to it.
_SECTION_DEFS = {
    "model": "models",
    "groups": "groups",
    "matrix": "matrix",
    "filters": "filters",
    "macros": "macros",
}
_DEFAULT = re.compile(r"(?:^|(?<=\s))Default:?\s+(.+?)(?:\.\s|\.$|;\s|$)")


Row = tuple[str, str, str, str]  # key, type, default, description


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref.removeprefix("#/$defs/")
    return None


def _type(node: dict[str, Any]) -> str:
    """A short human spelling of the values a node accepts."""
    ref = _ref_name(node)
    if ref == "macroRef":
        return "${macro}"
    if ref == "size":
        return "size"
    if ref is not None:
        return "mapping"
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    parts: list[str] = []
    for key in ("anyOf", "oneOf"):
        for branch in node.get(key, []):
            parts.append(_type(branch))
    kinds = node.get("type")
    if kinds is not None:
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            parts.append(_kind(kind, node))
    if not parts:
        return "any"
    return " or ".join(dict.fromkeys(parts))


def _kind(kind: str, node: dict[str, Any]) -> str:
    words = {
        "object": "mapping",
        "array": "list",
        "string": "string",
        "boolean": "boolean",
        "integer": "integer",
        "number": "number",
        "null": "null",
    }
    text = words.get(kind, kind)
    if kind in ("integer", "number"):
        bounds = []
        if "minimum" in node:
            bounds.append(f"≥ {node['minimum']}")
        if "exclusiveMinimum" in node:
            bounds.append(f"> {node['exclusiveMinimum']}")
        if "maximum" in node:
            bounds.append(f"≤ {node['maximum']}")
        if bounds:
            text += " " + ", ".join(bounds)
    if kind == "array" and isinstance(node.get("items"), dict):
        item = _type(node["items"])
        text = f"list of ({item})" if " or " in item else f"list of {item}"
    return text


def _split_default(description: str) -> tuple[str, str]:
    """The description without its "Default ..." sentence, and that default."""
    matches = list(_DEFAULT.finditer(description))
    if not matches:
        return description, ""
    match = matches[-1]
    rest = (description[: match.start()] + description[match.end() :]).strip()
    return rest, match.group(1).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(node: dict[str, Any], path: str, required: bool = False) -> Iterator[Row]:
    description = node.get("description", "")
    ref = _ref_name(node)
    text, default = _split_default(description)
    if required:
        default = "required"
    if ref in _SECTION_DEFS:
        text = f"{text} See [{_SECTION_DEFS[ref]}](#{_SECTION_DEFS[ref]}).".strip()
    yield f"`{path}`", _type(node), _cell(default), _cell(text)
    if ref is not None:
        return
    yield from _children(node, path)


def _children(node: dict[str, Any], path: str) -> Iterator[Row]:
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        yield from _rows(sub, f"{path}.{name}" if path else name, name in required)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _rows(extra, f"{path}.<name>")
    items = node.get("items")
    if isinstance(items, dict) and ("properties" in items or "additionalProperties" in items):
        yield from _children(items, f"{path}[]")


def _table(rows: list[Row]) -> list[str]:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| {key} | {kind} | {default} | {text} |" for key, kind, default, text in rows]
    return lines


def _section(title: str, intro: str, rows: list[Row]) -> list[str]:
    return [f"### {title}", "", intro, "", *_table(rows), ""]


def render_reference(schema: dict[str, Any]) -> str:
    """The generated reference: one table per section, keys in schema order."""
    defs = schema["$defs"]
    props = schema["properties"]
    top: list[Row] = []
    required = set(schema.get("required", []))
    for name, sub in props.items():
        if name in ("hooks", "routing"):
            key, _type_text, default, text = next(_rows({"description": sub["description"]}, name))
            top.append((key, "mapping", default, f"{text} See [{name}](#{name})."))
        elif name == "models":
            text, default = _split_default(sub.get("description", ""))
            top.append(
                (
                    "`models`",
                    "mapping",
                    "required",
                    _cell(f"{text} See [models](#models)."),
                )
            )
        else:
            top.extend(_rows(sub, name, name in required))
    out: list[str] = []
    out += _section("Top-level keys", _cell(schema["description"]), top)
    out += _section(
        "hooks",
        _cell(props["hooks"]["description"]),
        list(_children(props["hooks"], "hooks")),
    )
    out += _section(
        "routing",
        _cell(props["routing"]["description"]),
        list(_children(props["routing"], "routing")),
    )
    out += _section(
        "models",
        _cell(f"`models.<id>`: {defs['model']['description']}"),
        list(_children(defs["model"], "models.<id>")),
    )
    out += _section(
        "filters",
        _cell(f"`models.<id>.filters`: {defs['filters']['description']}"),
        list(_children(defs["filters"], "models.<id>.filters")),
    )
    out += _section(
        "groups",
        _cell(
            f"{defs['groups']['description']} Written under `routing.router.settings.groups` "
            "or, llama-swap's legacy spelling, the top-level `groups`."
        ),
        list(_children(defs["group"], "groups.<id>")),
    )
    out += _section(
        "matrix",
        _cell(
            f"{defs['matrix']['description']} Written under `routing.router.settings.matrix` "
            "or, llama-swap's legacy spelling, the top-level `matrix`."
        ),
        list(_children(defs["matrix"], "matrix")),
    )
    out += _section(
        "macros",
        _cell(
            f"{defs['macros']['description']} Global (`macros`) or per model "
            "(`models.<id>.macros`); names are letters, digits, `_` and `-` (at most 63), "
            "and PID, PORT, MODEL_ID and GPUS are reserved."
        ),
        list(_children(defs["macros"], "macros")),
    )
    value_rows = [
        ("size", _cell(defs["size"]["description"])),
        ("${macro}", _cell(defs["macroRef"]["description"])),
    ]
    out += [
        "### Value types",
        "",
        "| type | meaning |",
        "|---|---|",
        *(f"| {kind} | {text} |" for kind, text in value_rows),
        "",
    ]
    return "\n".join(out).rstrip("\n") + "\n"


def render_doc(current: str, schema: dict[str, Any]) -> str:
    """`current` with the text between the markers replaced by the generated reference."""
    start = current.find(BEGIN)
    stop = current.find(END)
    if start < 0 or stop < start:
        raise ValueError(f"markers {BEGIN} ... {END} not found in order")
    head = current[: start + len(BEGIN)]
    return f"{head}\n\n{render_reference(schema)}\n{current[stop:]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help="the Markdown file to update")
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="the JSON Schema")
    args = parser.parse_args(argv)
    schema = json.loads(args.schema.read_text(encoding="utf-8"))
    current = args.doc.read_text(encoding="utf-8")
    try:
        wanted = render_doc(current, schema)
    except ValueError as exc:
        print(f"{args.doc}: {exc}", file=sys.stderr)
        return 1
    if wanted == current:
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            f"{args.doc} (current)",
            f"{args.doc} (from the schema)",
            n=1,
        )
        sys.stderr.writelines(list(diff)[:40])
        print(f"\n{args.doc} is out of date: {HINT}", file=sys.stderr)
        return 1
    args.doc.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
