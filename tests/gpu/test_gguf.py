"""The GGUF metadata reader, on files written by the `gguf` package and on broken ones."""

from __future__ import annotations

import os
import struct
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swapd.gpu.gguf import KEPT_INT_ARRAY_MAX, read_metadata


def write_gguf(
    path: Path,
    arch: str = "llama",
    *,
    layers: int = 2,
    embd: int = 64,
    heads: int = 4,
    kv_heads: int | Sequence[int] = 4,
    ctx: int | None = 256,
    key_length: int | None = None,
    value_length: int | None = None,
    vocab: int = 0,
    extra: Callable[[gguf.GGUFWriter], None] | None = None,
) -> Path:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(layers)
    writer.add_embedding_length(embd)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads if isinstance(kv_heads, int) else list(kv_heads))
    if ctx is not None:
        writer.add_context_length(ctx)
    if key_length is not None:
        writer.add_key_length(key_length)
    if value_length is not None:
        writer.add_value_length(value_length)
    if vocab:
        writer.add_token_list([f"token-{i}" for i in range(vocab)])
        writer.add_token_scores([0.0] * vocab)
    if extra is not None:
        extra(writer)
    writer.add_tensor("token_embd.weight", np.zeros((8, embd), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def every_scalar(writer: gguf.GGUFWriter) -> None:
    writer.add_uint8("t.u8", 255)
    writer.add_int8("t.i8", -128)
    writer.add_uint16("t.u16", 65535)
    writer.add_int16("t.i16", -32768)
    writer.add_uint32("t.u32", 2**32 - 1)
    writer.add_int32("t.i32", -(2**31))
    writer.add_float32("t.f32", 0.5)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "héllo")
    writer.add_uint64("t.u64", 2**64 - 1)
    writer.add_int64("t.i64", -(2**63))
    writer.add_float64("t.f64", 1e300)


def test_reads_every_scalar_type(tmp_path: Path) -> None:
    metadata = read_metadata(write_gguf(tmp_path / "m.gguf", extra=every_scalar))
    assert metadata is not None
    assert {k: v for k, v in metadata.items() if k.startswith("t.")} == {
        "t.u8": 255,
        "t.i8": -128,
        "t.u16": 65535,
        "t.i16": -32768,
        "t.u32": 2**32 - 1,
        "t.i32": -(2**31),
        "t.f32": 0.5,
        "t.bool": True,
        "t.str": "héllo",
        "t.u64": 2**64 - 1,
        "t.i64": -(2**63),
        "t.f64": 1e300,
    }
    assert metadata["general.architecture"] == "llama"
    assert metadata["llama.block_count"] == 2


def test_keeps_small_integer_arrays_and_skips_the_rest(tmp_path: Path) -> None:
    def arrays(writer: gguf.GGUFWriter) -> None:
        writer.add_array("t.big_ints", list(range(KEPT_INT_ARRAY_MAX + 1)))
        writer.add_array("t.floats", [1.5, 2.5])
        writer.add_array("t.strings", ["a", "bc"])
        writer.add_array("t.nested", [[1, 2], [3]])
        writer.add_uint32("t.after", 7)

    path = write_gguf(tmp_path / "m.gguf", layers=3, kv_heads=[8, 0, 2], extra=arrays)
    metadata = read_metadata(path)
    assert metadata is not None
    assert metadata["llama.attention.head_count_kv"] == (8, 0, 2)
    assert metadata["t.after"] == 7
    assert not {"t.big_ints", "t.floats", "t.strings", "t.nested"} & metadata.keys()


def test_skips_a_large_vocabulary_and_reads_what_follows(tmp_path: Path) -> None:
    def after(writer: gguf.GGUFWriter) -> None:
        writer.add_string("t.after", "still read")

    metadata = read_metadata(write_gguf(tmp_path / "m.gguf", vocab=150_000, extra=after))
    assert metadata is not None
    assert metadata["t.after"] == "still read"
    assert "tokenizer.ggml.tokens" not in metadata


def test_a_truncated_file_gives_none_never_a_partial_answer(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", vocab=3000, extra=every_scalar)
    whole = path.read_bytes()
    full = read_metadata(path)
    assert full is not None
    cut = tmp_path / "cut.gguf"
    outcomes = set()
    for length in [*range(0, 200), *range(200, len(whole), 97)]:
        cut.write_bytes(whole[:length])
        metadata = read_metadata(cut)
        assert metadata is None or metadata == full, length
        outcomes.add(metadata is None)
    assert outcomes == {True, False}  # cuts in the tensor data still have the whole header


def _header(*, version: int = 3, kv_count: int = 1) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, 0, kv_count)


def _key(name: bytes) -> bytes:
    return struct.pack("<Q", len(name)) + name


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a model at all, just text\n" * 10,
        b"GGML" + bytes(100),
        _header(version=1) + _key(b"a") + struct.pack("<II", 4, 1),
        _header(kv_count=2**40),
        _header() + struct.pack("<Q", 2**62) + b"key",
        _header() + _key(b"s") + struct.pack("<IQ", 8, 2**60),
        _header() + _key(b"a") + struct.pack("<IIQ", 9, 8, 2**60),
        _header() + _key(b"a") + struct.pack("<IIQ", 9, 4, 2**60),
        _header() + _key(b"a") + struct.pack("<IIQ", 9, 9, 2**60),
        _header() + _key(b"x") + struct.pack("<I", 13) + bytes(8),
        _header() + _key(b"x") + struct.pack("<IIQ", 9, 99, 1) + bytes(8),
    ],
    ids=[
        "empty",
        "text",
        "other-magic",
        "gguf-v1",
        "absurd-kv-count",
        "absurd-key-length",
        "absurd-string-length",
        "absurd-string-array",
        "absurd-number-array",
        "absurd-nested-array",
        "unknown-type",
        "unknown-item-type",
    ],
)
def test_malformed_files_give_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    assert read_metadata(path) is None


def test_missing_files_directories_and_fifos_give_none(tmp_path: Path) -> None:
    assert read_metadata(tmp_path / "absent.gguf") is None
    assert read_metadata(tmp_path) is None
    os.mkfifo(tmp_path / "fifo.gguf")
    assert read_metadata(tmp_path / "fifo.gguf") is None  # and does not block


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_header_never_raise(tail: bytes) -> None:
    with tempfile.NamedTemporaryFile(suffix=".gguf") as file:
        file.write(_header(kv_count=3) + tail)
        file.flush()
        metadata = read_metadata(file.name)
    assert metadata is None or isinstance(metadata, dict)
