"""Payload templates and context references, in JMESPath (safe: no ``eval``, no I/O).

A template is a JMESPath expression string, or a mapping whose leaves are
expressions. Expressions are evaluated over the instance context::

    {"saga": {"id", "name", "version"}, "trigger": {...}, "steps": {"<step>": {...}}}

Literals use JMESPath syntax: ``'EUR'`` (raw string) or ``\\`42\\``` (JSON literal).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

CONTEXT_ROOTS = ("saga", "trigger", "steps")

Template = str | dict[str, Any]
"""A JMESPath expression, or a mapping (nested freely) whose leaves are expressions."""


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> ParsedResult:
    """Compile once; raises ``ValueError`` with JMESPath's own message on bad syntax."""
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid expression {expression!r}: {exc}") from exc


def check_template(template: Any, where: str = "") -> list[tuple[str, str]]:
    """Return ``(path, message)`` for every leaf that is not a valid expression."""
    problems: list[tuple[str, str]] = []
    if isinstance(template, str):
        try:
            compile_expression(template)
        except ValueError as exc:
            problems.append((where, str(exc)))
    elif isinstance(template, dict):
        for key, value in template.items():
            if not isinstance(key, str):
                problems.append((where, f"payload keys must be strings, got {key!r}"))
                continue
            problems.extend(check_template(value, f"{where}.{key}" if where else key))
    else:
        problems.append(
            (where, f"expected an expression (string) or a mapping, got {type(template).__name__}")
        )
    return problems


def render(template: Template, context: dict[str, Any]) -> Any:
    """Build a payload from the context; an expression that fails at run time yields ``None``."""
    if isinstance(template, str):
        try:
            return compile_expression(template).search(context)
        except (JMESPathError, ValueError, TypeError):
            return None
    return {key: render(value, context) for key, value in template.items()}


def template_references(template: Template) -> list[tuple[str, ...]]:
    """Every chain of field names that the template reads from the context root."""
    if isinstance(template, str):
        try:
            parsed = compile_expression(template).parsed
        except ValueError:
            return []
        return sorted(_references(parsed))
    chains: list[tuple[str, ...]] = []
    for value in template.values():
        chains.extend(template_references(value))
    return chains


# Node types whose first child is evaluated against the current node and whose
# other children are evaluated against the result of the first.
_LEFT_ONLY = {"index_expression", "projection", "value_projection", "filter_projection",
              "flatten", "pipe"}


def _leading_chain(node: dict[str, Any]) -> tuple[str, ...]:
    """Field names read from the current node before the first non-field step."""
    kind = node["type"]
    if kind == "field":
        return (node["value"],)
    if kind == "subexpression":
        chain: tuple[str, ...] = ()
        for child in node["children"]:
            chain += _leading_chain(child)
            if child["type"] != "field":
                break
        return chain
    if kind in _LEFT_ONLY:
        return _leading_chain(node["children"][0])
    return ()


def _references(node: dict[str, Any]) -> set[tuple[str, ...]]:
    if node["type"] in _LEFT_ONLY or node["type"] in ("field", "subexpression"):
        chain = _leading_chain(node)
        return {chain} if chain else set()
    found: set[tuple[str, ...]] = set()
    for child in node.get("children", []):
        if isinstance(child, dict):
            found |= _references(child)
    return found
