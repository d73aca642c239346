"""``saga dlq list|show|replay|purge``: look at dead letters, re-drive or delete them.

The work is done by :class:`saga.client.SagaClient` (over :mod:`saga.nats.dlq`, which the
web console calls too); this module only parses options and prints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from saga.cli.options import cli_settings, connected, nats_options, run_async
from saga.cli.render import table
from saga.client import SagaClient
from saga.nats.connection import NatsSettings
from saga.nats.dlq import DeadLetter, LetterFilter, Replayed, ReplayFailed

REASON_WIDTH = 60
COLUMN_WIDTH = 40
"""Widest subject or saga column in ``dlq list``."""

T = TypeVar("T")


@click.group("dlq")
def dlq_group() -> None:
    """Dead letters: list, show, replay and purge them."""


def _filter_options(func: Any) -> Any:
    func = click.option(
        "--subject", help="Only dead letters from this original subject (wildcards * and >)."
    )(func)
    return click.option("--code", help="Only dead letters with this code, e.g. malformed.")(func)


def _with_client(settings: NatsSettings, work: Callable[[SagaClient], Awaitable[T]]) -> T:
    """Run ``work`` with a client on a connection of its own."""

    async def run() -> T:
        async with connected(settings) as client:
            return await work(client)

    result: T = run_async(run)()
    return result


@dlq_group.command("list")
@_filter_options
@click.option("--limit", type=int, default=None, help="At most this many (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for tools.")
@nats_options
def list_command(
    code: str | None, subject: str | None, limit: int | None, as_json: bool, **kwargs: Any
) -> None:
    """List dead letters, oldest first: sequence, code, subject, when, saga, reason."""
    where = LetterFilter(code=code, subject=subject)
    letters = _with_client(cli_settings(kwargs), lambda c: c.dead_letters(where, limit))
    if as_json:
        click.echo(json.dumps([letter.to_json() for letter in letters], indent=2))
    else:
        click.echo(list_text(letters))


@dlq_group.command("show")
@click.argument("sequence", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for tools.")
@nats_options
def show_command(sequence: int, as_json: bool, **kwargs: Any) -> None:
    """Show dead letter SEQUENCE: why, where from, every header and the body."""
    letter = _with_client(cli_settings(kwargs), lambda c: c.dead_letter(sequence))
    click.echo(json.dumps(letter.to_json(), indent=2) if as_json else show_text(letter))


@dlq_group.command("replay")
@click.argument("sequences", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
@_filter_options
@nats_options
def replay_command(
    sequences: tuple[int, ...],
    replay_all: bool,
    code: str | None,
    subject: str | None,
    **kwargs: Any,
) -> None:
    """Publish dead letters again on their original subject, then delete them.

    Takes sequence numbers, --all, or the letters matching --code/--subject. The payload
    and headers are the original ones, without Saga-Dlq-* and Nats-*. One that fails is
    reported and the others go on; the exit status is then 1."""
    filtered = code is not None or subject is not None
    if sequences and replay_all:
        raise click.UsageError("give dead-letter sequence numbers or --all, not both")
    if not (sequences or replay_all or filtered):
        raise click.UsageError("give dead-letter sequence numbers, --all, or --code/--subject")
    where = LetterFilter(code=code, subject=subject)
    chosen = list(sequences) if sequences else None
    done = _with_client(cli_settings(kwargs), lambda c: c.replay(chosen, where))
    failed = [item for item in done if isinstance(item, ReplayFailed)]
    for item in done:
        click.echo(replayed_text(item), err=isinstance(item, ReplayFailed))
    click.echo(f"{len(done) - len(failed)} dead letter(s) replayed, {len(failed)} failed")
    if failed:
        sys.exit(1)


@dlq_group.command("purge")
@_filter_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@nats_options
def purge_command(code: str | None, subject: str | None, yes: bool, **kwargs: Any) -> None:
    """Delete dead letters for good: all of them, or those matching --code/--subject.
    Lists what it will delete and asks first (--yes to skip)."""
    settings = cli_settings(kwargs)
    where = LetterFilter(code=code, subject=subject)
    letters = _with_client(settings, lambda c: c.dead_letters(where))
    if not letters:
        click.echo(f"no dead letters match ({where})")
        return
    if not yes:
        click.echo(list_text(letters))
        click.confirm(f"Delete these {len(letters)} dead letter(s) ({where})?", abort=True)
    chosen = [letter.sequence for letter in letters]
    deleted = _with_client(settings, lambda c: c.purge(chosen))
    click.echo(f"{len(deleted)} dead letter(s) deleted")


def _cut(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def list_text(letters: list[DeadLetter]) -> str:
    """One line per letter. Long subjects and saga ids are shortened (``dlq show`` has them
    whole), so one long id does not push every other row's reason off the screen."""
    if not letters:
        return "no dead letters"
    rows = []
    for letter in letters:
        saga = f"{letter.saga_name or '-'}/{letter.saga_id or '-'}"
        when = letter.time.strftime("%Y-%m-%d %H:%M:%S") if letter.time else "-"
        rows.append(
            [
                str(letter.sequence),
                letter.code,
                _cut(letter.subject, COLUMN_WIDTH),
                when,
                _cut(saga, COLUMN_WIDTH),
                _cut(letter.reason, REASON_WIDTH),
            ]
        )
    return table(rows, ["SEQ", "CODE", "SUBJECT", "WHEN", "SAGA", "REASON"])


def show_text(letter: DeadLetter) -> str:
    when = letter.time.isoformat() if letter.time else "-"
    lines = [
        f"sequence  {letter.sequence}",
        f"code      {letter.code}",
        f"reason    {letter.reason}",
        f"subject   {letter.subject}",
        f"origin    {letter.origin}",
        f"consumer  {letter.consumer}",
        f"saga      {letter.saga_name or '-'}/{letter.saga_id or '-'}",
        f"when      {when}",
        "headers",
        *(f"  {name}: {value}" for name, value in sorted(letter.headers.items())),
        f"body ({len(letter.data)} bytes)",
        *(f"  {line}" for line in letter.body_text().splitlines()),
    ]
    return "\n".join(lines)


def replayed_text(item: Replayed | ReplayFailed) -> str:
    if isinstance(item, ReplayFailed):
        code = f" ({item.letter.code})" if item.letter else ""
        return f"dead letter {item.sequence}{code} not replayed: {item.error}"
    note = " (duplicate: already replayed)" if item.duplicate else ""
    return (
        f"dead letter {item.letter.sequence} ({item.letter.code}) -> {item.letter.subject} "
        f"seq {item.sequence}{note}"
    )
