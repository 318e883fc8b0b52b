"""What the tests need to know about a Dockerfile without a Docker engine.

`read_dockerfile` parses one with dockerfile-parse into stages, each with its instructions and
what it inherits from an earlier stage; `DockerIgnore` answers whether a path of the build
context is excluded, with the matching rules of Docker's .dockerignore (moby's patternmatcher:
Go-style globs where `**` spans directories, `!` re-includes, the last matching line wins, and
a pattern that matches a parent directory matches everything under it).
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dockerfile_parse import DockerfileParser

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper case: FROM, RUN, COPY, ..."""
    value: str
    line: int


@dataclass
class Stage:
    name: str
    base: str
    """The image after substituting the global ARGs, or the name of an earlier stage."""
    parent: Stage | None
    """The earlier stage this one is built FROM, if any."""
    instructions: list[Instruction] = field(default_factory=list)

    def own(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def chain(self) -> list[Stage]:
        """This stage and the stages it is built on, the oldest first."""
        stages: list[Stage] = []
        stage: Stage | None = self
        while stage is not None:
            stages.insert(0, stage)
            stage = stage.parent
        return stages

    def effective(self, keyword: str) -> Instruction | None:
        """The last `keyword` instruction in force in this stage (inherited ones included)."""
        found = [i for stage in self.chain() for i in stage.own(keyword)]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[Instruction]:
        return [i for stage in self.chain() for i in stage.own(keyword)]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def default_stage(self) -> Stage:
        """What `docker build` without --target builds: the last stage."""
        return self.stages[-1]

    def instructions(self) -> Iterator[Instruction]:
        for stage in self.stages:
            yield from stage.instructions


def substitute(text: str, variables: dict[str, str]) -> str:
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def read_dockerfile(path: Path) -> Dockerfile:
    parser = DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for item in parser.structure:
        keyword = item["instruction"].upper()
        if keyword == "COMMENT":
            continue
        instruction = Instruction(keyword, item["value"], item["startline"] + 1)
        if keyword == "FROM":
            words = instruction.value.split()
            image = substitute(words[0], global_args)
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            parent = next((s for s in stages if s.name == image), None)
            stages.append(Stage(name=name, base=image, parent=parent))
        elif not stages:
            assert keyword == "ARG", f"{path}:{instruction.line}: {keyword} before FROM"
            arg_name, _, default = instruction.value.partition("=")
            global_args[arg_name.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(path=path, global_args=global_args, stages=stages)


def exec_form(value: str) -> list[str]:
    """The JSON (exec) form of ENTRYPOINT, CMD or HEALTHCHECK's CMD; AssertionError if not."""
    parsed = json.loads(value)
    assert isinstance(parsed, list), value
    assert all(isinstance(word, str) for word in parsed), value
    return parsed


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    flags: tuple[str, ...]
    line: int


def copy_of(instruction: Instruction) -> Copy:
    """COPY/ADD in shell form (JSON form is parsed too); flags such as --chown are kept."""
    value = instruction.value.strip()
    words = exec_form(value) if value.startswith("[") else shlex.split(value)
    flags = tuple(w for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, f"line {instruction.line}: {value}"
    return Copy(tuple(paths[:-1]), paths[-1], flags, instruction.line)


def image_paths(copy: Copy, context: Path, ignore: DockerIgnore) -> dict[str, Path]:
    """Where each file of the build context that a COPY names ends up in the image.

    Docker's rules: a directory source copies its contents (not itself) into the destination;
    several sources, or a destination ending in `/`, make the destination a directory. Files
    .dockerignore excludes are not in the context, so they are not copied.
    """
    into_dir = copy.dest.endswith("/") or len(copy.sources) > 1
    result: dict[str, Path] = {}
    for source in copy.sources:
        local = context / source
        if local.is_dir() and not local.is_symlink():
            for path in sorted(local.rglob("*")):
                in_context = not ignore.excluded(path.relative_to(context).as_posix())
                if (path.is_file() or path.is_symlink()) and in_context:
                    rel = path.relative_to(local).as_posix()
                    result[str(PurePosixPath(copy.dest) / rel)] = path
        elif not ignore.excluded(source):
            target = PurePosixPath(copy.dest) / local.name if into_dir else PurePosixPath(copy.dest)
            result[str(target)] = local
    return result


class DockerIgnore:
    """Docker's .dockerignore matching, for paths relative to the build context."""

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = _clean(line)
            if cleaned:
                self.patterns.append((exclusion, _compile(cleaned)))

    def excluded(self, path: str) -> bool:
        path = _clean(path)
        parents = path.split("/")[:-1]
        matched = False
        for exclusion, pattern in self.patterns:
            # An inclusion line matters only if the path is not yet excluded, and vice versa.
            if exclusion != matched:
                continue
            match = bool(pattern.fullmatch(path)) or any(
                pattern.fullmatch("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if match:
                matched = not exclusion
        return matched


def _clean(path: str) -> str:
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _compile(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            out += ".*" if i == len(pattern) else "(.*/)?"
            continue
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[":
            end = pattern.find("]", i + 1)
            assert end > i, f"unterminated [ in {pattern!r}"
            out += f"[{pattern[i + 1 : end]}]"
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(ch)
        i += 1
    return re.compile(out)
