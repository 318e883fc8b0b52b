"""Value types shared by the core and the shell. Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ModelState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    FAILED = "failed"
    """The last start failed; `reason` says why. A new request may start it again."""


class RejectKind(StrEnum):
    """Why a request gets an error instead of a grant. The web layer maps it to a status."""

    UNKNOWN_MODEL = "unknown_model"  # 404
    OVER_LIMIT = "over_limit"  # 429
    START_FAILED = "start_failed"  # 503
    NO_FIT = "no_fit"  # 503: not enough VRAM on the model's GPUs, whatever is evicted
    UNLOADED = "unloaded"  # 503: the model was unloaded while the request waited
    SHUTTING_DOWN = "shutting_down"  # 503


@dataclass(frozen=True, slots=True)
class Rejection:
    kind: RejectKind
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRules:
    """The per-model facts the core decides with (a projection of the config)."""

    concurrency_limit: int = 10
    ttl_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSnapshot:
    model: str
    state: ModelState
    in_flight: int
    queued: int
    reason: str | None = None
    """Why the model is FAILED, or None."""


@dataclass(frozen=True, slots=True)
class Lease:
    """Permission to forward one request to a ready model."""

    req_id: int
    model: str
    upstream: str
    """Base URL of the model's server, e.g. http://127.0.0.1:5800 (no trailing slash)."""
