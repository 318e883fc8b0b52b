"""`${name}` macros, with llama-swap's scoping and typing rules.

A model's scope is `MODEL_ID`, then the global macros in declaration order (a model macro of
the same name replaces the global one in place), then the model's new macros. A macro may use
only macros before it in that order. A value that is exactly `${m}` takes the macro's type
(so `ttl: ${t}` stays an integer); a reference inside a longer string is stringified.
`${PORT}`, `${PID}` and `${GPUS}` are not macros here: PORT is filled in after port
allocation, PID at stop time and GPUS at spawn time (the GPUs the model was placed on), so all
three pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from swapd.config.problems import KeyPath, Report, did_you_mean

MACRO_REF = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
RESERVED = frozenset({"PID", "PORT", "MODEL_ID", "GPUS"})
GPUS_REF = "${GPUS}"
"""Left literally in a model's argv and env; the spawner replaces it with e.g. `0,1`."""

GpusUse = Literal["allowed", "no-gpus", "elsewhere"]

Scalar = str | int | float | bool


@dataclass(frozen=True, slots=True)
class MacroDef:
    name: str
    value: Scalar
    path: KeyPath
    """Where it is defined, for messages."""
    overrides_global: bool = False


def collect(raw: Any, path: KeyPath, report: Report) -> list[MacroDef]:
    """The usable definitions of a `macros:` block; the schema already reported broken ones."""
    if not isinstance(raw, dict) or report.is_bad(path):
        return []
    return [
        MacroDef(name, value, (*path, name))
        for name, value in raw.items()
        if not report.is_bad((*path, name))
        and isinstance(value, str | int | float | bool)
        and name not in RESERVED
    ]


def model_scope(
    global_defs: list[MacroDef], model_defs: list[MacroDef], model_id: str
) -> list[MacroDef]:
    ordered: dict[str, MacroDef] = {"MODEL_ID": MacroDef("MODEL_ID", model_id, ())}
    ordered.update((d.name, d) for d in global_defs)
    for d in model_defs:
        # Assigning an existing dict key keeps its position: the override takes the global's place.
        overrides = d.name in ordered
        ordered[d.name] = MacroDef(d.name, d.value, d.path, overrides_global=overrides)
    return list(ordered.values())


def resolve(defs: list[MacroDef], report: Report) -> dict[str, Scalar]:
    """Each macro's final value, with earlier macros substituted into later ones."""
    names = [d.name for d in defs]
    resolved: dict[str, Scalar] = {}
    for index, macro in enumerate(defs):
        value = macro.value
        if isinstance(value, str):
            refs = set(MACRO_REF.findall(value))
            if macro.name in refs:
                report.problem(macro.path, f"macro '{macro.name}' refers to itself")
            for ref in sorted(r for r in refs if r in names[index + 1 :] and r != macro.name):
                note = (
                    " (a model macro that overrides a global one takes the global's place)"
                    if macro.overrides_global
                    else ""
                )
                report.problem(
                    macro.path,
                    f"macro '{macro.name}' uses '${{{ref}}}', which is declared after it; "
                    f"a macro may only use macros declared before it{note}",
                )
            value = substitute_str(value, resolved)
        resolved[macro.name] = value
    return resolved


def stringify(value: Scalar) -> str:
    """How a typed macro value reads inside a longer string (YAML spelling, like Go's %v)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def substitute_str(text: str, scope: Mapping[str, Scalar]) -> Scalar:
    whole = MACRO_REF.fullmatch(text)
    if whole is not None and whole.group(1) in scope:
        return scope[whole.group(1)]

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return stringify(scope[name]) if name in scope else match.group(0)

    return MACRO_REF.sub(replace, text)


def substitute(value: Any, scope: Mapping[str, Scalar]) -> Any:
    """Substitute in every string of a value; mapping keys are left alone."""
    if isinstance(value, str):
        return substitute_str(value, scope)
    if isinstance(value, list):
        return [substitute(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, scope) for key, item in value.items()}
    return value


def find_refs(value: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str]]:
    """`(path, name)` for every `${name}` left in a value."""
    if isinstance(value, str):
        for name in dict.fromkeys(MACRO_REF.findall(value)):
            yield path, name
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_refs(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find_refs(item, (*path, key))


def report_unresolved(
    report: Report,
    path: KeyPath,
    value: Any,
    known: list[str],
    *,
    allow_pid: bool = False,
    gpus: GpusUse = "elsewhere",
) -> bool:
    """Report every `${name}` still in `value`; True when there was none.

    `gpus` says what `${GPUS}` means here: "allowed" (cmd or env of a model with gpus),
    "no-gpus" (cmd or env of a model without), "elsewhere" (any other value).
    """
    clean = True
    for where, name in find_refs(value, path):
        if name == "PID":
            if allow_pid:
                continue
            message = "'${PID}' is only available in cmdStop"
        elif name == "GPUS":
            if gpus == "allowed":
                continue
            if gpus == "no-gpus":
                message = (
                    "uses '${GPUS}', but the model has no gpus: set gpus to the GPUs it may use"
                )
            else:
                message = "'${GPUS}' is only available in a model's cmd and env"
        elif name == "PORT":
            message = "uses '${PORT}', but cmd does not, so no port is allocated for this model"
        elif name in known:
            message = f"'${{{name}}}' is left unexpanded: a macro declared before '{name}' uses it"
        else:
            hint = did_you_mean(name, [*known, "PORT", "GPUS"])
            if not hint and name.isupper():
                # Shell habit: no shell ever sees cmd, so `${HOME}` must be spelled as env.
                hint = f" (for an environment variable write '${{env.{name}}}')"
            message = f"unknown macro '${{{name}}}'{hint}"
        report.problem(where, message)
        clean = False
    return clean
