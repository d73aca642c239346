"""Safe YAML loading that remembers where every field was written.

PyYAML's ``safe_load`` forgets positions and silently keeps the last of two
duplicate keys; we compose the node tree with the safe loader instead and build
the data ourselves, so errors can name a line and column, and duplicates are errors.

Anchors and aliases (``&retry`` / ``*retry``) work; merge keys (``<<``), recursive
aliases, custom tags and documents that explode through aliases are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]
MAX_DEFINITION_BYTES = 1_000_000
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists accepted."""
MAX_ALIAS_VALUES = 10_000
"""Values copied through aliases, in total: a bound against "billion laughs" documents."""

_MERGE_TAG = "tag:yaml.org,2002:merge"

_HINTS = {
    "'\\t'": "tabs cannot indent YAML; use spaces",
    "'`'": 'a JMESPath literal in backticks must be quoted in YAML, e.g. "`42`"',
    "'@'": "a value starting with '@' must be quoted",
    "'%'": "a value starting with '%' must be quoted",
    "mapping values are not allowed": "check the indentation, or quote a value containing ': '",
    "another document": "a file holds one saga; remove the second document",
}


@dataclass
class SourceMap:
    """Line and column (1-based) of each field path in a document."""

    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path) -> tuple[int, int]:
        """Position of ``path``, or of its nearest ancestor that was written."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found:
                return found
        return (0, 0)


class YamlProblem(Exception):
    """The text is not YAML we accept; carries a position and a path when known."""

    def __init__(self, message: str, line: int = 0, column: int = 0, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.path = path


def load_yaml(text: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document safely; returns the data and where each field was."""
    size = len(text.encode())
    if size > MAX_DEFINITION_BYTES:
        raise YamlProblem(
            f"file is {size} bytes; a definition may have at most {MAX_DEFINITION_BYTES}"
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_problem(exc) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlProblem("invalid YAML: nested too deeply") from None
    if node is None:
        raise YamlProblem("file is empty: a definition needs name, trigger and steps", 1, 1)
    builder = _Builder()
    return builder.build(node, ()), builder.source


def _syntax_problem(exc: yaml.MarkedYAMLError) -> YamlProblem:
    """One line: what is wrong, where the enclosing construct began, and a hint."""
    mark = exc.problem_mark or exc.context_mark
    context, problem = exc.context or "", exc.problem or ""
    if context and problem and not context.startswith("while"):
        message = f"invalid YAML: {context} {problem}"
    else:
        message = f"invalid YAML: {problem or context}"
        start = exc.context_mark
        if problem and context and start and mark and start.line != mark.line:
            message += f" ({context} started at line {start.line + 1}, column {start.column + 1})"
    hint = next((h for clue, h in _HINTS.items() if clue in problem), None)
    if hint:
        message += f": {hint}"
    if mark is None:
        return YamlProblem(message)
    return YamlProblem(message, mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a composed node tree into plain data, recording each path's position."""

    def __init__(self) -> None:
        self.source = SourceMap()
        self.loader = yaml.SafeLoader("")
        self.seen: set[int] = set()
        self.open: set[int] = set()
        self.alias_values = 0

    def build(self, node: Node, path: Path) -> Any:
        self.source.positions.setdefault(path, _mark(node))
        if len(path) > MAX_DEPTH:
            raise YamlProblem(f"nested more than {MAX_DEPTH} levels deep", *_mark(node), path)
        if id(node) in self.open:
            raise YamlProblem("an alias refers to a value that contains it", *_mark(node), path)
        if id(node) in self.seen:
            self.alias_values += 1
            if self.alias_values > MAX_ALIAS_VALUES:
                raise YamlProblem(
                    f"aliases expand to more than {MAX_ALIAS_VALUES} values", *_mark(node), path
                )
        self.seen.add(id(node))
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        self.open.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, path)
            if isinstance(node, SequenceNode):
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))
        raise YamlProblem(f"unsupported YAML node {node.tag}", *_mark(node), path)

    def mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                raise YamlProblem(
                    "merge keys ('<<') are not supported; reuse a whole value with an alias "
                    "(&name ... *name) instead",
                    *_mark(key_node),
                    path,
                )
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem("mapping keys must be plain scalars", *_mark(key_node), path)
            # A key is taken as written: YAML 1.1 would turn `on`, `yes` or `1` into
            # a boolean or a number, which no definition key means.
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                line, column = self.source.positions[child]
                raise YamlProblem(
                    f"duplicate key {key!r} (first written at line {line}, column {column})",
                    *_mark(key_node),
                    child,
                )
            self.source.positions[child] = _mark(key_node)
            result[key] = self.build(value_node, child)
        return result

    def scalar(self, node: ScalarNode, path: Path) -> Any:
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise YamlProblem(
                f"unsupported value: {exc.problem or exc.context}", *_mark(node), path
            ) from None
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            # An explicit tag with a value it cannot take: `!!int 12x`, `!!bool maybe`.
            raise YamlProblem(
                f"unsupported value {node.value!r} for {node.tag}: {exc}", *_mark(node), path
            ) from None
        if isinstance(value, str) and not _encodable(value):
            raise YamlProblem(
                "text holds a character that is not Unicode (a lone surrogate such as \\ud800)",
                *_mark(node),
                path,
            )
        return value


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
