"""Loading a swapd config: YAML text in, a frozen `Config` out, or every problem at once.

Pipeline: `${env.VAR}` on the text -> YAML (keeping lines) -> JSON Schema -> macros ->
`${PORT}` allocation -> dataclasses -> cross-model checks. Each problem reads
`<key path>[ (line N)]: <message>`; any problem raises `ConfigError(source, problems)`.
Loading starts nothing; the only side effect is probing whether ports are free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from swapd.config import macros
from swapd.config.build import ModelDefaults, ModelInput, build_model
from swapd.config.command import strip_comment_lines
from swapd.config.envsubst import substitute_env
from swapd.config.gpu_keys import gpu_settings
from swapd.config.model import DEFAULT_MAX_BODY_BYTES, Config, ModelSpec
from swapd.config.ports import MAX_PORT, allocate_ports, port_is_free
from swapd.config.problems import ROOT_LABEL, KeyPath, Report, did_you_mean
from swapd.config.routing import ROUTING_KEYS, build_routing, prune_nulls
from swapd.config.schema import check_schema
from swapd.config.values import get_bool, get_float, get_int, get_str, get_str_list
from swapd.config.yamldoc import parse_yaml
from swapd.errors import ConfigError

__all__ = ["load_config", "load_config_text"]

# llama-swap keys accepted for compatibility; swapd warns that it ignores them.
UNSUPPORTED_TOP_LEVEL = (
    "logTimeFormat",
    "logToStdout",
    "logRequests",
    "metricsMaxInMemory",
    "captureBuffer",
    "store",
    "ui",
    "performance",
    "includeAliasesInList",
    "upstream",
    "profiles",
    "selectors",
    "peers",
)
UNSUPPORTED_MODEL = ("timeouts", "compat", "capabilities")
UNSUPPORTED_FILTERS = ("setParamsByID",)
_IGNORED_MESSAGE = "llama-swap setting not implemented by swapd yet; ignored"
_PORT_REF = "${PORT}"


def load_config(path: Path, *, port_free: Callable[[int], bool] | None = None) -> Config:
    """Load and validate the config file at `path`; raises ConfigError listing every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"{ROOT_LABEL}: cannot read the file: {exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [f"{ROOT_LABEL}: not UTF-8 text: {exc}"]) from None
    return _load(text, str(path), path, port_free)


def load_config_text(
    text: str,
    *,
    source: str = "<config>",
    port_free: Callable[[int], bool] | None = None,
    base_dir: Path | None = None,
) -> Config:
    """Like `load_config` for text in hand; `base_dir / source` becomes `Config.source`."""
    return _load(text, source, base_dir / source if base_dir is not None else None, port_free)


def _load(
    text: str, source: str, source_path: Path | None, port_free: Callable[[int], bool] | None
) -> Config:
    report = Report()
    text, env_problems = substitute_env(text, os.environ)
    parsed = parse_yaml(text, report)
    marks = parsed[1] if parsed is not None else {}
    report.marks = marks
    for env_problem in env_problems:
        path = _path_at_line(marks, env_problem.line)
        report.problem(path, env_problem.message, line=env_problem.line)
    if parsed is None:
        raise ConfigError(source, report.rendered_problems())
    doc = _drop_nulls(parsed[0])
    check_schema(doc, report)
    if not isinstance(doc, dict):
        raise ConfigError(source, report.rendered_problems())
    _warn_ignored(doc, report)
    config = _build(doc, report, port_free or port_is_free, source_path)
    if report.problems:
        raise ConfigError(source, report.rendered_problems())
    return config


def _path_at_line(marks: Mapping[KeyPath, int], line: int) -> KeyPath:
    """The deepest key at or before `line`: the value an env reference on that line is in."""
    best: KeyPath = ()
    rank = (0, 0)
    for path, key_line in marks.items():
        if key_line <= line and (key_line, len(path)) > rank:
            best, rank = path, (key_line, len(path))
    return best


def _drop_nulls(doc: Any) -> Any:
    """`key:` with nothing after it means "unset" in the config's own mappings, as in Go."""
    if not isinstance(doc, dict):
        return doc
    top = {k: v for k, v in doc.items() if v is not None}
    if "models" in doc and doc["models"] is None:
        top["models"] = {}
    if isinstance(top.get("models"), dict):
        top["models"] = {
            mid: _without_nulls(m, "filters") if isinstance(m, dict) else m
            for mid, m in top["models"].items()
        }
    if isinstance(top.get("hooks"), dict):
        top["hooks"] = _without_nulls(top["hooks"], "on_startup")
    for key in ROUTING_KEYS:
        if key in top:
            top[key] = prune_nulls(top[key])
    return top


def _without_nulls(mapping: dict[str, Any], child: str) -> dict[str, Any]:
    result = {k: v for k, v in mapping.items() if v is not None}
    if isinstance(result.get(child), dict):
        result[child] = {k: v for k, v in result[child].items() if v is not None}
    return result


def _warn_ignored(doc: Mapping[str, Any], report: Report) -> None:
    for key in UNSUPPORTED_TOP_LEVEL:
        if key in doc:
            report.warn((key,), _IGNORED_MESSAGE)
    models = doc.get("models")
    for mid, model in models.items() if isinstance(models, dict) else ():
        if not isinstance(model, dict):
            continue
        for key in UNSUPPORTED_MODEL:
            if key in model:
                report.warn(("models", mid, key), _IGNORED_MESSAGE)
        filters = model.get("filters")
        for key in UNSUPPORTED_FILTERS:
            if isinstance(filters, dict) and key in filters:
                report.warn(("models", mid, "filters", key), _IGNORED_MESSAGE)


def _build(
    doc: dict[str, Any], report: Report, port_free: Callable[[int], bool], source: Path | None
) -> Config:
    global_defs = macros.collect(doc.get("macros"), ("macros",), report)
    top_scope = macros.resolve(global_defs, report)
    skip = {"models", "macros", *ROUTING_KEYS, *UNSUPPORTED_TOP_LEVEL}
    top = macros.substitute({k: v for k, v in doc.items() if k not in skip}, top_scope)

    health = get_int(report, top, (), "healthCheckTimeout", default=120, minimum=1)
    if health < 15:
        report.warn(
            ("healthCheckTimeout",),
            f"llama-swap would raise this to 15 seconds; swapd uses {health} as given",
        )
    start_port = get_int(report, top, (), "startPort", default=5800, minimum=1, maximum=MAX_PORT)
    global_ttl = get_int(report, top, (), "globalTTL", default=0, minimum=0)
    unload = get_int(report, top, (), "unloadTimeout", default=0, minimum=0) or 10
    max_body = get_int(report, top, (), "maxBodyBytes", default=DEFAULT_MAX_BODY_BYTES, minimum=1)
    loading = get_bool(report, top, (), "sendLoadingState", default=False)
    liveness = get_float(report, top, (), "livenessInterval", default=10.0, minimum=0)
    liveness_timeout = get_float(report, top, (), "livenessTimeout", default=5.0, minimum=0.1)
    keys = get_str_list(report, top, (), "apiKeys")
    for where, key in keys:
        # A key literally named "${x}" is never what was meant.
        macros.report_unresolved(report, where, key, list(top_scope))
    api_keys = tuple(key for _, key in keys)
    gpu = gpu_settings(report, top, list(top_scope), source, os.environ)

    raw_models = doc.get("models")
    if not isinstance(raw_models, dict) or report.is_bad(("models",)):
        raw_models = {}
    inputs = _expand_models(raw_models, global_defs, report)
    _allocate(inputs, start_port, port_free, report)
    defaults = ModelDefaults(
        global_ttl_s=global_ttl, unload_timeout_s=unload, send_loading_state=loading
    )
    models: dict[str, ModelSpec] = {}
    for model in inputs.values():
        if model.port is None and _PORT_REF in str(model.body.get("cmd", "")):
            continue  # no port left for it; reported by _allocate
        spec = build_model(report, model, defaults)
        if spec is not None:
            models[model.id] = spec
    names = _check_aliases(list(raw_models), inputs, report)
    preload = _preload(top, names, report)
    routing = build_routing(doc, list(raw_models), names, report)
    return Config(
        models=models,
        health_check_timeout_s=float(health),
        log_level=get_str(report, top, (), "logLevel", default="info"),
        start_port=start_port,
        global_ttl_s=float(global_ttl),
        unload_timeout_s=float(unload),
        api_keys=api_keys,
        preload=preload,
        max_body_bytes=max_body,
        send_loading_state=loading,
        liveness_interval_s=liveness,
        liveness_timeout_s=liveness_timeout,
        routing=routing,
        gpu=gpu,
        source=source,
        warnings=tuple(report.rendered_warnings()),
    )


def _expand_models(
    raw_models: Mapping[str, Any], global_defs: list[macros.MacroDef], report: Report
) -> dict[str, ModelInput]:
    inputs: dict[str, ModelInput] = {}
    for mid, raw in raw_models.items():
        path: KeyPath = ("models", mid)
        if not isinstance(raw, dict) or report.is_bad(path):
            continue
        body = {k: v for k, v in raw.items() if k != "macros" and k not in UNSUPPORTED_MODEL}
        # Comment lines go before macro expansion, so a macro in one can never fail.
        for key in ("cmd", "cmdStop"):
            if isinstance(body.get(key), str):
                body[key] = strip_comment_lines(body[key])
        model_defs = macros.collect(raw.get("macros"), (*path, "macros"), report)
        scope = macros.resolve(macros.model_scope(global_defs, model_defs, mid), report)
        expanded = macros.substitute(body, scope)
        inputs[mid] = ModelInput(id=mid, body=expanded, port=None, macro_names=list(scope))
    return inputs


def _allocate(
    inputs: dict[str, ModelInput],
    start_port: int,
    port_free: Callable[[int], bool],
    report: Report,
) -> None:
    wanting = [m.id for m in inputs.values() if _PORT_REF in str(m.body.get("cmd", ""))]
    ports, exhausted = allocate_ports(wanting, start_port, port_free)
    for mid, port in ports.items():
        model = inputs[mid]
        body = macros.substitute(model.body, {"PORT": port})
        inputs[mid] = ModelInput(id=mid, body=body, port=port, macro_names=model.macro_names)
    for mid in exhausted:
        report.problem(
            ("models", mid, "cmd"),
            f"no free port left between startPort ({start_port}) and {MAX_PORT} for ${{PORT}}",
        )


def _check_aliases(
    model_ids: list[str], inputs: Mapping[str, ModelInput], report: Report
) -> dict[str, str]:
    """Name -> model id for every id and alias; reports aliases that are not unique."""
    names = {mid: mid for mid in model_ids}
    for model in inputs.values():
        path: KeyPath = ("models", model.id)
        for where, alias in get_str_list(report, model.body, path, "aliases"):
            owner = names.get(alias)
            if owner is None:
                names[alias] = model.id
            elif alias in model_ids:
                report.problem(
                    where, f"alias '{alias}' of model '{model.id}' is the id of model '{alias}'"
                )
            elif owner == model.id:
                report.problem(where, f"alias '{alias}' is listed twice")
            else:
                report.problem(
                    where,
                    f"alias '{alias}' of model '{model.id}' is already an alias of model '{owner}'",
                )
    return names


def _preload(top: Mapping[str, Any], names: Mapping[str, str], report: Report) -> tuple[str, ...]:
    hooks = top.get("hooks")
    on_startup = hooks.get("on_startup") if isinstance(hooks, dict) else None
    if not isinstance(on_startup, dict):
        return ()
    path: KeyPath = ("hooks", "on_startup")
    resolved: list[str] = []
    for where, name in get_str_list(report, on_startup, path, "preload"):
        model_id = names.get(name)
        if model_id is None:
            report.problem(where, f"unknown model '{name}'{did_you_mean(name, names)}")
        elif model_id not in resolved:
            resolved.append(model_id)
    return tuple(resolved)
