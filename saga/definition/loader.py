"""Read definition files into validated models, or report every problem with its place."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from saga.definition.checks import check_definition
from saga.definition.model import SagaDefinition
from saga.definition.yaml_source import Path, SourceMap, YamlProblem, load_yaml
from saga.errors import DefinitionError, Problem

SUFFIXES = (".yaml", ".yml")


def parse_definition(text: str, file: str = "<text>") -> SagaDefinition:
    """Validate one definition; raises :class:`DefinitionError` listing all problems."""
    try:
        data, source = load_yaml(text)
    except YamlProblem as exc:
        raise DefinitionError(
            [Problem(file, exc.line, exc.column, format_path(exc.path, None), exc.message)]
        ) from None
    if not isinstance(data, dict):
        raise DefinitionError(
            [Problem(file, 1, 1, "", "a definition is a mapping with name, trigger and steps")]
        )
    try:
        definition = SagaDefinition.model_validate(data)
    except ValidationError as exc:
        raise DefinitionError(_schema_problems(exc, data, source, file)) from None
    findings = check_definition(definition)
    if findings:
        raise DefinitionError(
            [_problem(file, source, data, path, message) for path, message in findings]
        )
    return definition


def load_definition(path: str | FsPath) -> SagaDefinition:
    """Read and validate one file."""
    path = FsPath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(str(path), 0, 0, "", f"cannot read file: {exc}")]) from None
    return parse_definition(text, str(path))


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
    """Load every definition; all problems of all files are raised together.

    Two files declaring the same saga name (and version) is an error: names key instances.
    """
    loaded: dict[str, SagaDefinition] = {}
    origin: dict[str, FsPath] = {}
    problems: list[Problem] = []
    files = definition_files(paths)
    if not files:
        raise DefinitionError([Problem(", ".join(map(str, paths)), 0, 0, "", "no definition files found")])
    for file in files:
        try:
            definition = load_definition(file)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if definition.name in loaded:
            problems.append(
                Problem(str(file), 1, 1, "name", f"saga {definition.name!r} is already defined in {origin[definition.name]}")
            )
            continue
        loaded[definition.name] = definition
        origin[definition.name] = file
    if problems:
        raise DefinitionError(problems)
    return loaded


def format_path(path: Path, data: Any) -> str:
    """``steps[1].retry.attempts``; a step index is followed by its name when known."""
    text = ""
    node = data
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str) and text.startswith("steps"):
                text += f"({node['name']})"
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text


def _problem(file: str, source: SourceMap, data: Any, path: Path, message: str) -> Problem:
    line, column = source.locate(path)
    return Problem(file, line, column, format_path(path, data), message)


def _schema_problems(exc: ValidationError, data: Any, source: SourceMap, file: str) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        path = _clean_loc(error["loc"])
        message = _message(error)
        problems.append(_problem(file, source, data, path, message))
    return problems


def _clean_loc(loc: tuple[Any, ...]) -> Path:
    """Drop pydantic's union/validator markers (``function-after[...]``, ``str``) from a loc."""
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and p not in _TYPE_MARKERS))


_TYPE_MARKERS = {"str", "list[str]", "tuple[str, ...]", "dict[str,any]", "int", "bool", "float"}


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see `saga schema` for the allowed keys)"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    if kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        message = f"{error['input']!r} does not match {error['ctx']['pattern']}"
    return message
