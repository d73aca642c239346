"""Safe YAML loading that remembers where every field was written.

PyYAML's ``safe_load`` forgets positions and silently keeps the last of two
duplicate keys; we compose the node tree with the safe loader instead and build
the data ourselves, so errors can name a line and column, and duplicates are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]
MAX_DEFINITION_BYTES = 1_000_000


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
    if len(text.encode()) > MAX_DEFINITION_BYTES:
        raise YamlProblem(f"file is larger than {MAX_DEFINITION_BYTES} bytes")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        if mark is None:
            raise YamlProblem(f"invalid YAML: {reason}") from exc
        raise YamlProblem(f"invalid YAML: {reason}", mark.line + 1, mark.column + 1) from exc
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}") from exc
    if node is None:
        raise YamlProblem("file is empty", 1, 1)
    source = SourceMap()
    return _build(node, (), source, yaml.SafeLoader("")), source


def _build(node: Node, path: Path, source: SourceMap, loader: yaml.SafeLoader) -> Any:
    source.positions.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise YamlProblem("mapping keys must be plain scalars", *_mark(key_node), path)
            if isinstance(key, bool):
                # YAML 1.1 turns an unquoted `on`, `yes`, `no` key into a boolean.
                key = key_node.value
            if key in result:
                raise YamlProblem(f"duplicate key {key!r}", *_mark(key_node), (*path, key))
            child = (*path, key)
            source.positions[child] = _mark(key_node)
            result[key] = _build(value_node, child, source, loader)
        return result
    if isinstance(node, SequenceNode):
        return [_build(item, (*path, i), source, loader) for i, item in enumerate(node.value)]
    if isinstance(node, ScalarNode):
        return loader.construct_object(node, deep=True)
    raise YamlProblem(f"unsupported YAML node {node.tag}", *_mark(node), path)


def _mark(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1
