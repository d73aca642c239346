"""Commands on definition files, no server needed: ``validate``, ``schema``, ``graph``,
``asyncapi``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from saga.asyncapi import DEFAULT_SERVER, asyncapi_document, to_yaml
from saga.cli.options import print_problems
from saga.definition import (
    definition_files,
    json_schema,
    load_catalog,
    load_definition,
    version_warnings,
)
from saga.definition.diagram import to_mermaid
from saga.definition.model import SagaDefinition
from saga.errors import DefinitionError, Problem


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report for tools.")
def validate(paths: tuple[Path, ...], as_json: bool) -> None:
    """Check definition files (or folders of them); exit status 1 if any is invalid."""
    files = definition_files(paths)
    results: list[dict[str, object]] = []
    problems: list[Problem] = []
    if not files:
        problems.append(Problem(", ".join(map(str, paths)), 0, 0, "", "no definition files found"))
    for file in files:
        try:
            definition = load_definition(file)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            results.append(
                {"file": str(file), "valid": False, "problems": [vars(p) for p in exc.problems]}
            )
            continue
        results.append(
            {
                "file": str(file),
                "valid": True,
                "saga": definition.name,
                "version": definition.version,
                "steps": len(definition.steps),
            }
        )
    warnings: list[str] = []
    if not problems and files:
        try:  # rules across files: unique saga names and consumed subjects, child sagas
            warnings = version_warnings(load_catalog(files))
        except DefinitionError as exc:
            problems.extend(exc.problems)
    for warning in warnings:
        click.echo(click.style(f"warning: {warning}", fg="yellow"), err=True)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "valid": not problems,
                    "files": results,
                    "problems": [vars(p) for p in problems],
                    "warnings": warnings,
                },
                indent=2,
            )
        )
    else:
        _print_validation(results, problems)
    sys.exit(1 if problems else 0)


def _print_validation(results: list[dict[str, object]], problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(click.style(str(problem), fg="red"), err=True)
    for result in results:
        if result["valid"]:
            click.echo(
                f"ok  {result['file']}  ({result['saga']} v{result['version']}, "
                f"{result['steps']} steps)"
            )
    bad = sum(1 for r in results if not r["valid"])
    summary = f"{len(results) - bad} valid, {bad} invalid, {len(problems)} problem(s)"
    click.echo(summary if not problems else click.style(summary, fg="red"), err=bool(problems))


@click.command()
def schema() -> None:
    """Print the JSON Schema of definition files (for editors and tools)."""
    click.echo(json.dumps(json_schema(), indent=2))


def _one_definition(file: Path) -> SagaDefinition:
    """The definition in ``file``; its problems printed and exit status 1 when invalid."""
    try:
        return load_definition(file)
    except DefinitionError as exc:
        print_problems(exc)
        sys.exit(1)


@click.command()
@click.argument("file", type=click.Path(path_type=Path))
def graph(file: Path) -> None:
    """Print a Mermaid flowchart of one saga."""
    click.echo(to_mermaid(_one_definition(file)), nl=False)


@click.command("asyncapi")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the document to this file instead of standard output.",
)
@click.option(
    "--server",
    default=DEFAULT_SERVER,
    show_default=True,
    help="The NATS server named in the document: host:port or a nats:// URL.",
)
def asyncapi_command(file: Path, output: Path | None, server: str) -> None:
    """Print an AsyncAPI 3.0 document (YAML) of one saga: channels, messages and flow."""
    text = to_yaml(asyncapi_document(_one_definition(file), server=server))
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)


COMMANDS = (validate, schema, graph, asyncapi_command)
