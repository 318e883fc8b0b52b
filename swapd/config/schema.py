"""The JSON Schema (draft 2020-12) that is the structural truth of a swapd config.

`schema/swapd.schema.json` is the one copy; packaging exposes it as `swapd/_schema/`. Errors
are rewritten into short operator-facing messages, and unknown keys get a did-you-mean.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, cast

from jsonschema import Draft202012Validator, ValidationError

from swapd.config.macros import RESERVED
from swapd.config.problems import KeyPath, Report, did_you_mean

SCHEMA_NAME = "swapd.schema.json"
_REPO_SCHEMA = Path(__file__).resolve().parents[2] / "schema" / SCHEMA_NAME
_JSON_TYPES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "nothing (null)",
}
_WANTED = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "a boolean",
    "integer": "an integer",
    "number": "a number",
    "null": "null",
}


def load_schema() -> dict[str, Any]:
    """The packaged schema when installed, else the repository's copy."""
    return cast(dict[str, Any], json.loads(_schema_text()))


def schema_text() -> str:
    """The schema file's text, exactly as packaged (what `swapd schema` prints)."""
    return _schema_text()


def _packaged() -> Traversable:
    return resources.files("swapd") / "_schema" / SCHEMA_NAME


@functools.cache
def _schema_text() -> str:
    packaged = _packaged()
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return _REPO_SCHEMA.read_text(encoding="utf-8")


@functools.cache
def _validator() -> Draft202012Validator:
    schema = load_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_problems(doc: Any, marks: Mapping[KeyPath, int]) -> list[str]:
    """Every schema violation in `doc`, rendered as `<key path>[ (line N)]: <message>`."""
    report = Report(marks=marks)
    check_schema(doc, report)
    return report.rendered_problems()


def check_schema(doc: Any, report: Report) -> None:
    """Report schema violations and mark the offending paths bad for later stages."""
    errors = _validator().iter_errors(doc)
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        _report_error(error, report)


def _report_error(error: ValidationError, report: Report) -> None:
    path: KeyPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = _allowed_keys(schema)
        for key in _unexpected(error.instance, schema):
            report.mark_bad((*path, key))
            message = f"unknown key '{key}'{did_you_mean(key, allowed)}"
            report.problem(path, message, line=report.line_of((*path, key)))
        return
    if "propertyNames" in error.absolute_schema_path:
        name = str(error.instance)
        report.mark_bad((*path, name))
        hint = schema.get("x-name-hint")
        message = f"invalid name '{name}': {hint}" if name and hint else _name_message(name)
        report.problem(path, message, line=report.line_of((*path, name)))
        return
    if error.validator == "required":
        missing = _missing_key(error)
        report.mark_bad((*path, missing))
        report.problem(path, f"missing required key '{missing}'")
        return
    if path in report.bad:
        return  # one message per value is enough: "" is both empty and not matching a pattern
    report.mark_bad(path)
    report.problem(path, _message(error))


def _allowed_keys(schema: Mapping[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    return list(properties) if isinstance(properties, dict) else []


def _unexpected(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    allowed = set(_allowed_keys(schema))
    patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
    return [
        key for key in instance if key not in allowed and not any(p.search(key) for p in patterns)
    ]


def _missing_key(error: ValidationError) -> str:
    match = re.match(r"'([^']*)' is a required property", error.message)
    return match.group(1) if match else error.message


def _name_message(name: str) -> str:
    if name in RESERVED:
        return f"macro name '{name}' is reserved (swapd sets PID, PORT, MODEL_ID and GPUS itself)"
    if len(name) >= 64:
        return f"macro name '{name[:20]}…' is too long (at most 63 characters)"
    if not name:
        return "an empty name is not allowed"
    return f"invalid name '{name}': use only letters, digits, '_' and '-'"


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    if isinstance(value, dict | list) or value is None:
        return kind
    return f"{kind} ({json.dumps(value)})"


def _wanted(types: str | Iterable[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_WANTED.get(t, t) for t in names)


def _message(error: ValidationError) -> str:
    validator, instance = error.validator, error.instance
    value: Any = error.validator_value
    if validator == "type":
        return f"expected {_wanted(value)}, got {_describe(instance)}"
    if validator in ("anyOf", "oneOf") and error.context:
        # Branch 0 is the real type; later branches only admit a `${macro}` placeholder.
        first = [e for e in error.context if e.relative_schema_path[0] == 0]
        if first:
            return _message(first[0])
    if validator == "enum":
        choices = ", ".join(json.dumps(v) for v in value)
        return f"{json.dumps(instance)} is not one of {choices}"
    if validator == "minimum":
        return f"must be at least {value}, got {instance}"
    if validator == "maximum":
        return f"must be at most {value}, got {instance}"
    if validator == "exclusiveMinimum":
        return f"must be greater than {value}, got {instance}"
    if validator == "minProperties" and value == 1:
        return "must not be empty"
    if validator in ("minLength", "minItems") and value == 1:
        return "must not be empty"
    if validator == "uniqueItems" and isinstance(instance, list):
        return f"{_first_repeat(instance)} is listed twice"
    if validator == "pattern":
        hint = error.schema.get("x-pattern-hint") if isinstance(error.schema, dict) else None
        return f"{json.dumps(instance)} {hint}" if hint else error.message
    return error.message


def _first_repeat(items: list[Any]) -> str:
    seen: list[Any] = []
    for item in items:
        if item in seen:
            return json.dumps(item, default=str)
        seen.append(item)
    return "an item"
