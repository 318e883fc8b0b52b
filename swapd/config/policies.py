"""Swap policy definitions -> `GroupSpec`s or a compiled `Matrix`, every problem at its key.

The same code reads `routing.router.settings.{groups,matrix}` and llama-swap's legacy
top-level `groups`/`matrix`; `path` says which spelling the messages name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from swapd.config.problems import KeyPath, Report, did_you_mean
from swapd.config.values import get_bool, get_str_list
from swapd.core.groups import DEFAULT_GROUP, GroupSpec
from swapd.core.matrix import Matrix, MatrixError, compile_matrix

_MATRIX_PARTS = ("sets", "vars", "evict_costs")


def build_groups(
    raw: Any,
    path: KeyPath,
    model_ids: Collection[str],
    names: Mapping[str, str],
    report: Report,
) -> tuple[GroupSpec, ...]:
    """The usable groups of a `groups` mapping, in file order; `names` maps aliases to ids."""
    if not isinstance(raw, dict) or report.is_bad(path):
        return ()
    group_of: dict[str, str] = {}
    specs: list[GroupSpec] = []
    for gid, body in raw.items():
        where: KeyPath = (*path, gid)
        if not isinstance(body, dict) or report.is_bad(where):
            continue
        if gid == DEFAULT_GROUP:
            report.problem(
                where, f"the group id '{DEFAULT_GROUP}' is reserved for the models in no group"
            )
            continue
        members: list[str] = []
        for item, name in get_str_list(report, body, where, "members"):
            if name not in model_ids:
                report.problem(item, _not_a_model(name, model_ids, names))
            elif name in members:
                report.problem(item, f"model '{name}' is listed twice")
            elif name in group_of:
                report.problem(
                    item,
                    f"model '{name}' is already in group '{group_of[name]}'; "
                    "a model may be in one group only",
                )
            else:
                members.append(name)
                group_of[name] = gid
        specs.append(
            GroupSpec(
                id=gid,
                members=tuple(members),
                swap=get_bool(report, body, where, "swap", default=True),
                exclusive=get_bool(report, body, where, "exclusive", default=True),
                persistent=get_bool(report, body, where, "persistent", default=False),
            )
        )
    return tuple(specs)


def _not_a_model(name: str, model_ids: Collection[str], names: Mapping[str, str]) -> str:
    owner = names.get(name)
    if owner is not None and owner != name:
        return f"'{name}' is an alias of model '{owner}'; groups list model ids"
    return f"unknown model '{name}'{did_you_mean(name, model_ids)}"


def build_matrix(
    raw: Any, path: KeyPath, model_ids: Collection[str], report: Report
) -> Matrix | None:
    """The compiled matrix, or None when it is unusable (the reasons are reported)."""
    if not isinstance(raw, dict) or _bad_within(report, path):
        # The schema has reported what is wrong; compiling the rest would mostly repeat it
        # (a broken set shows up again as an unknown `+set` in the sets that use it).
        return None
    sets: dict[str, str] = raw.get("sets", {})
    variables: dict[str, str] = raw.get("vars", {})
    evict_costs: dict[str, int] = raw.get("evict_costs", {})
    try:
        return compile_matrix(sets, variables, evict_costs, model_ids)
    except MatrixError as exc:
        for where, message in exc.problems:
            report.problem(_matrix_path(path, where, sets), message)
        return None


def _matrix_path(path: KeyPath, where: str, sets: Mapping[str, str]) -> KeyPath:
    # `where` is a set name or a section name; a set that is itself called "vars" is taken
    # to be the set, since problems of set expressions are the common case.
    if where in sets:
        return (*path, "sets", where)
    if where in _MATRIX_PARTS:
        return (*path, where)
    return path


def _bad_within(report: Report, path: KeyPath) -> bool:
    return report.is_bad(path) or any(bad[: len(path)] == path for bad in report.bad)
