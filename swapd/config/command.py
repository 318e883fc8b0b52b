"""Turning a `cmd` / `cmdStop` string into an argv, the way llama-swap does.

Lines whose trimmed text starts with `#` are dropped before macros are expanded (so a macro in
a commented-out line can never fail), a trailing backslash joins a line with the next, and
the result is split with POSIX shell quoting. No shell runs it: no pipes, `$VAR` or globs.
"""

from __future__ import annotations

import re
import shlex

_CONTINUATION = re.compile(r"[ \t]*\\[ \t]*\r?\n[ \t]*")


class CommandError(ValueError):
    """The command cannot be split or is empty; the message is operator-facing."""


def strip_comment_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("#"))


def split_command(text: str) -> tuple[str, tuple[str, ...]]:
    """`(display form, argv)` of a command whose comment lines are already removed."""
    joined = _CONTINUATION.sub(" ", text)
    try:
        argv = tuple(shlex.split(joined, posix=True))
    except ValueError as exc:
        raise CommandError(f"cannot split into arguments: {exc}") from None
    if not argv:
        raise CommandError("the command is empty")
    display = " ".join(line.strip() for line in joined.splitlines() if line.strip())
    return display, argv
