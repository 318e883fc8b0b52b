"""Memory sizes as written in a config (`vram`, `vramHeadroom`) and as shown in messages.

A size is an integer, meaning MiB (the unit nvidia-smi prints), or a string: a number, decimals
allowed, then a unit, case-insensitive, with optional space between: `B`; `KB`, `MB`, `GB`,
`TB` (powers of 1000); `KiB`, `MiB`, `GiB`, `TiB` and the short `K`, `M`, `G`, `T` (powers of
1024). A fraction of a byte is rounded up.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MIB = 1024**2
GIB = 1024**3

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)", re.IGNORECASE)
_UNITS: dict[str, int] = {
    "b": 1,
    **{f"{p}b": 1000 ** (n + 1) for n, p in enumerate("kmgt")},
    **{f"{p}ib": 1024 ** (n + 1) for n, p in enumerate("kmgt")},
    **{p: 1024 ** (n + 1) for n, p in enumerate("kmgt")},
}
UNITS_HINT = "B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB or K/M/G/T (powers of 1024)"


def parse_size(text: str) -> int:
    """Bytes in a size string such as `"7.5GiB"` or `"512 MiB"`; ValueError says what is wrong.

    Integers (MiB) are the caller's business: this reads the string form only.
    """
    stripped = text.strip()
    match = _SIZE.fullmatch(stripped)
    if match is None:
        if stripped.startswith("-"):
            raise ValueError(f"{text!r} is negative; a size is at least 0")
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", stripped):
            raise ValueError(
                f"{text!r} has no unit: write e.g. '{stripped}MiB', or an integer for MiB"
            )
        raise ValueError(
            f"{text!r} is not a size: expected a number and a unit, e.g. '8GiB' or '7.5 GB'"
        )
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"{text!r} has an unknown unit {unit!r}; use {UNITS_HINT}")
    return math.ceil(Fraction(number) * factor)


def fmt_bytes(n: int) -> str:
    """`512 MiB`, `7.5 GiB`, `1023 B`: the largest binary unit, at most one decimal."""
    if abs(n) < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if abs(round(value, 1)) < 1024:
            return f"{value:.1f}".removesuffix(".0") + f" {unit}"
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + " TiB"
