"""Payload templates and context references, in JMESPath (safe: no ``eval``, no I/O).

A template is a JMESPath expression string, or a mapping whose leaves are
expressions. Expressions are evaluated over the instance context::

    {"saga": {"id", "name", "version"}, "trigger": {...}, "steps": {"<step>": {...}}}

Literals use JMESPath syntax: ``'EUR'`` (raw string) or ``\\`42\\``` (JSON literal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache, partial
from typing import Any, cast

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions
from jmespath.parser import ParsedResult

CONTEXT_ROOTS = ("saga", "trigger", "steps")

Template = str | dict[str, Any]
"""A JMESPath expression, or a mapping (nested freely) whose leaves are expressions."""

Node = dict[str, Any]
LeafPath = tuple[str, ...]
"""Keys leading from a template's top to one of its leaves (``()`` for a bare expression)."""

_FUNCTIONS: dict[str, Any] = Functions().FUNCTION_TABLE


class TemplateError(ValueError):
    """A template with invalid leaves; ``problems`` says which leaf and why."""

    def __init__(self, problems: list[tuple[LeafPath, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(path)}: {m}" if path else m for path, m in problems))


@lru_cache(maxsize=4096)
def compile_expression(expression: str) -> ParsedResult:
    """Compile once; raises ``ValueError`` with a one-line reason on bad syntax."""
    try:
        parsed = jmespath.compile(expression)
    except jmespath_errors.JMESPathError as exc:
        raise ValueError(f"invalid expression {expression!r}: {_syntax_reason(exc)}") from None
    problem = next(_function_problems(cast(Node, parsed.parsed)), None)
    if problem is not None:
        raise ValueError(f"invalid expression {expression!r}: {problem}")
    return parsed


@lru_cache(maxsize=4096)
def evaluator(expression: str) -> Callable[[Any], Any]:
    """The expression as a function of the context. A plain field path such as
    ``trigger.order_id`` (most templates), a literal, or a default such as
    ``trigger.currency || 'EUR'`` made of those, is evaluated with JMESPath's meaning
    (``None`` once a step is missing or not an object) without its tree interpreter."""
    parsed = compile_expression(expression)
    fast = _direct(cast(Node, parsed.parsed))
    return parsed.search if fast is None else fast


def _direct(node: Node) -> Callable[[Any], Any] | None:
    """``node`` as a plain function, when it is one of the simple forms (else ``None``)."""
    kind = node.get("type")
    if kind == "literal":
        value = node["value"]  # the interpreter also returns this very object
        return lambda _: value
    if kind == "or_expression":
        left, right = (_direct(child) for child in node["children"])
        if left is None or right is None:
            return None
        first, second = left, right

        def either(value: Any) -> Any:
            found = first(value)
            return second(value) if _jmespath_false(found) else found

        return either
    path = _field_path(node)
    if path is None:
        return None

    def lookup(value: Any) -> Any:
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return lookup


def _jmespath_false(value: Any) -> bool:
    """JMESPath's falsehood, as its interpreter tests it (``0`` is true): ``null``,
    ``false``, and an empty string, array or object (tested by type, not by comparing
    with new empty ones: a third of the time)."""
    return value is None or value is False or (isinstance(value, _EMPTY_IS_FALSE) and not value)


_EMPTY_IS_FALSE = (str, list, dict)


def _field_path(node: Node) -> tuple[str, ...] | None:
    if node.get("type") == "field":
        return (node["value"],)
    if node.get("type") == "subexpression":
        parts = [_field_path(child) for child in node["children"]]
        if all(part is not None for part in parts):
            return tuple(key for part in parts for key in cast(tuple[str, ...], part))
    return None


def _syntax_reason(exc: jmespath_errors.JMESPathError) -> str:
    """JMESPath's reasons, without the multi-line caret drawing."""
    if isinstance(exc, jmespath_errors.EmptyExpressionError):
        return "it is empty (for an empty text write \"''\")"
    if isinstance(exc, jmespath_errors.IncompleteExpressionError):
        return "it ends too early"
    if isinstance(exc, jmespath_errors.LexerError):
        return f"{getattr(exc, 'message', 'bad token')} at character {exc.lex_position + 1}"
    if isinstance(exc, jmespath_errors.ParseError):
        return f"unexpected {exc.token_value!r} at character {exc.lex_position + 1}"
    return str(exc).splitlines()[0]


def _function_problems(node: Node) -> Iterator[str]:
    """Unknown functions and wrong argument counts, which JMESPath finds only at run time."""
    if node.get("type") == "function_expression":
        name, given = node["value"], len(node["children"])
        spec = _FUNCTIONS.get(name)
        if spec is None:
            yield f"unknown function {name}()"
        else:
            signature = spec["signature"]
            variadic = bool(signature) and signature[-1].get("variadic", False)
            if variadic and given < len(signature):
                yield f"{name}() takes at least {len(signature)} argument(s), got {given}"
            elif not variadic and given != len(signature):
                yield f"{name}() takes {len(signature)} argument(s), got {given}"
    for child in node.get("children", []):
        if isinstance(child, dict):
            yield from _function_problems(child)


def template_problems(template: Any) -> list[tuple[LeafPath, str]]:
    """``(leaf path, message)`` for every leaf that is not a valid expression."""
    problems: list[tuple[LeafPath, str]] = []
    for path, leaf in _leaves(template):
        if isinstance(leaf, str):
            try:
                compile_expression(leaf)
            except ValueError as exc:
                problems.append((path, str(exc)))
        else:
            problems.append((path, _not_an_expression(leaf)))
    return problems


def check_template(template: Any, where: str = "") -> list[tuple[str, str]]:
    """Return ``(path, message)`` for every leaf that is not a valid expression."""
    return [
        (".".join((where, *path) if where else path), message)
        for path, message in template_problems(template)
    ]


def _leaves(template: Any, path: LeafPath = ()) -> Iterator[tuple[LeafPath, Any]]:
    """Every leaf of a template with its path; keys that are not text are leaves too."""
    if isinstance(template, dict):
        for key, value in template.items():
            if isinstance(key, str):
                yield from _leaves(value, (*path, key))
            else:
                yield (*path, str(key)), _BadKey(key)
    else:
        yield path, template


class _BadKey:
    def __init__(self, key: object) -> None:
        self.key = key


def _not_an_expression(value: Any) -> str:
    if isinstance(value, _BadKey):
        return f"payload keys must be text, got {value.key!r}"
    if value is None:
        return 'no expression given (for a JSON null write "`null`")'
    if isinstance(value, bool):
        literal = str(value).lower()
        return f'expected an expression, got the boolean {literal}: write "`{literal}`"'
    if isinstance(value, (int, float)):
        return f'expected an expression, got the number {value!r}: write "`{value!r}`"'
    if isinstance(value, list):
        return (
            "expected an expression or a mapping, got a list: "
            'write a JMESPath list such as "[trigger.a, trigger.b]"'
        )
    return f"expected an expression (text) or a mapping, got {type(value).__name__}"


def template_leaves(template: Template) -> Iterator[tuple[LeafPath, str]]:
    """Every expression of a (valid) template, with the keys leading to it."""
    for path, leaf in _leaves(template):
        if isinstance(leaf, str):
            yield path, leaf


def render(template: Template, context: dict[str, Any]) -> Any:
    """Build a payload from the context; an expression that fails at run time yields ``None``."""
    if isinstance(template, str):
        try:
            return evaluator(template)(context)
        except (jmespath_errors.JMESPathError, ValueError, TypeError):
            return None
    return {key: render(value, context) for key, value in template.items()}


def compile_template(template: Template) -> Callable[[dict[str, Any]], Any]:
    """:func:`render` of ``template`` as a function of the context, its expressions looked
    up once: for a template rendered at every event (a step's ``publish.data``)."""
    if isinstance(template, str):
        try:
            evaluate = evaluator(template)
        except (jmespath_errors.JMESPathError, ValueError, TypeError):
            return _nothing

        def leaf(context: dict[str, Any]) -> Any:
            try:
                return evaluate(context)
            except (jmespath_errors.JMESPathError, ValueError, TypeError):
                return None

        return leaf
    if not isinstance(template, dict):  # render refuses it: the same error, at each call
        return partial(render, template)
    # A leaf that is a plain field path (most are), or one with a literal default
    # (``trigger.currency || 'EUR'``), is walked here, without the calls of its evaluator.
    parts = [(key, *_plain_path(value), compile_template(value)) for key, value in template.items()]

    def mapping(context: dict[str, Any]) -> Any:
        payload = {}
        for key, path, default, part in parts:
            if path is None:
                payload[key] = part(context)
                continue
            value: Any = context
            for name in path:
                if not isinstance(value, dict):
                    value = None
                    break
                value = value.get(name)
            if default is not _NO_DEFAULT and _jmespath_false(value):
                value = default
            payload[key] = value
        return payload

    return mapping


_NO_DEFAULT: Any = object()
"""A plain path's default (:func:`_plain_path`) when it has none."""


def _plain_path(template: Any) -> tuple[tuple[str, ...] | None, Any]:
    """The keys of a leaf that is a plain field path (``trigger.order_id``), and the
    literal it falls back to when it is or-ed with one (``|| 'EUR'``; else
    ``_NO_DEFAULT``); ``(None, _NO_DEFAULT)`` for any other leaf."""
    if not isinstance(template, str):
        return None, _NO_DEFAULT
    try:
        node = cast(Node, compile_expression(template).parsed)
    except ValueError:
        return None, _NO_DEFAULT
    if node.get("type") == "or_expression":
        left, right = node["children"]
        if right.get("type") == "literal":
            return _field_path(left), right["value"]  # the object JMESPath returns
        return None, _NO_DEFAULT
    return _field_path(node), _NO_DEFAULT


def _nothing(context: dict[str, Any]) -> None:
    return None


def template_references(template: Template) -> list[tuple[str, ...]]:
    """Every chain of field names that the template reads from the context root.

    ``steps.reserve.id || 'none'`` reads ``("steps", "reserve", "id")``; the parts of
    an expression evaluated against something else (the right of a pipe or a
    projection, a filter, an ``&expression``) are not reads from the root.
    """
    chains: list[tuple[str, ...]] = []
    for _, expression in template_leaves(template):
        try:
            parsed = compile_expression(expression).parsed
        except ValueError:
            continue
        chains.extend(sorted(_references(cast(Node, parsed))))
    return chains


# Node types whose first child is evaluated against the current node and whose
# other children are evaluated against the result of the first.
_LEFT_ONLY = {
    "index_expression",
    "projection",
    "value_projection",
    "filter_projection",
    "flatten",
    "pipe",
    "subexpression",
}
# Node types whose children are not evaluated against the context root.
_ELSEWHERE = {"expref"}


def _leading_chain(node: Node) -> tuple[str, ...]:
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


def _references(node: Node) -> set[tuple[str, ...]]:
    kind = node["type"]
    if kind in _ELSEWHERE:
        return set()
    if kind == "field" or kind in _LEFT_ONLY:
        chain = _leading_chain(node)
        if chain:
            return {chain}
        # The left starts with something other than a field (a function, a
        # multiselect...): what it reads is what its own children read.
        return _references(node["children"][0])
    found: set[tuple[str, ...]] = set()
    for child in node.get("children", []):
        if isinstance(child, dict):
            found |= _references(child)
    return found
