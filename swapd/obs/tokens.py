"""Token counts read from upstream responses while they are relayed, without holding them up.

The proxy hands each chunk to a sniffer *after* writing it to the client. Feeding is cheap and
decodes nothing: an SSE sniffer keeps only the last few complete `data:` lines that name one
of the keys below; a JSON sniffer keeps the body's head and tail (a whole body it is given at
once, without a copy). The values are decoded once, at the end, by `result()`.

The counts are read with one regular expression for the few field names that carry them
(`"prompt_tokens": 12`, `"predicted_n": 4`, ...), over a small buffer whole or, in a large
one, over a short window after each `"usage"`, `"timings"`, `"tokens_evaluated"` and
`"tokens_predicted"` key, so a large body (embeddings) is never parsed. Inside a JSON string a
quote is escaped, so text that merely mentions "prompt_tokens" is not mistaken for the field;
the last value of a field wins.

Sources, in order of preference:
  tokens in:   usage.prompt_tokens | usage.input_tokens (OpenAI / Anthropic / Responses,
               nested under "response" or "message" too), tokens_evaluated (llama.cpp
               /completion), timings.prompt_n + timings.cache_n (llama.cpp)
  tokens out:  usage.completion_tokens | usage.output_tokens, tokens_predicted,
               timings.predicted_n
  tokens/s:    timings.predicted_per_second (llama.cpp's own generation speed)
"""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass

SSE_KEPT_LINES = 4
"""Relevant `data:` lines kept; OpenAI's usage and llama.cpp's timings are in the last one."""
SSE_MAX_LINE = 1024 * 1024
"""A line longer than this (no newline yet) is dropped rather than buffered further."""
JSON_EDGE = 64 * 1024
"""Bytes kept from each end of a JSON body that is streamed rather than handed over whole."""
_SMALL = 4096
"""A buffer up to this size is scanned whole."""
_WINDOW = 1024
"""In a larger buffer, the bytes scanned after each key (usage and timings objects are a few
hundred bytes)."""

_KEYS = (b'"usage"', b'"timings"', b'"tokens_evaluated"', b'"tokens_predicted"')
_FIELD = re.compile(
    rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens|tokens_evaluated'
    rb'|tokens_predicted|prompt_n|cache_n|predicted_n|predicted_per_second)"'
    rb"[ \t\r\n]*:[ \t\r\n]*([0-9][0-9.eE+-]*)"
)


@dataclass(frozen=True, slots=True)
class Tokens:
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_per_s: float | None = None
    """llama.cpp's generation speed, when the response carried its `timings`."""


NO_TOKENS = Tokens()


class _Found:
    """The fields seen so far, by name; a later value replaces an earlier one."""

    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: dict[bytes, bytes] = {}

    def take(self, buf: bytes, lo: int, hi: int) -> None:
        fields = self.fields
        if hi - lo <= _SMALL:
            fields.update(_FIELD.findall(buf, lo, hi))
            return
        for key in _KEYS:
            at = buf.rfind(key, lo, hi)
            if at < 0:
                continue
            end = min(hi, at + _WINDOW)
            for match in _FIELD.finditer(buf, at, end):
                if match.end() < end or end == hi:  # not a number the window cut short
                    fields[match[1]] = match[2]

    def tokens(self) -> Tokens:
        fields = self.fields
        if not fields:
            return NO_TOKENS
        tokens_in = _first(fields, b"prompt_tokens", b"input_tokens", b"tokens_evaluated")
        if tokens_in is None:
            prompt_n = _first(fields, b"prompt_n")
            if prompt_n is not None:
                tokens_in = prompt_n + (_first(fields, b"cache_n") or 0)
        tokens_out = _first(
            fields, b"completion_tokens", b"output_tokens", b"tokens_predicted", b"predicted_n"
        )
        speed: float | None = None
        raw = fields.get(b"predicted_per_second")
        if raw is not None:
            try:
                speed = float(raw)
            except ValueError:
                speed = None
            if speed is not None and not 0 < speed < math.inf:
                speed = None
        return Tokens(tokens_in, tokens_out, speed)


def _first(fields: dict[bytes, bytes], *names: bytes) -> int | None:
    for name in names:
        raw = fields.get(name)
        if raw is not None and raw.isdigit():
            return int(raw)
    return None


def _has_key(buf: bytes, lo: int, hi: int) -> int:
    """Offset of the first known key in buf[lo:hi], or -1."""
    best = -1
    for key in _KEYS:
        at = buf.find(key, lo, hi if best < 0 else best)
        if at >= 0:
            best = at
    return best


class SseTokens:
    """Fed the bytes of a `text/event-stream` response as they are relayed."""

    __slots__ = ("_lines", "_partial", "_skipping")

    def __init__(self) -> None:
        self._partial = b""
        self._skipping = False
        self._lines: deque[bytes] = deque(maxlen=SSE_KEPT_LINES)

    def feed(self, chunk: bytes) -> None:
        data = self._partial + chunk if self._partial else chunk
        start = 0
        if self._skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self._partial = b""
                return
            self._skipping = False
            start = newline + 1
        end = data.rfind(b"\n", start)
        if end < 0:
            self._keep(data, start)
            return
        hit = _has_key(data, start, end)
        while hit >= 0:
            line_start = max(start, data.rfind(b"\n", start, hit) + 1)
            line_end = data.find(b"\n", hit, end + 1)
            if data.startswith(b"data:", line_start):
                self._lines.append(data[line_start + 5 : line_end])
            hit = _has_key(data, line_end + 1, end)
        self._keep(data, end + 1)

    def _keep(self, data: bytes, start: int) -> None:
        if start >= len(data):
            self._partial = b""
        elif len(data) - start > SSE_MAX_LINE:
            self._partial = b""
            self._skipping = True
        else:
            self._partial = data[start:] if start else data

    def result(self) -> Tokens:
        found = _Found()
        for line in self._lines:
            found.take(line, 0, len(line))
        # An unterminated last event (the stream ended without its blank line) still counts.
        if (
            self._partial.startswith(b"data:")
            and _has_key(self._partial, 0, len(self._partial)) >= 0
        ):
            found.take(self._partial, 5, len(self._partial))
        return found.tokens()


class JsonTokens:
    """Fed a JSON body in pieces: keeps its first and last `JSON_EDGE` bytes."""

    __slots__ = ("_head", "_head_size", "_tail", "_tail_size")

    def __init__(self) -> None:
        self._head: list[bytes] = []
        self._head_size = 0
        self._tail: deque[bytes] = deque()
        self._tail_size = 0

    def feed(self, chunk: bytes) -> None:
        if self._head_size < JSON_EDGE:
            self._head.append(chunk)
            self._head_size += len(chunk)
            return
        tail = self._tail
        tail.append(chunk)
        self._tail_size += len(chunk)
        while len(tail) > 1 and self._tail_size - len(tail[0]) >= JSON_EDGE:
            self._tail_size -= len(tail.popleft())

    def result(self) -> Tokens:
        head = b"".join(self._head)
        if not self._tail:
            return json_tokens(head)
        found = _Found()
        found.take(head, 0, len(head))
        tail = b"".join(self._tail)
        found.take(tail, 0, len(tail))
        return found.tokens()


def json_tokens(body: bytes) -> Tokens:
    """Token counts in a whole JSON response body."""
    found = _Found()
    found.take(body, 0, len(body))
    return found.tokens()


def sniffer_for(content_type: str) -> SseTokens | JsonTokens | None:
    """The sniffer for a response's media type (lower case, no parameters), if it has tokens."""
    if content_type == "text/event-stream":
        return SseTokens()
    if content_type == "application/json" or content_type.endswith("+json"):
        return JsonTokens()
    return None
