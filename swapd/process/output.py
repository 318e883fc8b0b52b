"""A child's stdout and stderr, kept as a bounded ring of lines and echoed to the log."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

child_log = logging.getLogger("swapd.child")

MAX_LINE_BYTES = 16 * 1024
"""A line longer than this is cut into pieces, so one runaway line cannot grow memory."""


class LineSplitter:
    """Turns the byte chunks of one pipe into text lines (without their line endings)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self._partial += data
        lines: list[str] = []
        while True:
            end = self._partial.find(b"\n")
            if end < 0:
                if len(self._partial) < self._max:
                    return lines
                end = self._max
                raw = bytes(self._partial[:end])
                del self._partial[:end]
            else:
                raw = bytes(self._partial[:end])
                del self._partial[: end + 1]
            lines.append(_decode(raw))

    def flush(self) -> list[str]:
        """The unterminated last line, if any (call at EOF)."""
        if not self._partial:
            return []
        raw = bytes(self._partial)
        self._partial.clear()
        return [_decode(raw)]


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


class OutputRing:
    """The last `capacity` lines of a model's output, stdout and stderr in arrival order."""

    def __init__(
        self, model: str, capacity: int = 500, sink: Callable[[str, str], None] | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError(f"output ring capacity must be at least 1, got {capacity}")
        self.model = model
        self._lines: deque[str] = deque(maxlen=capacity)
        self._sink = sink

    def add(self, line: str) -> None:
        self._lines.append(line)
        if self._sink is not None:
            self._sink(self.model, line)
        if child_log.isEnabledFor(logging.INFO):
            child_log.info("%s | %s", self.model, line, extra={"model": self.model})

    def tail(self, lines: int | None = None) -> list[str]:
        if lines is None:
            return list(self._lines)
        if lines <= 0:
            return []
        return list(self._lines)[-lines:]

    def __len__(self) -> int:
        return len(self._lines)
