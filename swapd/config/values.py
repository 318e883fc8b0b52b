"""Typed reads of already schema-checked values.

The schema has judged the raw document; these getters only meet surprises that macro expansion
can introduce (`ttl: ${t}` where `t` is a string) or a macro that was never defined. A value
the schema already rejected is skipped silently so it is reported once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from swapd.config.macros import MACRO_REF, stringify
from swapd.config.problems import KeyPath, Report
from swapd.config.sizes import MIB, parse_size


def _unresolved(value: Any) -> str | None:
    if isinstance(value, str):
        match = MACRO_REF.search(value)
        if match is not None:
            return match.group(0)
    return None


def _wrong_type(report: Report, where: KeyPath, value: object, expected: str) -> None:
    ref = _unresolved(value)
    if ref is not None:
        report.problem(where, f"unknown macro '{ref}'")
    else:
        report.problem(where, f"expected {expected}, got {value!r} after macro expansion")


def get_int(
    report: Report,
    mapping: Mapping[str, Any],
    path: KeyPath,
    key: str,
    *,
    default: int,
    minimum: int,
    maximum: int | None = None,
) -> int:
    where = (*path, key)
    if key not in mapping or report.is_bad(where):
        return default
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int):
        _wrong_type(report, where, value, "an integer")
        return default
    if value < minimum:
        report.problem(where, f"must be at least {minimum}, got {value}")
        return default
    if maximum is not None and value > maximum:
        report.problem(where, f"must be at most {maximum}, got {value}")
        return default
    return value


def get_float(
    report: Report,
    mapping: Mapping[str, Any],
    path: KeyPath,
    key: str,
    *,
    default: float,
    minimum: float,
) -> float:
    where = (*path, key)
    if key not in mapping or report.is_bad(where):
        return default
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        _wrong_type(report, where, value, "a number")
        return default
    if value < minimum:
        report.problem(where, f"must be at least {minimum}, got {value}")
        return default
    return float(value)


def get_size(
    report: Report, mapping: Mapping[str, Any], path: KeyPath, key: str, *, positive: bool
) -> int | None:
    """Bytes of a size (an integer of MiB, or a string such as "7.5GiB"); None when unset.

    `positive`: 0 is a problem too (otherwise only negative sizes are)."""
    where = (*path, key)
    if key not in mapping or report.is_bad(where):
        return None
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int | str):
        report.problem(
            where,
            f"expected an integer (MiB) or a size such as '8GiB', got {value!r} "
            "after macro expansion",
        )
        return None
    if isinstance(value, int):
        size, shown = value * MIB, str(value)
    else:
        ref = _unresolved(value)
        if ref is not None:
            report.problem(where, f"unknown macro '{ref}'")
            return None
        try:
            size = parse_size(value)
        except ValueError as exc:
            report.problem(where, str(exc))
            return None
        shown = repr(value)
    if size < 0 or (positive and size == 0):
        report.problem(
            where, f"must be {'greater than' if positive else 'at least'} 0, got {shown}"
        )
        return None
    return size


def get_bool(
    report: Report, mapping: Mapping[str, Any], path: KeyPath, key: str, *, default: bool
) -> bool:
    where = (*path, key)
    if key not in mapping or report.is_bad(where):
        return default
    value = mapping[key]
    if not isinstance(value, bool):
        _wrong_type(report, where, value, "true or false")
        return default
    return value


def get_str(
    report: Report, mapping: Mapping[str, Any], path: KeyPath, key: str, *, default: str
) -> str:
    where = (*path, key)
    if key not in mapping or report.is_bad(where):
        return default
    value = mapping[key]
    # Only a whole-value macro can turn a string field into a number or boolean: keep its text.
    return stringify(value) if isinstance(value, int | float) else str(value)


def get_str_list(
    report: Report, mapping: Mapping[str, Any], path: KeyPath, key: str
) -> list[tuple[KeyPath, str]]:
    """`(path, item)` of the usable string items of a list."""
    where = (*path, key)
    value = mapping.get(key)
    if not isinstance(value, list) or report.is_bad(where):
        return []
    return [
        ((*where, index), item if isinstance(item, str) else stringify(item))
        for index, item in enumerate(value)
        if not report.is_bad((*where, index)) and isinstance(item, str | int | float)
    ]
