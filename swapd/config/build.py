"""One expanded model mapping -> a `ModelSpec`, reporting every problem on the way.

Input is a model's mapping after macro expansion and `${PORT}` substitution. Anything still
spelled `${name}` here was never defined (or is `${PORT}` in a model without a port), except
`${GPUS}` in `cmd` and `env` of a model with `gpus`, which stays for the spawner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from swapd.config.command import CommandError, split_command
from swapd.config.gpu_keys import model_gpus
from swapd.config.macros import GPUS_REF, GpusUse, report_unresolved
from swapd.config.model import DEFAULT_CONCURRENCY_LIMIT, Filters, ModelSpec
from swapd.config.problems import KeyPath, Report
from swapd.config.values import get_bool, get_int, get_str, get_str_list

DEFAULT_PROXY = "http://127.0.0.1:${PORT}"
DEFAULT_CHECK_ENDPOINT = "/health"


@dataclass(frozen=True, slots=True)
class ModelDefaults:
    global_ttl_s: int
    unload_timeout_s: int
    send_loading_state: bool = False


@dataclass(frozen=True, slots=True)
class ModelInput:
    id: str
    body: Mapping[str, Any]
    """The model's mapping, expanded; without `macros` and ignored llama-swap keys."""
    port: int | None
    macro_names: list[str]
    """Names in the model's macro scope, for did-you-mean hints."""


def build_model(report: Report, model: ModelInput, defaults: ModelDefaults) -> ModelSpec | None:
    """The spec, or None when `cmd` is unusable (the reason is reported)."""
    path: KeyPath = ("models", model.id)
    body = model.body
    known = model.macro_names
    env = _env(report, body, path)
    gpu = model_gpus(report, body, path, env)
    cmd_ok, command = _command(report, body, path, "cmd", known, gpu.macro)
    stop_ok, stop = _command(report, body, path, "cmdStop", known, "elsewhere")
    _env_macros(report, body, path, gpu.macro)
    # Without a cmd nobody knows whether it would use ${PORT}: judge proxy only with one.
    has_cmd = "cmd" in body and not report.is_bad((*path, "cmd"))
    proxy = _proxy(report, body, path, known, model.port) if has_cmd else ""
    check = get_str(report, body, path, "checkEndpoint", default=DEFAULT_CHECK_ENDPOINT)
    report_unresolved(report, (*path, "checkEndpoint"), check, known)
    name = get_str(report, body, path, "name", default="")
    description = get_str(report, body, path, "description", default="")
    report_unresolved(report, (*path, "name"), name, known)
    report_unresolved(report, (*path, "description"), description, known)
    metadata = body.get("metadata", {}) if not report.is_bad((*path, "metadata")) else {}
    report_unresolved(report, (*path, "metadata"), metadata, known)
    ttl = get_int(report, body, path, "ttl", default=-1, minimum=-1)
    unload = get_int(report, body, path, "unloadTimeout", default=0, minimum=0)
    limit = get_int(report, body, path, "concurrencyLimit", default=0, minimum=0)
    use_model_name = get_str(report, body, path, "useModelName", default="")
    unlisted = get_bool(report, body, path, "unlisted", default=False)
    loading = get_bool(report, body, path, "sendLoadingState", default=defaults.send_loading_state)
    filters = _filters(report, body, path, known)
    aliases = tuple(alias for _, alias in get_str_list(report, body, path, "aliases"))
    if not (cmd_ok and stop_ok) or command is None:
        return None
    display, argv = command
    return ModelSpec(
        id=model.id,
        cmd=display,
        argv=argv,
        stop_argv=stop[1] if stop else None,
        proxy=proxy,
        port=model.port,
        check_endpoint=None if check == "none" else _slash(check),
        aliases=aliases,
        env=env,
        ttl_s=float(defaults.global_ttl_s if ttl == -1 else ttl),
        unload_timeout_s=float(unload or defaults.unload_timeout_s),
        unlisted=unlisted,
        use_model_name=use_model_name or None,
        name=name,
        description=description,
        metadata=metadata if isinstance(metadata, dict) else {},
        concurrency_limit=limit or DEFAULT_CONCURRENCY_LIMIT,
        filters=filters,
        vram_bytes=gpu.vram_bytes,
        gpus=gpu.gpus,
        gpu_split=gpu.split,
        send_loading_state=loading,
    )


Command = tuple[str, tuple[str, ...]]


def _command(
    report: Report,
    body: Mapping[str, Any],
    path: KeyPath,
    key: str,
    known: list[str],
    gpus: GpusUse,
) -> tuple[bool, Command | None]:
    """`(usable, (display, argv) or None)`; an absent or empty cmdStop is usable and None."""
    where = (*path, key)
    if key not in body or report.is_bad(where):
        return key != "cmd", None
    text = get_str(report, body, path, key, default="")
    if not report_unresolved(report, where, text, known, allow_pid=key == "cmdStop", gpus=gpus):
        return False, None
    if key == "cmdStop" and not text.strip():
        # An empty cmdStop means "no stop command", as in llama-swap.
        return True, None
    try:
        return True, split_command(text)
    except CommandError as exc:
        report.problem(where, str(exc))
        return False, None


def _proxy(
    report: Report, body: Mapping[str, Any], path: KeyPath, known: list[str], port: int | None
) -> str:
    where = (*path, "proxy")
    explicit = "proxy" in body
    default = DEFAULT_PROXY if port is None else DEFAULT_PROXY.replace("${PORT}", str(port))
    proxy = get_str(report, body, path, "proxy", default=default)
    if explicit and not isinstance(body["proxy"], str):
        return proxy  # the wrong type is reported; checking the default in its place misleads
    if "${PORT}" in proxy:
        if explicit:
            report.problem(where, "proxy uses ${PORT}, but cmd does not")
        else:
            report.problem(
                where,
                f"not set, and the default {DEFAULT_PROXY} needs ${{PORT}} in cmd: "
                "use ${PORT} in cmd or set proxy",
            )
        return proxy
    if not report_unresolved(report, where, proxy, known):
        return proxy
    parts = urlsplit(proxy)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        report.problem(where, f"expected an http:// or https:// URL, got {proxy!r}")
    return proxy.rstrip("/")


def _slash(endpoint: str) -> str:
    return endpoint if endpoint.startswith("/") else "/" + endpoint


def _env(report: Report, body: Mapping[str, Any], path: KeyPath) -> dict[str, str]:
    env: dict[str, str] = {}
    for where, entry in get_str_list(report, body, path, "env"):
        key, sep, value = entry.partition("=")
        if not sep or not key or key != key.strip() or "\0" in entry:
            report.problem(where, f"expected KEY=VALUE, got {entry!r}")
            continue
        env[key] = value
    return env


def _env_macros(report: Report, body: Mapping[str, Any], path: KeyPath, gpus: GpusUse) -> None:
    """`${GPUS}` in an env value needs gpus; other `${...}` in env stay as written."""
    for where, entry in get_str_list(report, body, path, "env"):
        if GPUS_REF in entry.partition("=")[2]:
            report_unresolved(report, where, GPUS_REF, [], gpus=gpus)


def _filters(report: Report, body: Mapping[str, Any], path: KeyPath, known: list[str]) -> Filters:
    where = (*path, "filters")
    raw = body.get("filters")
    if not isinstance(raw, dict) or report.is_bad(where):
        return Filters()
    if "stripParams" in raw and "strip_params" in raw:
        report.problem(where, "set stripParams or its legacy spelling strip_params, not both")
    key = "stripParams" if "stripParams" in raw else "strip_params"
    csv = get_str(report, raw, where, key, default="")
    report_unresolved(report, (*where, key), csv, known)
    strip: list[str] = []
    for name in (part.strip() for part in csv.split(",")):
        if name == "model":
            report.warn((*where, key), "'model' is never stripped; ignoring it here")
        elif name and name not in strip:
            strip.append(name)
    set_params = raw.get("setParams", {}) if not report.is_bad((*where, "setParams")) else {}
    if not isinstance(set_params, dict):
        set_params = {}
    report_unresolved(report, (*where, "setParams"), set_params, known)
    if "model" in set_params:
        report.warn((*where, "setParams", "model"), "'model' cannot be set; ignoring it here")
        set_params = {k: v for k, v in set_params.items() if k != "model"}
    return Filters(strip_params=tuple(strip), set_params=set_params)
