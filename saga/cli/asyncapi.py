"""``saga asyncapi FILE``: the AsyncAPI 3.0 document of one saga, for catalogues and doc tools.

Kept apart from ``saga/cli.py`` so the command can be registered there with one line:
``main.add_command(asyncapi_command)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from saga.asyncapi import DEFAULT_SERVER, asyncapi_document, to_yaml
from saga.definition import load_definition
from saga.errors import DefinitionError


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
    try:
        definition = load_definition(file)
    except DefinitionError as exc:
        for problem in exc.problems:
            click.echo(click.style(str(problem), fg="red"), err=True)
        sys.exit(1)
    text = to_yaml(asyncapi_document(definition, server=server))
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote {output}", err=True)
