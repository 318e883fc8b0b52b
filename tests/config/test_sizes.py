"""Memory sizes: the string syntax, its errors, integers as MiB, and how sizes are shown."""

from __future__ import annotations

import re

import pytest

from swapd.config.schema import load_schema
from swapd.config.sizes import GIB, MIB, fmt_bytes, parse_size
from tests.config.helpers import load, problems

KIB = 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1B", 1),
        ("1b", 1),
        ("2KB", 2000),
        ("2MB", 2 * 1000**2),
        ("2GB", 2 * 1000**3),
        ("2TB", 2 * 1000**4),
        ("2KiB", 2 * KIB),
        ("2MiB", 2 * MIB),
        ("2GiB", 2 * GIB),
        ("2TiB", 2 * 1024**4),
        ("2K", 2 * KIB),
        ("2M", 2 * MIB),
        ("2G", 2 * GIB),
        ("2T", 2 * 1024**4),
        ("2gib", 2 * GIB),
        ("2GIB", 2 * GIB),
        ("2gb", 2 * 1000**3),
        ("2g", 2 * GIB),
        ("7.5GiB", 7 * GIB + GIB // 2),
        ("0.5 GiB", GIB // 2),
        ("7.5 GB", 7_500_000_000),
        (" 512 MiB ", 512 * MIB),
        ("512\tMiB", 512 * MIB),
        ("0B", 0),
        ("1.5B", 2),  # a fraction of a byte is rounded up
        ("0.001KB", 1),
    ],
)
def test_parse_size_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8192", "'8192' has no unit: write e.g. '8192MiB', or an integer for MiB"),
        ("7.5", "'7.5' has no unit: write e.g. '7.5MiB', or an integer for MiB"),
        ("lots", "'lots' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"),
        ("", "'' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"),
        ("GiB", "'GiB' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"),
        (".5GiB", "'.5GiB' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"),
        ("1.GiB", "'1.GiB' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"),
        ("1,5GiB", "'1,5GiB' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"),
        (
            "8 GiB free",
            "'8 GiB free' is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'",
        ),
        ("-1GiB", "'-1GiB' is negative; a size is at least 0"),
        (
            "5 XB",
            "'5 XB' has an unknown unit 'XB'; use B, KB/MB/GB/TB (powers of 1000), "
            "KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024)",
        ),
        (
            "5Gi",
            "'5Gi' has an unknown unit 'Gi'; use B, KB/MB/GB/TB (powers of 1000), "
            "KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024)",
        ),
        (
            "5 bytes",
            "'5 bytes' has an unknown unit 'bytes'; use B, KB/MB/GB/TB (powers of 1000), "
            "KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024)",
        ),
    ],
)
def test_parse_size_rejects_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_size(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "text",
    ["1B", "2 kb", "7.5GiB", " 512 MiB ", "3T", "8192", "lots", "5Gi", "1.GiB", "-1GiB", "5 XB"],
)
def test_schema_size_pattern_agrees_with_the_parser(text: str) -> None:
    pattern = load_schema()["$defs"]["size"]["pattern"]
    try:
        parse_size(text)
        parsed = True
    except ValueError:
        parsed = False
    assert bool(re.search(pattern, text)) == parsed


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (512 * MIB, "512 MiB"),
        (7 * GIB + GIB // 2, "7.5 GiB"),
        (8 * GIB, "8 GiB"),
        (GIB - 1, "1 GiB"),  # rounds up into the next unit rather than "1024 MiB"
        (80 * GIB - 400 * MIB, "79.6 GiB"),
        (3 * 1024**4, "3 TiB"),
        (2048 * 1024**4, "2048 TiB"),
    ],
)
def test_fmt_bytes(n: int, shown: str) -> None:
    assert fmt_bytes(n) == shown


def test_vram_integer_means_mib_and_string_is_parsed() -> None:
    config = load(
        """
        models:
          a:
            cmd: server --port ${PORT}
            vram: 8192
          b:
            cmd: server --port ${PORT}
            vram: 7.5 GiB
          c:
            cmd: server --port ${PORT}
          d:
            cmd: server --port ${PORT}
            vram: "6GB"
          cpu-only:
            cmd: server --port ${PORT}
            vram: 0
        """
    )
    assert config.models["cpu-only"].vram_bytes == 0
    assert config.models["a"].vram_bytes == 8 * GIB
    assert config.models["b"].vram_bytes == 7 * GIB + GIB // 2
    assert config.models["c"].vram_bytes is None
    assert config.models["d"].vram_bytes == 6 * 1000**3


def test_vram_from_macros_whole_and_inside_a_string() -> None:
    config = load(
        """
        macros:
          mib: 4096
          n: 6.5
        models:
          a:
            cmd: server --port ${PORT}
            vram: ${mib}
          b:
            cmd: server --port ${PORT}
            vram: ${n}GiB
        """
    )
    assert config.models["a"].vram_bytes == 4 * GIB
    assert config.models["b"].vram_bytes == 6 * GIB + GIB // 2


def test_vram_problems_name_the_key_path() -> None:
    found = problems(
        """
        macros:
          s: lots
          f: 1.5
        models:
          zero:
            cmd: server --port ${PORT}
            vram: 0
          zero-string:
            cmd: server --port ${PORT}
            vram: 0GiB
          negative:
            cmd: server --port ${PORT}
            vram: -1
          float:
            cmd: server --port ${PORT}
            vram: 7.5
          no-unit:
            cmd: server --port ${PORT}
            vram: "8192"
          bad-unit:
            cmd: server --port ${PORT}
            vram: 8 GiBs
          macro-string:
            cmd: server --port ${PORT}
            vram: ${s}
          macro-float:
            cmd: server --port ${PORT}
            vram: ${f}
          unknown-macro:
            cmd: server --port ${PORT}
            vram: ${size}
          list:
            cmd: server --port ${PORT}
            vram: [1]
        """
    )
    assert found == [
        "models.negative.vram (line 14): must be at least 0, got -1",
        "models.float.vram (line 17): expected an integer or a string, got a number (7.5)",
        'models.no-unit.vram (line 20): "8192" is not a size: expected a number and a unit, '
        'e.g. "8GiB" or "7.5 GB" (a number without quotes or unit is MiB)',
        'models.bad-unit.vram (line 23): "8 GiBs" is not a size: expected a number and a unit, '
        'e.g. "8GiB" or "7.5 GB" (a number without quotes or unit is MiB)',
        "models.macro-string.vram (line 26): 'lots' is not a size: expected a number and a "
        "unit, e.g. '8GiB' or '7.5 GB'",
        "models.macro-float.vram (line 29): expected an integer (MiB) or a size such as "
        "'8GiB', got 1.5 after macro expansion",
        "models.unknown-macro.vram (line 32): unknown macro '${size}'",
        "models.list.vram (line 35): expected an integer or a string, got a list",
    ]
