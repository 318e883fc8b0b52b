"""Typed, frozen view of a validated config. Nothing mutates it; a reload builds a new one.

Every value here is already resolved: macros expanded, ports allocated, defaults applied,
`ttl: -1` replaced by `globalTTL`, `unloadTimeout: 0` replaced by the global value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from swapd.core.fifo import DEFAULT_MAX_WAIT_S
from swapd.core.groups import GroupSpec
from swapd.core.matrix import Matrix

DEFAULT_CONCURRENCY_LIMIT = 10
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_VRAM_HEADROOM = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    """Request-body rewrites applied to JSON bodies before they go upstream."""

    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    id: str
    cmd: str
    """The command after comment removal, line joining and macro expansion (for display)."""
    argv: tuple[str, ...]
    """`cmd` split with POSIX shlex rules; executed directly, never through a shell."""
    stop_argv: tuple[str, ...] | None = None
    """`cmdStop` split; may still contain `${PID}`, replaced at stop time."""
    proxy: str
    """Base URL requests are forwarded to, without a trailing slash."""
    port: int | None = None
    """The `${PORT}` allocated to this model, if its `cmd` uses it."""
    check_endpoint: str | None = "/health"
    """Path polled until it answers 200; None when `checkEndpoint: none`."""
    aliases: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    ttl_s: float = 0.0
    """Idle time before the model is unloaded; 0 means never."""
    unload_timeout_s: float = 10.0
    unlisted: bool = False
    use_model_name: str | None = None
    name: str = ""
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    filters: Filters = field(default_factory=Filters)
    vram_bytes: int | None = None
    """GPU memory the model needs (`vram`); None: estimated from its GGUF file, then learned."""
    gpus: tuple[int, ...] | None = None
    """NVML indices of the GPUs the model may use, as written; None: every GPU, split.

    Taken from `env` `CUDA_VISIBLE_DEVICES` (with `gpu_split` true) when that is a plain list of
    indices and `gpus` is not set; `env` then still holds it, with the same GPUs the spawner
    exports. `argv` and `env` may contain `${GPUS}` (see `GPUS_REF`), replaced at spawn time by
    the comma-joined indices the model was placed on; only models with `gpus` use it."""
    gpu_split: bool = False
    """True: the model uses all of `gpus` at once, its need divided evenly; False: one of them."""
    send_loading_state: bool = False
    """Streaming chat requests that wait for this model get progress chunks first (the model's
    `sendLoadingState`, else the global one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuSettings:
    """VRAM-aware placement (the top-level `vram*` and `gpu*` keys)."""

    planning: Literal["auto", "on", "off"] = "auto"
    """auto: on when NVML finds at least one GPU."""
    headroom_bytes: int = DEFAULT_VRAM_HEADROOM
    """Memory kept free on each GPU."""
    state_file: Path | None = None
    """Where learned footprints are kept across restarts, absolute; None: nowhere.

    The loader fills in `$XDG_STATE_HOME/swapd/vram.json` when `vramStateFile` is unset; a
    `GpuSettings()` built by hand persists nothing."""
    poll_interval_s: float = 1.0
    """How often the GPU monitor samples."""
    release_timeout_s: float = 10.0
    """After an eviction, the longest wait for the driver to show the memory released."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Routing:
    """How models share the machine (the planner) and how waiting requests are ordered."""

    planner: Literal["group", "matrix"] = "group"
    groups: tuple[GroupSpec, ...] = ()
    """The groups defined, in file order, without the implicit `(default)` group."""
    symmetric_exclusive: bool = False
    """swapd only: exclusive groups also give way to other groups' loads (see GroupPlanner)."""
    matrix: Matrix | None = None
    """Set exactly when `planner` is "matrix"."""
    scheduler: Literal["fifo", "serial"] = "fifo"
    priority: Mapping[str, int] = field(default_factory=dict)
    """Model id (aliases resolved) -> queue priority, higher first; absent means 0."""
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    """swapd only: the FIFO's anti-starvation bound."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    models: Mapping[str, ModelSpec]
    health_check_timeout_s: float = 120.0
    log_level: str = "info"
    start_port: int = 5800
    global_ttl_s: float = 0.0
    unload_timeout_s: float = 10.0
    api_keys: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    """Model ids (aliases already resolved) loaded one after another at startup."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    liveness_interval_s: float = 10.0
    """swapd only: seconds between health probes of a ready model; 0 turns them off."""
    liveness_timeout_s: float = 5.0
    send_loading_state: bool = False
    """The global `sendLoadingState`; each ModelSpec holds the value that applies to it."""
    routing: Routing = field(default_factory=Routing)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    source: Path | None = None
    warnings: tuple[str, ...] = ()
    """Non-fatal findings, e.g. llama-swap keys swapd accepts but does not implement yet."""

    def resolve(self, name: str) -> str | None:
        """Model id for a model id or alias; None when nothing is called `name`."""
        if name in self.models:
            return name
        for model in self.models.values():
            if name in model.aliases:
                return model.id
        return None
