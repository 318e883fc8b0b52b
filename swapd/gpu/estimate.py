"""How much VRAM a llama-server command will take, for models whose config gives no figure.

weights (the GGUF file sizes) + KV cache (from the GGUF metadata and the context size) + a fixed
overhead for compute buffers and the CUDA context. A planning estimate, not a measurement: it
errs high (a sliding-window model's KV is counted as if every layer were global).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from swapd.gpu.gguf import MetadataValue, read_metadata

GIB = 1024**3
MIB = 1024**2
DEFAULT_CTX = 4096
DEFAULT_CACHE_TYPE = "f16"

CACHE_TYPE_BYTES: Mapping[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}

_OPTION_ALIASES = {
    "-m": "--model",
    "--model": "--model",
    "--mmproj": "--mmproj",
    "-mm": "--mmproj",
    "-c": "--ctx-size",
    "--ctx-size": "--ctx-size",
    "-ngl": "--n-gpu-layers",
    "--n-gpu-layers": "--n-gpu-layers",
    "--gpu-layers": "--n-gpu-layers",
    "-ctk": "--cache-type-k",
    "--cache-type-k": "--cache-type-k",
    "-ctv": "--cache-type-v",
    "--cache-type-v": "--cache-type-v",
}
_FLAGS = {"-nkvo": "--no-kv-offload", "--no-kv-offload": "--no-kv-offload"}
_SPLIT = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True, slots=True)
class VramEstimate:
    weights: int
    kv_cache: int
    overhead: int
    detail: str

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


def estimate_vram(argv: Sequence[str], *, overhead: int = 512 * MIB) -> VramEstimate | None:
    """Estimate for a llama-server command line; None when it names no local model file."""
    options, flags = _parse_options(argv)
    model = options.get("--model")
    if model is None or not os.path.isfile(model):
        return None
    weights_on_gpu = _int(options.get("--n-gpu-layers")) != 0
    kv_on_gpu = weights_on_gpu and "--no-kv-offload" not in flags

    weights = _weights_size(model) + _file_size(options.get("--mmproj"))
    if weights_on_gpu:
        weights_text = f"weights {_size(weights)} (file)"
    else:
        weights_text = f"weights 0 B (the {_size(weights)} file stays in RAM: -ngl 0)"
        weights = 0

    kv_cache, kv_text = _kv_cache(model, options)
    if kv_cache and not kv_on_gpu:
        kv_text = f"0 B (the {kv_text} stays in RAM)"
        kv_cache = 0
    detail = f"{weights_text} + KV {kv_text} + overhead {_size(overhead)}"
    return VramEstimate(weights=weights, kv_cache=kv_cache, overhead=overhead, detail=detail)


def _parse_options(argv: Sequence[str]) -> tuple[dict[str, str], set[str]]:
    """The options that matter here, by canonical name; the last one wins, as in llama.cpp."""
    options: dict[str, str] = {}
    flags: set[str] = set()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _FLAGS:
            flags.add(_FLAGS[name])
        elif name in _OPTION_ALIASES:
            if eq:
                options[_OPTION_ALIASES[name]] = inline
            elif i + 1 < len(args):
                options[_OPTION_ALIASES[name]] = args[i + 1]
                i += 1
        i += 1
    return options, flags


def _weights_size(model: str) -> int:
    match = _SPLIT.match(model)
    if match is None:
        return _file_size(model)
    stem, count = match["stem"], int(match["count"])
    return sum(_file_size(f"{stem}-{part:05d}-of-{count:05d}.gguf") for part in range(1, count + 1))


def _kv_cache(model: str, options: Mapping[str, str]) -> tuple[int, str]:
    """Bytes and a description. One context whatever `-np` says: llama-server splits it."""
    metadata = read_metadata(model)
    layers = _layers(metadata) if metadata is not None else None
    if metadata is None or layers is None:
        return 0, "unknown (GGUF metadata unreadable)"
    ctx = _int(options.get("--ctx-size")) or 0
    if ctx <= 0:
        ctx = _int(metadata.get(f"{metadata['general.architecture']}.context_length")) or 0
    if ctx <= 0:
        ctx = DEFAULT_CTX
    type_k = options.get("--cache-type-k", DEFAULT_CACHE_TYPE).lower()
    type_v = options.get("--cache-type-v", DEFAULT_CACHE_TYPE).lower()
    bytes_k = CACHE_TYPE_BYTES.get(type_k, CACHE_TYPE_BYTES[DEFAULT_CACHE_TYPE])
    bytes_v = CACHE_TYPE_BYTES.get(type_v, CACHE_TYPE_BYTES[DEFAULT_CACHE_TYPE])
    per_token = sum(heads * (k_len * bytes_k + v_len * bytes_v) for heads, k_len, v_len in layers)
    kv = int(ctx * per_token)
    types = type_k if type_k == type_v else f"K {type_k}, V {type_v}"
    return kv, f"{_size(kv)} (ctx {ctx}, {types})"


def _layers(metadata: Mapping[str, MetadataValue]) -> list[tuple[int, int, int]] | None:
    """Per layer: (KV heads, key length, value length); None when the metadata lacks a field."""
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str):
        return None
    n_layers = _int(metadata.get(f"{arch}.block_count"))
    n_embd = _int(metadata.get(f"{arch}.embedding_length"))
    heads = _per_layer(metadata.get(f"{arch}.attention.head_count"), n_layers)
    if not n_layers or not n_embd or heads is None:
        return None
    kv_heads = _per_layer(metadata.get(f"{arch}.attention.head_count_kv"), n_layers) or heads
    key_length = _int(metadata.get(f"{arch}.attention.key_length"))
    value_length = _int(metadata.get(f"{arch}.attention.value_length"))
    layers = []
    for n_head, n_head_kv in zip(heads, kv_heads, strict=True):
        head_dim = n_embd // n_head if n_head else 0
        layers.append((n_head_kv, key_length or head_dim, value_length or head_dim))
    return layers


def _per_layer(value: MetadataValue | None, n_layers: int | None) -> tuple[int, ...] | None:
    if not n_layers or value is None or isinstance(value, bool | float | str):
        return None
    if isinstance(value, int):
        return (value,) * n_layers
    return value if len(value) == n_layers else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _file_size(path: str | None) -> int:
    if path is None:
        return 0
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _size(n: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (1024, "KiB")):
        if n >= unit // 2:
            return f"{n / unit:.1f} {name}"
    return f"{n} B"
