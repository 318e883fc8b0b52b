"""YAML text -> plain Python values plus the line of every key, for messages that point home.

PyYAML's own constructor forgets where values came from and silently keeps the last of two
equal keys; composing nodes ourselves keeps the marks and turns duplicates into problems.
"""

from __future__ import annotations

import datetime
from typing import Any

import yaml

from swapd.config.problems import KeyPath, Report

# libyaml when PyYAML was built with it; the parser is the slow part of a load.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_DEPTH = 64
_MERGE_TAG = "tag:yaml.org,2002:merge"


def parse_yaml(text: str, report: Report) -> tuple[Any, dict[KeyPath, int]] | None:
    """The document and its marks; None (with a problem reported) when the text is not YAML."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        marks: dict[KeyPath, int] = {}
        if node is None:
            return None, marks
        return _Builder(loader, marks, report).build(node, (), 0), marks
    except yaml.MarkedYAMLError as exc:
        report.problem((), _yaml_message(exc), line=_line(exc))
        return None
    except yaml.YAMLError as exc:
        report.problem((), f"invalid YAML: {exc}")
        return None
    finally:
        loader.dispose()


def _line(exc: yaml.MarkedYAMLError) -> int | None:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "invalid YAML: " + (", ".join(parts) if parts else "syntax error")


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, marks: dict[KeyPath, int], report: Report):
        self._loader = loader
        self._marks = marks
        self._report = report
        self._flattened: set[int] = set()

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            self._report.problem(path, "nested too deeply (a recursive alias?)")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self._marks[(*path, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*path, index), depth + 1))
            return items
        value = self._loader.construct_object(node, deep=True)
        # Keep the document JSON-shaped: dates stay the text the user wrote.
        if isinstance(value, datetime.date | datetime.datetime):
            return str(node.value)
        return value

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        if id(node) not in self._flattened:
            self._flattened.add(id(node))
            self._check_duplicates(node, path)
            # Resolves `<<: *anchor` merge keys in place; explicit keys end up after merged ones.
            self._loader.flatten_mapping(node)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                self._report.problem(path, "mapping keys must be plain scalars", line=line)
                continue
            # The key as written: `7b:` names model "7b", not the integer 7.
            key = str(key_node.value)
            self._marks[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def _check_duplicates(self, node: yaml.MappingNode, path: KeyPath) -> None:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in first_line:
                self._report.problem(
                    (*path, key),
                    f"duplicate key '{key}' (first given on line {first_line[key]})",
                    line=line,
                )
            else:
                first_line[key] = line
