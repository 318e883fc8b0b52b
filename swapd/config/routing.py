"""`routing` (plus llama-swap's legacy top-level `groups`/`matrix`) -> a frozen `Routing`.

Which swap policy applies, in llama-swap's terms: legacy top-level `groups` or `matrix` select
themselves; otherwise `routing.router.use` picks one of `routing.router.settings.{groups,
matrix}`. Legacy keys beside a `routing.router` block, legacy `groups` beside legacy `matrix`,
and `use: matrix` without a matrix are errors, as in llama-swap. Where swapd differs: with
`use` unset and only a matrix defined, swapd uses the matrix (llama-swap silently ignores it),
with a warning; a definition that `use` leaves unused is reported as ignored.
Macros are not expanded in `routing`, `groups` or `matrix`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

from swapd.config.model import Routing
from swapd.config.policies import build_groups, build_matrix
from swapd.config.problems import KeyPath, Report, did_you_mean
from swapd.config.values import get_bool
from swapd.core.fifo import DEFAULT_MAX_WAIT_S
from swapd.core.groups import GroupSpec

ROUTING_KEYS = ("routing", "groups", "matrix")
_ROUTER: KeyPath = ("routing", "router")
_SETTINGS: KeyPath = (*_ROUTER, "settings")
_SCHEDULER: KeyPath = ("routing", "scheduler")
_FIFO: KeyPath = (*_SCHEDULER, "settings", "fifo")

PlannerName = Literal["group", "matrix"]


def prune_nulls(value: Any) -> Any:
    """`key:` with nothing after it means "unset" at any depth of the routing keys."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None}
    return value


def build_routing(
    doc: Mapping[str, Any],
    model_ids: Collection[str],
    names: Mapping[str, str],
    report: Report,
) -> Routing:
    """`model_ids` are every model defined; `names` maps each id and alias to its model id."""
    planner, groups_at, matrix_at = _choose_policy(doc, report)
    groups: tuple[GroupSpec, ...] = ()
    if groups_at is not None:
        groups = build_groups(_at(doc, groups_at), groups_at, model_ids, names, report)
    matrix = None
    if matrix_at is not None:
        matrix = build_matrix(_at(doc, matrix_at), matrix_at, model_ids, report)
    settings = _mapping(doc, _SETTINGS, report)
    symmetric = get_bool(report, settings, _SETTINGS, "symmetricExclusive", default=False)
    if symmetric and planner == "matrix":
        report.warn(
            (*_SETTINGS, "symmetricExclusive"), "has no effect with the matrix router; ignored"
        )
    scheduler = _mapping(doc, _SCHEDULER, report).get("use", "fifo")
    fifo = _mapping(doc, _FIFO, report)
    max_wait = fifo.get("maxWait", DEFAULT_MAX_WAIT_S)
    if report.is_bad((*_FIFO, "maxWait")):
        max_wait = DEFAULT_MAX_WAIT_S
    return Routing(
        planner=planner,
        groups=groups if planner == "group" else (),
        symmetric_exclusive=symmetric,
        matrix=matrix if planner == "matrix" else None,
        scheduler="serial" if scheduler == "serial" else "fifo",
        priority=_priority(fifo, names, report),
        max_wait_s=float(max_wait),
    )


def _choose_policy(
    doc: Mapping[str, Any], report: Report
) -> tuple[PlannerName, KeyPath | None, KeyPath | None]:
    """`(planner, where the groups to check are, where the matrix to check is)`.

    Both places are returned only when both are in error, so each is still checked.
    """
    router = _mapping(doc, _ROUTER, report)
    settings = _mapping(doc, _SETTINGS, report)
    use = router.get("use") if not report.is_bad((*_ROUTER, "use")) else None
    legacy = [key for key in ("groups", "matrix") if _defined(doc, key)]
    new_groups = _defined(settings, "groups")
    new_matrix = _defined(settings, "matrix")
    if legacy:
        if use is not None or new_groups or new_matrix:
            line = report.line_of(_ROUTER)
            for key in legacy:
                report.problem(
                    (key,),
                    f"the legacy top-level '{key}' cannot be used together with a routing.router "
                    f"block (line {line}): move it to routing.router.settings.{key}",
                )
        elif len(legacy) == 2:
            report.problem(("matrix",), "set either groups or matrix, not both")
            return "group", ("groups",), ("matrix",)
        elif legacy == ["matrix"]:
            return "matrix", None, ("matrix",)
        else:
            return "group", ("groups",), None
    groups_at: KeyPath | None = (*_SETTINGS, "groups") if new_groups else None
    matrix_at: KeyPath | None = (*_SETTINGS, "matrix") if new_matrix else None
    if use == "matrix":
        if matrix_at is None:
            hint = " (groups are defined: did you mean use: group?)" if new_groups else ""
            report.problem(
                (*_ROUTER, "use"),
                f"is 'matrix', but routing.router.settings.matrix is not set{hint}",
            )
            return "group", groups_at, None
        _unused(report, groups_at, "routing.router.use is 'matrix'")
        return "matrix", None, matrix_at
    if use is None and matrix_at is not None and groups_at is None:
        report.warn(
            matrix_at,
            "routing.router.use is not set, so swapd uses this matrix, the only policy defined "
            "(llama-swap would ignore it); set use: matrix to say so",
        )
        return "matrix", None, matrix_at
    reason = "routing.router.use is 'group'" if use else "routing.router.use defaults to 'group'"
    _unused(report, matrix_at, reason)
    return "group", groups_at, None


def _unused(report: Report, path: KeyPath | None, reason: str) -> None:
    if path is not None:
        report.warn(path, f"not used, because {reason}; ignored")


def _priority(fifo: Mapping[str, Any], names: Mapping[str, str], report: Report) -> dict[str, int]:
    where: KeyPath = (*_FIFO, "priority")
    raw = fifo.get("priority")
    if not isinstance(raw, dict) or report.is_bad(where):
        return {}
    priority: dict[str, int] = {}
    given_as: dict[str, str] = {}
    for name, value in raw.items():
        path: KeyPath = (*where, name)
        if report.is_bad(path):
            continue
        model_id = names.get(name)
        if model_id is None:
            report.problem(path, f"unknown model '{name}'{did_you_mean(name, names)}")
        elif model_id in given_as:
            report.problem(
                path,
                f"'{name}' and '{given_as[model_id]}' both name model '{model_id}'; "
                "give its priority once",
            )
        else:
            given_as[model_id] = name
            priority[model_id] = value
    return priority


def _defined(mapping: Mapping[str, Any], key: str) -> bool:
    # llama-swap's test: an empty groups mapping defines nothing; a matrix is there or not.
    if key not in mapping:
        return False
    return key != "groups" or mapping[key] != {}


def _mapping(doc: Mapping[str, Any], path: KeyPath, report: Report) -> Mapping[str, Any]:
    node: Any = doc
    for end, key in enumerate(path, start=1):
        if not isinstance(node, dict) or report.is_bad(path[:end]):
            return {}
        node = node.get(key)
    return node if isinstance(node, dict) else {}


def _at(doc: Mapping[str, Any], path: KeyPath) -> Any:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node
