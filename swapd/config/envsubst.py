"""`${env.VAR}` substitution on the raw YAML text, before it is parsed.

Working on text (as llama-swap does) lets an environment variable supply any scalar, typed by
YAML afterwards. References inside YAML comments and inside `#` lines of block scalars (the
comment lines `cmd` drops anyway) are left alone, so documenting a variable never requires it
to be set. Substitution never adds a line, so YAML line numbers stay true.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

ENV_REF = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
# A block scalar header (`key: |`, `- >-`, `key: |2+`) at the end of a line's code part.
_BLOCK_HEADER = re.compile(r"(?:^|:|-)\s+[|>][0-9+-]{0,2}\s*$|^\s*[|>][0-9+-]{0,2}\s*$")
_QUOTE_OPENERS = frozenset(" \t:,[{-")
# The line breaks YAML counts; str.splitlines also splits on form feeds and others, which
# would put reported line numbers out of step with the parser's.
_LINE = re.compile(r"[^\r\n\x85\u2028\u2029]*(?:\r\n|[\r\n\x85\u2028\u2029])?")
_BREAKS = "\r\n\x85\u2028\u2029"


@dataclass(frozen=True, slots=True)
class EnvProblem:
    line: int
    message: str


def substitute_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[EnvProblem]]:
    """Replace `${env.VAR}` outside comments; unusable references stay as they are."""
    problems: list[EnvProblem] = []
    out: list[str] = []
    for number, code, rest in _split_comments(text):

        def replace(match: re.Match[str], number: int = number) -> str:
            name = match.group(1)
            value = environ.get(name)
            if value is None:
                problems.append(EnvProblem(number, f"environment variable '{name}' is not set"))
                return match.group(0)
            if any(c in value for c in "\n\r\0"):
                problems.append(
                    EnvProblem(
                        number,
                        f"environment variable '{name}' contains a newline, carriage return "
                        "or NUL character and cannot be substituted",
                    )
                )
                return match.group(0)
            # Escaped so the value is safe inside a double-quoted YAML scalar.
            return value.replace("\\", "\\\\").replace('"', '\\"')

        out.append(ENV_REF.sub(replace, code) + rest)
    return "".join(out), problems


def _split_comments(text: str) -> Iterator[tuple[int, str, str]]:
    """Yield `(line number, code part, comment part + line ending)` for every line."""
    block_indent: int | None = None
    for index, match in enumerate(_LINE.finditer(text)):
        raw = match.group(0)
        if not raw:
            break
        number = index + 1
        body = raw.rstrip(_BREAKS)
        ending = raw[len(body) :]
        stripped = body.lstrip(" ")
        indent = len(body) - len(stripped)
        if block_indent is not None:
            if not stripped.strip() or indent > block_indent:
                if stripped.startswith("#"):
                    yield number, "", raw
                else:
                    yield number, body, ending
                continue
            block_indent = None
        if stripped.startswith("#"):
            yield number, "", raw
            continue
        cut = _comment_start(body)
        code, comment = body[:cut], body[cut:]
        if _BLOCK_HEADER.search(code):
            block_indent = indent
        yield number, code, comment + ending


def _comment_start(line: str) -> int:
    """Index where a trailing `# comment` starts, or len(line); quotes are respected."""
    quote: str | None = None
    previous = " "
    i = 0
    while i < len(line):
        char = line[i]
        if quote == '"' and char == "\\":
            i += 2
            continue
        if quote == "'" and line.startswith("''", i):
            i += 2
            continue
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"" and previous in _QUOTE_OPENERS:
            quote = char
        elif char == "#" and previous in " \t":
            return i
        previous = char
        i += 1
    return len(line)
