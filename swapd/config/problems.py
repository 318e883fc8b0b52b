"""Collecting config problems and warnings, each tied to a key path and, when known, a line.

Every stage of the loader reports into one `Report` instead of raising, so a user sees all
problems of a file at once. A problem renders as `<key path>[ (line N)]: <message>`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

KeyPath = tuple[str | int, ...]
ROOT_LABEL = "(top level)"


def format_path(path: KeyPath) -> str:
    """`("models", "a", "aliases", 0)` -> `models.a.aliases[0]`; the root is `(top level)`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or ROOT_LABEL


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or "" when nothing is close."""
    # Compare case-insensitively so `startport` still finds `startPort`.
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[matches[0]]}'?)" if matches else ""


@dataclass(frozen=True, slots=True)
class Finding:
    path: KeyPath
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = format_path(self.path)
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


@dataclass(slots=True)
class Report:
    """Problems and warnings found so far, plus the paths already known to be broken.

    `marks` maps a key path to the 1-based line of its key (or sequence item) in the YAML text.
    `bad` holds paths the schema rejected; later stages skip them so one mistake is reported
    once, not again by every stage that reads the same value.
    """

    marks: Mapping[KeyPath, int] = field(default_factory=dict)
    problems: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    bad: set[KeyPath] = field(default_factory=set)

    def line_of(self, path: KeyPath) -> int | None:
        for end in range(len(path), 0, -1):
            line = self.marks.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: KeyPath, message: str, *, line: int | None = None) -> None:
        self.problems.append(Finding(path, message, line or self.line_of(path)))

    def warn(self, path: KeyPath, message: str) -> None:
        self.warnings.append(Finding(path, message, self.line_of(path)))

    def mark_bad(self, path: KeyPath) -> None:
        self.bad.add(path)

    def is_bad(self, path: KeyPath) -> bool:
        return any(path[:end] in self.bad for end in range(len(path) + 1))

    def rendered_problems(self) -> list[str]:
        return _render(self.problems)

    def rendered_warnings(self) -> list[str]:
        return _render(self.warnings)


def _render(findings: list[Finding]) -> list[str]:
    # Stable sort by line keeps pipeline order for findings on one line; identical findings
    # (a global macro checked once per model) are reported once.
    ordered = sorted(findings, key=lambda f: f.line or 0)
    return list(dict.fromkeys(str(f) for f in ordered))
