"""The ``saga`` command: the people-facing entry point to every adapter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from saga.definition import definition_files, json_schema, load_definition
from saga.definition.diagram import to_mermaid
from saga.errors import DefinitionError, Problem


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nats-saga", prog_name="saga")
def main() -> None:
    """A choreography saga engine for NATS JetStream."""


@main.command()
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
            results.append({"file": str(file), "valid": False,
                            "problems": [vars(p) for p in exc.problems]})
            continue
        results.append({"file": str(file), "valid": True, "saga": definition.name,
                        "version": definition.version, "steps": len(definition.steps)})
    if as_json:
        click.echo(json.dumps({"valid": not problems, "files": results}, indent=2))
    else:
        _print_validation(results, problems)
    sys.exit(1 if problems else 0)


def _print_validation(results: list[dict[str, object]], problems: list[Problem]) -> None:
    for problem in problems:
        click.echo(click.style(str(problem), fg="red"), err=True)
    for result in results:
        if result["valid"]:
            click.echo(f"ok  {result['file']}  ({result['saga']} v{result['version']}, "
                       f"{result['steps']} steps)")
    bad = sum(1 for r in results if not r["valid"])
    summary = f"{len(results) - bad} valid, {bad} invalid, {len(problems)} problem(s)"
    click.echo(summary if not problems else click.style(summary, fg="red"), err=bool(problems))


@main.command()
def schema() -> None:
    """Print the JSON Schema of definition files (for editors and tools)."""
    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
def graph(file: Path) -> None:
    """Print a Mermaid flowchart of one saga."""
    try:
        definition = load_definition(file)
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(click.style(str(problem), fg="red"), err=True)
        sys.exit(1)
    click.echo(to_mermaid(definition), nl=False)
