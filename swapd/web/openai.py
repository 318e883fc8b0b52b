"""Finding the model a request names, resolving it, and rewriting the body for its upstream.

The body is parsed only as far as routing needs: a JSON body is decoded to read `model` (and to
apply filters), a multipart body is scanned for the `model` field without copying file parts.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from swapd.config.model import Config, ModelSpec
from swapd.errors import BadRequest, ModelNotFound

MODEL_SOURCES = (
    'the JSON body\'s "model" field, the multipart/form "model" field, '
    "or the ?model= query parameter"
)

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What a model's config asks to change in the JSON bodies sent to it."""

    use_model_name: str | None
    strip: tuple[str, ...]
    set: Mapping[str, Any]
    touches_json: bool

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> Rewrite:
        # `model` is routing state, not a parameter: filters may never touch it.
        use_model_name = spec.use_model_name or None
        strip = tuple(k for k in spec.filters.strip_params if k != "model")
        values = {k: v for k, v in spec.filters.set_params.items() if k != "model"}
        touches = bool(use_model_name or strip or values)
        return cls(use_model_name, strip, values, touches)


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """The model a request names, plus what is needed to rewrite its body."""

    name: str
    json_body: dict[str, Any] | None = None
    model_span: tuple[int, int] | None = None
    """Byte range of the multipart `model` field's value."""


class Catalog:
    """Name lookups over one Config, precomputed so each request costs a dict lookup."""

    def __init__(self, config: Config) -> None:
        self.config = config
        names: dict[str, str] = {}
        # Ids win over aliases, and the first model declaring an alias wins, as Config.resolve.
        for spec in config.models.values():
            for alias in spec.aliases:
                names.setdefault(alias, spec.id)
        names.update((model_id, model_id) for model_id in config.models)
        self._names = names
        self._listed = sorted(
            name for name, model_id in names.items() if not config.models[model_id].unlisted
        )
        self._rewrites = {m: Rewrite.for_spec(spec) for m, spec in config.models.items()}
        self._max_segments = max((name.count("/") + 1 for name in names), default=1)

    def resolve(self, name: str) -> str | None:
        return self._names.get(name)

    def rewrite(self, model_id: str) -> Rewrite:
        return self._rewrites[model_id]

    def require(self, name: str) -> str:
        """Model id for `name`, or ModelNotFound that suggests what the caller may have meant."""
        model_id = self._names.get(name)
        if model_id is None:
            raise self.not_found(name)
        return model_id

    def not_found(self, *probes: str, subject: str | None = None) -> ModelNotFound:
        """ModelNotFound naming the closest known names to the first probe that has any."""
        close: list[str] = []
        for probe in probes:
            close = difflib.get_close_matches(probe, self._listed, n=3, cutoff=0.6)
            if close:
                break
        if close:
            hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
        elif self._listed:
            shown = ", ".join(repr(n) for n in self._listed[:5])
            more = len(self._listed) - 5
            hint = f"available: {shown}" + (f" and {more} more" if more > 0 else "")
        else:
            hint = "no models are configured"
        subject = subject or f"model {probes[0]!r} not found"
        return ModelNotFound(f"{subject}; {hint} (GET /v1/models lists the models)")

    def split_upstream_path(self, raw_tail: str) -> tuple[str, str | None]:
        """Split `<model>/<rest>` (percent-encoded) at the longest prefix naming a model.

        Returns the model id and the rest of the path with its leading slash and original
        escaping, or None as the rest when nothing follows the model name (no slash).
        """
        raw = raw_tail.split("/")
        decoded = [unquote(segment) for segment in raw]
        for i in range(min(len(raw), self._max_segments), 0, -1):
            model_id = self._names.get("/".join(decoded[:i]))
            if model_id is None:
                continue
            rest = decoded[i:]
            if any(".." in part.replace("\\", "/").split("/") for part in rest):
                raise BadRequest("'..' is not allowed in /upstream/ paths")
            return model_id, ("/" + "/".join(raw[i:])) if i < len(raw) else None
        probes = ["/".join(decoded[:i]) for i in range(self._max_segments, 0, -1)]
        subject = f"no model id or alias starts the path /upstream/{'/'.join(decoded)}"
        raise self.not_found(*probes, subject=subject)


def find_model(
    content_type: str, headers_ct: str, body: bytes, query_model: str | None
) -> ModelRequest:
    """Read the model name from the body (by content type), falling back to ?model=."""
    name: str | None = None
    obj: dict[str, Any] | None = None
    span: tuple[int, int] | None = None
    if content_type == "application/json" or content_type.endswith("+json"):
        obj = _json_object(body, strict=True)
    elif content_type == "multipart/form-data":
        name, span = _from_multipart(headers_ct, body)
    elif body[:64].lstrip()[:1] == b"{":
        # `curl -d '{...}'` labels JSON as a form and many clients send no content type;
        # llama-server accepts both, so swapd must find the model in them too.
        obj = _json_object(body, strict=False)
    if obj is not None:
        model = obj.get("model")
        if model is not None and not isinstance(model, str):
            raise BadRequest(f'"model" must be a string, not {type(model).__name__}')
        name = model
    elif name is None and content_type == "application/x-www-form-urlencoded":
        name = _from_form(body)
    if name is None:
        name = query_model
    if name is None:
        raise BadRequest(f"no model in request: swapd reads it from {MODEL_SOURCES}")
    if not name:
        raise BadRequest("model is empty: name one of the models GET /v1/models lists")
    return ModelRequest(name, json_body=obj, model_span=span)


def _json_object(body: bytes, *, strict: bool) -> dict[str, Any] | None:
    try:
        obj = json.loads(body)
    except ValueError as exc:
        if not strict:
            return None
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is JSON nested too deeply") from None
    if isinstance(obj, dict):
        return obj
    if not strict:
        return None
    raise BadRequest(f"request body must be a JSON object, not {type(obj).__name__}")


def _from_form(body: bytes) -> str | None:
    for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
        if key == "model":
            return value
    return None


def _boundary(content_type: str) -> bytes | None:
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value.encode("latin-1") if value else None
    return None


def _is_model_field(part_headers: bytes) -> bool:
    for line in part_headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"content-disposition":
            continue
        params = {}
        for param in value.split(b";")[1:]:
            key, _, val = param.partition(b"=")
            params[key.strip().lower()] = val.strip().strip(b'"')
        return params.get(b"name") == b"model" and b"filename" not in params
    return False


def _from_multipart(content_type: str, body: bytes) -> tuple[str | None, tuple[int, int] | None]:
    boundary = _boundary(content_type)
    if boundary is None:
        raise BadRequest("multipart/form-data request without a boundary")
    delimiter = b"--" + boundary
    pos = body.find(delimiter)
    while pos != -1:
        start = pos + len(delimiter)
        if body.startswith(b"--", start):
            break
        headers_end = body.find(b"\r\n\r\n", start)
        if headers_end == -1:
            break
        value_start = headers_end + 4
        value_end = body.find(b"\r\n" + delimiter, value_start)
        if value_end == -1:
            break
        if _is_model_field(body[start:headers_end]):
            name = body[value_start:value_end].decode("utf-8", "replace")
            return name, (value_start, value_end)
        pos = value_end + 2
    return None, None


def rewrite_body(body: bytes, found: ModelRequest, rewrite: Rewrite) -> bytes | None:
    """The body to send upstream, or None when the original bytes can go unchanged."""
    obj = found.json_body
    if obj is not None:
        if not rewrite.touches_json:
            return None
        changed = False
        if rewrite.use_model_name is not None and obj.get("model") != rewrite.use_model_name:
            obj["model"] = rewrite.use_model_name
            changed = True
        for key in rewrite.strip:
            if obj.pop(key, _MISSING) is not _MISSING:
                changed = True
        for key, value in rewrite.set.items():
            old = obj.get(key, _MISSING)
            # type check too: True == 1, but upstreams may treat them differently.
            if type(old) is not type(value) or old != value:
                obj[key] = value
                changed = True
        if not changed:
            return None
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    if found.model_span is not None and rewrite.use_model_name is not None:
        start, end = found.model_span
        new = rewrite.use_model_name.encode()
        if body[start:end] != new:
            return body[:start] + new + body[end:]
    return None
