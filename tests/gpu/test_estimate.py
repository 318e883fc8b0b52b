"""VRAM estimates from llama-server command lines and real (tiny) GGUF files."""

from __future__ import annotations

from pathlib import Path

import pytest

from swapd.gpu.estimate import VramEstimate, estimate_vram
from tests.gpu.test_gguf import write_gguf

MIB = 1024**2
# The default file: 2 layers, 4 KV heads of 64 / 4 = 16 dims, f16 K and V: 256 bytes per token.
PER_TOKEN = 2 * (4 * 16 * 2 + 4 * 16 * 2)


def estimate(*argv: str | Path, overhead: int = 512 * MIB) -> VramEstimate:
    result = estimate_vram(["llama-server", *map(str, argv)], overhead=overhead)
    assert result is not None
    return result


def test_weights_are_the_file_and_kv_follows_the_metadata_context(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf", ctx=256)
    result = estimate("--port", "8080", "-m", model, "-np", "4")  # -np splits, never multiplies
    assert result.weights == model.stat().st_size
    assert result.kv_cache == 256 * PER_TOKEN
    assert result.overhead == 512 * MIB
    assert result.total == result.weights + result.kv_cache + 512 * MIB
    size = model.stat().st_size / 1024
    assert result.detail == (
        f"weights {size:.1f} KiB (file) + KV 128.0 KiB (ctx 256, f16) + overhead 0.5 GiB"
    )


@pytest.mark.parametrize(
    ("args", "ctx"),
    [
        (["-c", "8192"], 8192),
        (["--ctx-size", "1024"], 1024),
        (["--ctx-size=2048"], 2048),
        (["-c", "0"], 256),  # 0: the model's own context, as llama-server does
        (["-c", "512", "-c", "128"], 128),  # the last one wins
    ],
)
def test_context_size_from_the_command_line(tmp_path: Path, args: list[str], ctx: int) -> None:
    model = write_gguf(tmp_path / "m.gguf", ctx=256)
    result = estimate("--model", model, *args, overhead=0)
    assert result.kv_cache == ctx * PER_TOKEN
    assert f"ctx {ctx}," in result.detail


def test_context_defaults_to_4096_without_metadata_or_flag(tmp_path: Path) -> None:
    result = estimate(f"--model={write_gguf(tmp_path / 'm.gguf', ctx=None)}")
    assert result.kv_cache == 4096 * PER_TOKEN


@pytest.mark.parametrize(
    ("args", "bytes_k", "bytes_v", "label"),
    [
        (["-ctk", "q8_0", "-ctv", "q8_0"], 34 / 32, 34 / 32, "q8_0"),
        (["--cache-type-k", "q4_0", "--cache-type-v", "q5_1"], 18 / 32, 24 / 32, "K q4_0, V q5_1"),
        (["-ctk", "f32"], 4, 2, "K f32, V f16"),
        (["-ctv", "iq4_nl", "-ctk", "BF16"], 2, 18 / 32, "K bf16, V iq4_nl"),
    ],
)
def test_cache_types(
    tmp_path: Path, args: list[str], bytes_k: float, bytes_v: float, label: str
) -> None:
    model = write_gguf(tmp_path / "m.gguf", ctx=1024)
    result = estimate("-m", model, *args)
    assert result.kv_cache == int(1024 * 2 * 4 * 16 * (bytes_k + bytes_v))
    assert f"(ctx 1024, {label})" in result.detail


def test_explicit_head_dimensions_and_per_layer_kv_heads(tmp_path: Path) -> None:
    model = write_gguf(
        tmp_path / "m.gguf", layers=3, heads=8, kv_heads=[8, 0, 2], key_length=128, value_length=64
    )
    result = estimate("-m", model, "-c", "100")
    assert result.kv_cache == 100 * (8 + 0 + 2) * (128 * 2 + 64 * 2)


def test_grouped_query_attention(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf", layers=4, embd=128, heads=8, kv_heads=1)
    assert estimate("-m", model, "-c", "10").kv_cache == 10 * 4 * 1 * (16 * 2 * 2)


def test_split_files_are_summed_and_mmproj_added(tmp_path: Path) -> None:
    parts = [write_gguf(tmp_path / f"big-0000{i}-of-00003.gguf") for i in (1, 2, 3)]
    mmproj = write_gguf(tmp_path / "mmproj.gguf", vocab=10)
    result = estimate("-m", parts[0], "--mmproj", mmproj)
    assert result.weights == sum(p.stat().st_size for p in [*parts, mmproj])
    assert result.kv_cache == 256 * PER_TOKEN

    parts[2].unlink()  # a part that is missing counts nothing (llama-server will fail anyway)
    result = estimate("-m", parts[0])
    assert result.weights == sum(p.stat().st_size for p in parts[:2])


@pytest.mark.parametrize("flag", ["-ngl", "--n-gpu-layers", "--gpu-layers"])
def test_no_gpu_layers_keeps_weights_and_kv_in_ram(tmp_path: Path, flag: str) -> None:
    model = write_gguf(tmp_path / "m.gguf")
    result = estimate("-m", model, flag, "0")
    assert (result.weights, result.kv_cache) == (0, 0)
    assert result.total == result.overhead
    assert "stays in RAM: -ngl 0" in result.detail
    assert "KV 0 B (the 128.0 KiB (ctx 256, f16) stays in RAM)" in result.detail


def test_offloaded_layers_and_kv_offload_off(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf")
    assert estimate("-m", model, "-ngl", "99").weights == model.stat().st_size
    assert estimate("-m", model, "-ngl", "auto").weights == model.stat().st_size
    result = estimate("-m", model, "--no-kv-offload")
    assert (result.weights, result.kv_cache) == (model.stat().st_size, 0)


def test_unreadable_metadata_counts_the_file_and_no_kv(tmp_path: Path) -> None:
    model = tmp_path / "broken.gguf"
    model.write_bytes(b"GGUF" + bytes(1000))
    result = estimate("-m", model)
    assert (result.weights, result.kv_cache) == (1004, 0)
    assert "KV unknown (GGUF metadata unreadable)" in result.detail


@pytest.mark.parametrize(
    "argv",
    [
        ["llama-server", "-hf", "ggml-org/gemma-3-1b-it-GGUF"],
        ["llama-server", "-m", "/nonexistent/model.gguf"],
        ["llama-server", "-m"],
        [],
    ],
)
def test_no_local_model_file_gives_none(argv: list[str]) -> None:
    assert estimate_vram(argv) is None


def test_a_large_vocabulary_does_not_hide_the_kv_figures(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf", vocab=150_000, ctx=2048)
    assert estimate("-m", model).kv_cache == 2048 * PER_TOKEN
