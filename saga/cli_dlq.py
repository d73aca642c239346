"""``saga dlq list`` and ``saga dlq replay``: look at dead letters and re-drive them.

Register with one line in ``saga/cli.py``: ``main.add_command(dlq_group)``. The commands
take the same connection options as every other command; they are built on first use,
so this module can be imported before or after ``saga.cli``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from saga.dlq_admin import DeadLetter, Replayed, list_dead_letters, replay_many
from saga.nats.connection import NatsSettings, connect

REASON_WIDTH = 60


class _DlqGroup(click.Group):
    """A group whose commands are made when first asked for (they need ``saga.cli``)."""

    def _load(self) -> None:
        if not self.commands:
            for command in _commands():
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


dlq_group = _DlqGroup("dlq", help="Dead letters: list them, replay them.")


def _commands() -> list[click.Command]:
    from saga.cli import nats_options, nats_settings, run_async

    @click.command("list")
    @click.option("--code", help="Only dead letters with this code, e.g. malformed.")
    @click.option("--limit", type=int, default=None, help="At most this many (oldest first).")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for tools.")
    @nats_options
    def list_command(code: str | None, limit: int | None, as_json: bool, **kwargs: Any) -> None:
        """List dead letters, oldest first: sequence, code, subject, saga id, reason."""
        settings = nats_settings(kwargs, "saga-cli")
        assert settings is not None
        letters = run_async(_list)(settings, code, limit)
        if as_json:
            click.echo(json.dumps([letter.to_json() for letter in letters], indent=2))
        else:
            click.echo(list_text(letters))

    @click.command("replay")
    @click.argument("sequences", nargs=-1, type=int)
    @click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter.")
    @click.option("--code", help="Only dead letters with this code.")
    @nats_options
    def replay_command(
        sequences: tuple[int, ...], replay_all: bool, code: str | None, **kwargs: Any
    ) -> None:
        """Publish dead letters SEQ... (or --all) again on their original subject, then delete
        them. Their payload and headers are the original ones, without Saga-Dlq-*."""
        if bool(sequences) == replay_all:
            raise click.UsageError("give dead-letter sequence numbers, or --all")
        settings = nats_settings(kwargs, "saga-cli")
        assert settings is not None
        done = run_async(_replay)(settings, None if replay_all else list(sequences), code)
        for item in done:
            click.echo(replayed_text(item))
        click.echo(f"{len(done)} dead letter(s) replayed")

    return [list_command, replay_command]


async def _list(settings: NatsSettings, code: str | None, limit: int | None) -> list[DeadLetter]:
    nc = await connect(settings)
    try:
        return await list_dead_letters(nc.jetstream(), code=code, limit=limit)
    finally:
        await nc.close()


async def _replay(
    settings: NatsSettings, sequences: list[int] | None, code: str | None
) -> list[Replayed]:
    nc = await connect(settings)
    try:
        return await replay_many(nc.jetstream(), sequences, code)
    finally:
        await nc.close()


def list_text(letters: list[DeadLetter]) -> str:
    if not letters:
        return "no dead letters"
    rows = [("SEQ", "CODE", "SUBJECT", "SAGA", "WHEN", "REASON")]
    for letter in letters:
        saga = f"{letter.saga_name or '-'}/{letter.saga_id or '-'}"
        when = letter.time.strftime("%Y-%m-%d %H:%M:%S") if letter.time else "-"
        reason = letter.reason.replace("\n", " ")
        if len(reason) > REASON_WIDTH:
            reason = reason[: REASON_WIDTH - 1] + "…"
        rows.append((str(letter.sequence), letter.code, letter.subject, saga, when, reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in rows
    )


def replayed_text(item: Replayed) -> str:
    note = " (duplicate: already replayed)" if item.duplicate else ""
    return (
        f"dead letter {item.letter.sequence} ({item.letter.code}) -> {item.letter.subject} "
        f"seq {item.sequence}{note}"
    )
