"""Read definition files into validated models, or report every problem with its place.

Validation runs in two phases: the schema (types, required and unknown keys, names,
subjects, durations, expression syntax), then the cross-field rules of
:mod:`saga.definition.checks`, which need a schema-valid definition. Every problem
of a phase is reported together.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from saga.definition.catalog import Catalog
from saga.definition.checks import check_definition
from saga.definition.contracts import schema_problems, trigger_violation
from saga.definition.expressions import TemplateError
from saga.definition.model import (
    FIELD_NAME_PATTERN,
    SAGA_NAME_PATTERN,
    STEP_NAME_PATTERN,
    SUBJECT_PATTERN,
    SagaDefinition,
)
from saga.definition.yaml_source import Path, SourceMap, YamlProblem, load_yaml
from saga.errors import DefinitionError, Problem

SUFFIXES = (".yaml", ".yml")


def parse_definition(text: str, file: str = "<text>") -> SagaDefinition:
    """Validate one definition; raises :class:`DefinitionError` listing all problems."""
    return _parse(text, file).definition


def load_definition(path: str | FsPath) -> SagaDefinition:
    """Read and validate one file."""
    return _load(FsPath(path)).definition


def definition_files(paths: Iterable[str | FsPath]) -> list[FsPath]:
    """Files named directly, plus ``*.yaml``/``*.yml`` inside named folders, sorted."""
    files: list[FsPath] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()))
        else:
            files.append(path)
    return files


def load_definitions(paths: Iterable[str | FsPath]) -> dict[str, SagaDefinition]:
    """The newest version of every saga found; see :func:`load_catalog`."""
    return load_catalog(paths).newest()


def load_catalog(paths: Iterable[str | FsPath]) -> Catalog:
    """Load every definition, every version; all problems of all files are raised together.

    Definitions loaded together run in one engine, so two more rules apply across
    files: a saga name and version are defined once (they key instances), and a
    subject the engine consumes belongs to one saga (its versions may share it).
    """
    paths = list(paths)
    files = definition_files(paths)
    if not files:
        where = ", ".join(map(str, paths)) or "<no paths>"
        raise DefinitionError([Problem(where, 0, 0, "", "no definition files found")])
    loaded: dict[tuple[str, int], _Loaded] = {}
    problems: list[Problem] = []
    for file in files:
        try:
            found = _load(file)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        key = (found.definition.name, found.definition.version)
        if key in loaded:
            message = f"saga {key[0]!r} version {key[1]} is already defined in {loaded[key].file}"
            problems.append(found.problem(("name",), message))
            continue
        others = [o for o in loaded.values() if o.definition.name != key[0]]
        problems.extend(_shared_subjects(found, others))
        loaded[key] = found
    problems.extend(_child_sagas(list(loaded.values())))
    if problems:
        raise DefinitionError(problems)
    return Catalog([found.definition for found in loaded.values()])


def _child_sagas(loaded: list[_Loaded]) -> Iterator[Problem]:
    """A step's child saga (``saga:``) is loaded with it, and no saga is its own descendant
    (it would start children for ever)."""
    children = {f.definition.name: {s.saga for s in f.definition.steps if s.saga} for f in loaded}
    for found in loaded:
        for i, step in enumerate(found.definition.steps):
            if step.saga is None:
                continue
            if step.saga not in children:
                yield found.problem(
                    ("steps", i, "saga"),
                    f"child saga {step.saga!r} is not among the definitions loaded "
                    f"({', '.join(sorted(children)) or 'none'})",
                )
            elif (path := _path_to(children, step.saga, found.definition.name)) is not None:
                cycle = " -> ".join([found.definition.name, *path])
                yield found.problem(("steps", i, "saga"), f"child sagas form a cycle: {cycle}")


def _path_to(children: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """The chain of child sagas from ``start`` down to ``goal``, if there is one."""
    todo, seen = [[start]], {start}
    while todo:
        path = todo.pop()
        if path[-1] == goal:
            return path
        for child in sorted(children.get(path[-1], ())):
            if child not in seen:
                seen.add(child)
                todo.append([*path, child])
    return None


def _shared_subjects(found: _Loaded, others: Iterable[_Loaded]) -> Iterator[Problem]:
    owners = {use.subject: other for other in others for use in other.definition.subjects.declared}
    for use in found.definition.subjects.declared:
        other = owners.get(use.subject)
        if other is not None:
            yield found.problem(
                use.path,
                f"subject {use.subject!r} ({use}) is also consumed by saga "
                f"{other.definition.name!r} in {other.file}: a subject the engine consumes "
                "must belong to one saga",
            )


def format_path(path: Path, data: Any) -> str:
    """``steps[1].retry.attempts``; a step index is followed by its name when known."""
    text = ""
    node = data
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if text.startswith("steps") and isinstance(node, dict):
                name = node.get("name")
                if isinstance(name, str):
                    text += f"({name})"
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text


@dataclass(frozen=True)
class _Loaded:
    """A valid definition with what is needed to point into its file."""

    definition: SagaDefinition
    file: str
    source: SourceMap
    data: dict[str, Any]

    def problem(self, path: Path, message: str) -> Problem:
        return _problem(self.file, self.source, self.data, path, message)


def _load(path: FsPath) -> _Loaded:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(str(path), 0, 0, "", f"cannot read file: {exc}")]) from None
    return _parse(text, str(path))


def _parse(text: str, file: str) -> _Loaded:
    try:
        data, source = load_yaml(text)
    except YamlProblem as exc:
        path = format_path(exc.path, None)
        raise DefinitionError([Problem(file, exc.line, exc.column, path, exc.message)]) from None
    if not isinstance(data, dict):
        message = f"a definition is a mapping with name, trigger and steps, not {_kind(data)}"
        raise DefinitionError([Problem(file, *source.locate(()), "", message)])
    try:
        definition = SagaDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_in_file_order(_schema_problems(exc, data, source, file))) from None
    findings = check_definition(definition)
    if findings:
        problems = [_problem(file, source, data, path, message) for path, message in findings]
        raise DefinitionError(_in_file_order(problems))
    definition, problems = _with_schemas(definition, file, source, data)
    if definition.schedule is not None and not problems:
        broken = trigger_violation(definition, definition.schedule.data)
        if broken is not None:
            message = f"the trigger's schema refuses this payload: {broken}"
            problems.append(_problem(file, source, data, ("schedule", "data"), message))
    if problems:
        raise DefinitionError(_in_file_order(problems))
    return _Loaded(definition, file, source, data)


def _with_schemas(
    definition: SagaDefinition, file: str, source: SourceMap, data: Any
) -> tuple[SagaDefinition, list[Problem]]:
    """Read the ``schema`` files a definition names and check every schema it holds."""
    base = FsPath(file).parent if not file.startswith("<") else FsPath()
    problems: list[Problem] = []

    def resolved(schema: dict[str, Any] | str | None, path: Path) -> dict[str, Any] | None:
        here = (*path, "schema")
        if schema is None:
            return None
        if isinstance(schema, str):
            loaded = _schema_file(base / schema)
            if isinstance(loaded, str):
                problems.append(_problem(file, source, data, here, loaded))
                return None
            for inner, message in schema_problems(loaded):
                where = f" at {format_path(inner, None)}" if inner else ""
                text = f"{schema} is not a valid JSON Schema{where}: {message}"
                problems.append(_problem(file, source, data, here, text))
            return loaded
        for inner, message in schema_problems(schema):
            problems.append(_problem(file, source, data, (*here, *inner), message))
        return schema

    schemas = [definition.trigger.payload_schema, *(x.payload_schema for x in definition.steps)]
    if all(schema is None for schema in schemas):
        return definition, problems
    trigger = definition.trigger.model_copy(
        update={"payload_schema": resolved(definition.trigger.payload_schema, ("trigger",))}
    )
    steps = [
        step.model_copy(update={"payload_schema": resolved(step.payload_schema, ("steps", i))})
        for i, step in enumerate(definition.steps)
    ]
    return definition.model_copy(update={"trigger": trigger, "steps": steps}), problems


def _schema_file(path: FsPath) -> dict[str, Any] | str:
    """A schema file's mapping (JSON or YAML, read safely), or why it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read schema file {path}: {exc}"
    try:
        schema, _ = load_yaml(text)
    except YamlProblem as exc:
        return f"schema file {path} is not JSON or YAML: line {exc.line}: {exc.message}"
    if not isinstance(schema, dict):
        return f"schema file {path} must hold a mapping (a JSON Schema), not {_kind(schema)}"
    return schema


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.line, p.column))


def _problem(file: str, source: SourceMap, data: Any, path: Path, message: str) -> Problem:
    path = _as_written(path, data)
    line, column = source.locate(path)
    return Problem(file, line, column, format_path(path, data), message)


def _as_written(path: Path, data: Any) -> Path:
    """Drop list indices the file does not have: ``success: a.b`` is one subject, not a list."""
    kept: list[str | int] = []
    node = data
    for part in path:
        if isinstance(part, int):
            if not isinstance(node, list):
                continue
            node = node[part] if part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
        kept.append(part)
    return tuple(kept)


# -- schema errors, in the words of the DSL -----------------------------------


def _schema_problems(
    exc: ValidationError, data: Any, source: SourceMap, file: str
) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        path = _clean_loc(error["loc"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, TemplateError):
            for leaf, message in cause.problems:
                problems.append(_problem(file, source, data, (*path, *leaf), message))
        else:
            problems.append(_problem(file, source, data, path, _message(error, path)))
    return problems


def _clean_loc(loc: tuple[Any, ...]) -> Path:
    """Drop pydantic's union/validator markers (``function-after[...]``, ``str``) from a loc."""
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and p not in _MARKERS))


_MARKERS = {"str", "list[str]", "tuple[str, ...]", "dict[str,any]", "int", "bool", "float"}


def _message(error: Any, path: Path) -> str:
    kind: str = error["type"]
    given = error.get("input")
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        return _unknown_key(path)
    if kind == "missing":
        return f"missing required key {path[-1]!r}" if path else "required key is missing"
    if kind in ("value_error", "assertion_error"):
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "string_pattern_mismatch":
        return _pattern_message(str(given), ctx.get("pattern", ""))
    if kind == "string_type":
        return f"must be text, got {_kind(given)}" + (" (quote it)" if _scalar(given) else "")
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys to values, got {_kind(given)}"
    if kind in ("list_type", "tuple_type"):
        if path and path[-1] in ("success", "failure"):
            return f"must be a subject or a list of subjects, got {_kind(given)}"
        return f"must be a list, got {_kind(given)}"
    if kind == "too_short":
        if path == ("steps",):
            return "a saga needs at least one step"
        return f"must have at least {ctx.get('min_length', 1)} item(s)"
    if kind in ("bool_type", "bool_parsing"):
        return f"must be true or false, got {given!r}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"must be a whole number, got {given!r}"
    message = str(error["msg"]).replace("Input should be", "must be")
    return f"{message}, got {given!r}" if _scalar(given) else message


def _unknown_key(path: Path) -> str:
    key = str(path[-1]) if path else ""
    model = _model_at(path[:-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = [f.alias or name for name, f in model.model_fields.items()]
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {close[0]!r}?)"
    return f"unknown key {key!r}; allowed here: " + ", ".join(allowed)


def _model_at(path: Path) -> type[BaseModel] | None:
    """The model describing the mapping at ``path`` (list indices skipped)."""
    model: type[BaseModel] | None = SagaDefinition
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_NAME_RULES = {
    STEP_NAME_PATTERN: ("step name", "lower-case letters, digits and '_', starting with a letter"),
    SAGA_NAME_PATTERN: (
        "saga name",
        "lower-case letters, digits, '-' and '_', starting with a letter",
    ),
    FIELD_NAME_PATTERN: ("field name", "letters, digits and '_', not starting with a digit"),
}


def _pattern_message(value: str, pattern: str) -> str:
    if pattern == SUBJECT_PATTERN:
        return f"{value!r} is not a valid subject: {_subject_fault(value)}"
    if pattern in _NAME_RULES:
        what, rule = _NAME_RULES[pattern]
        message = f"{value!r} is not a valid {what}: use {rule}"
        suggestion = _snake(value, "-" if pattern == SAGA_NAME_PATTERN else "_")
        if pattern != FIELD_NAME_PATTERN and re.match(pattern, suggestion):
            message += f", e.g. {suggestion!r}"
        return message
    return f"{value!r} does not match {pattern}"


def _subject_fault(value: str) -> str:
    if "*" in value or ">" in value:
        return "wildcards ('*', '>') are not allowed; list each subject"
    if any(c.isspace() for c in value):
        return "subjects cannot contain spaces"
    if not value or value.startswith(".") or value.endswith(".") or ".." in value:
        return "a token between dots is empty"
    return "use dot-separated tokens of letters, digits, '-' and '_'"


def _snake(value: str, separator: str) -> str:
    """``Reserve-Inventory`` -> ``reserve_inventory``: a name the rule accepts, to suggest."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", separator, value)
    return re.sub(r"[^a-z0-9]+", separator, spaced.lower()).strip(separator)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _kind(value: Any) -> str:
    """A YAML reader's word for the type of ``value``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
