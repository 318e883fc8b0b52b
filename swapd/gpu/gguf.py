"""A minimal, bounded reader of GGUF metadata (the key/value header of a llama.cpp model file).

Only what the VRAM estimate needs: scalars, strings and small integer arrays. Everything else is
skipped without being decoded. Bad input never raises: the reader returns None.
"""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import BinaryIO

MetadataValue = int | float | bool | str | tuple[int, ...]

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
KEPT_INT_ARRAY_MAX = 4096
MAX_KEY_BYTES = 64 * 1024
MAX_KV_COUNT = 1 << 20
MAX_STRING_BYTES = 64 * 1024 * 1024
MAX_ARRAY_DEPTH = 4
CHUNK = 1 << 20

_STRING, _ARRAY = 8, 9
_SCALARS: dict[int, struct.Struct] = {
    0: struct.Struct("<B"),
    1: struct.Struct("<b"),
    2: struct.Struct("<H"),
    3: struct.Struct("<h"),
    4: struct.Struct("<I"),
    5: struct.Struct("<i"),
    6: struct.Struct("<f"),
    7: struct.Struct("<?"),
    10: struct.Struct("<Q"),
    11: struct.Struct("<q"),
    12: struct.Struct("<d"),
}
_INTEGER_TYPES = frozenset({0, 1, 2, 3, 4, 5, 10, 11})
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class MalformedError(Exception):
    pass


class _Reader:
    """Buffered forward reader: small fields come out of one big buffer, not a read() each."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._size = size
        self._buf = b""
        self._pos = 0
        self._buf_offset = 0  # file offset of _buf[0]

    def _offset(self) -> int:
        return self._buf_offset + self._pos

    def _fill(self, n: int) -> None:
        if self._pos + n <= len(self._buf):
            return
        if self._offset() + n > self._size:
            raise MalformedError("truncated")
        rest = self._buf[self._pos :]
        self._buf_offset += self._pos
        self._buf = rest + self._file.read(max(n - len(rest), CHUNK))
        self._pos = 0
        if len(self._buf) < n:
            raise MalformedError("truncated")

    def unpack(self, fmt: struct.Struct) -> int | float | bool:
        self._fill(fmt.size)
        value: int | float | bool = fmt.unpack_from(self._buf, self._pos)[0]
        self._pos += fmt.size
        return value

    def u32(self) -> int:
        return int(self.unpack(_U32))

    def u64(self) -> int:
        return int(self.unpack(_U64))

    def remaining(self) -> int:
        return self._size - self._offset()

    def take(self, n: int) -> bytes:
        self._fill(n)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def skip(self, n: int) -> None:
        target = self._offset() + n
        if target > self._size:
            raise MalformedError("truncated")
        if self._pos + n <= len(self._buf):
            self._pos += n
            return
        self._file.seek(target)
        self._buf, self._pos, self._buf_offset = b"", 0, target

    def skip_strings(self, count: int) -> None:
        if count * _U64.size > self.remaining():
            raise MalformedError("string array longer than the file")
        buf, pos = self._buf, self._pos
        unpack_from = _U64.unpack_from
        for _ in range(count):
            if pos + 8 > len(buf):
                self._pos = pos
                self._fill(8)
                buf, pos = self._buf, self._pos
            (length,) = unpack_from(buf, pos)
            pos += 8 + length
            if pos > len(buf):
                self._pos = len(buf)
                self.skip(pos - len(buf))
                buf, pos = self._buf, self._pos
        self._pos = pos

    def string(self) -> str:
        length = self.u64()
        if length > MAX_STRING_BYTES:
            raise MalformedError("string too long")
        return self.take(length).decode("utf-8", errors="replace")


def _value(reader: _Reader, kind: int) -> MetadataValue | None:
    if kind == _STRING:
        return reader.string()
    if kind == _ARRAY:
        return _array(reader, depth=0)
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise MalformedError(f"unknown value type {kind}")
    return reader.unpack(fmt)


def _array(reader: _Reader, *, depth: int) -> tuple[int, ...] | None:
    """A small integer array as a tuple; any other array is skipped (None)."""
    kind = reader.u32()
    count = reader.u64()
    if kind == _STRING:
        reader.skip_strings(count)
        return None
    if kind == _ARRAY:
        # Each nested array has a 12-byte header, which bounds the loop by the file size.
        if depth >= MAX_ARRAY_DEPTH or count * 12 > reader.remaining():
            raise MalformedError("nested arrays too deep or too long")
        for _ in range(count):
            _array(reader, depth=depth + 1)
        return None
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise MalformedError(f"unknown array item type {kind}")
    if kind in _INTEGER_TYPES and count <= KEPT_INT_ARRAY_MAX:
        return tuple(int(reader.unpack(fmt)) for _ in range(count))
    reader.skip(count * fmt.size)
    return None


def read_metadata(path: str | Path) -> dict[str, MetadataValue] | None:
    """The GGUF key/value metadata of `path`, or None when it is not a readable GGUF file."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block open()
            return None
        with open(path, "rb") as file:
            reader = _Reader(file, info.st_size)
            if reader.take(4) != MAGIC or reader.u32() not in SUPPORTED_VERSIONS:
                return None
            reader.u64()  # tensor count
            kv_count = reader.u64()
            if kv_count > MAX_KV_COUNT:
                return None
            metadata: dict[str, MetadataValue] = {}
            for _ in range(kv_count):
                key_length = reader.u64()
                if key_length > MAX_KEY_BYTES:
                    return None
                key = reader.take(key_length).decode("utf-8", errors="replace")
                value = _value(reader, reader.u32())
                if value is not None:
                    metadata[key] = value
            return metadata
    except (OSError, MalformedError, struct.error, ValueError):
        return None
