"""``saga schedules``: the scheduled sagas the server holds, with their next fire time."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from saga.cli.options import cli_settings, connected, nats_options, run_async
from saga.nats.connection import NatsSettings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the schedules as JSON.")
@nats_options
def schedules(as_json: bool, **kwargs: Any) -> None:
    """List scheduled sagas (``schedule:`` in a definition): pattern, trigger and next fire
    time (UTC). The engine provisions them at start and on reload."""
    run_async(_schedules)(cli_settings(kwargs), as_json)


async def _schedules(settings: NatsSettings, as_json: bool) -> None:
    async with connected(settings) as client:
        found = await client.schedules()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for name, entry in sorted(found.items()):
        upcoming = entry.next_fire(now)
        rows.append(
            {
                "saga": name,
                "schedule": entry.pattern,
                "trigger": entry.target,
                "next": upcoming.isoformat() if upcoming else None,
                "data": entry.data,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2, allow_nan=False))
        return
    if not rows:
        click.echo(
            "no scheduled sagas (is `saga run` running with a definition that has schedule:?)"
        )
        return
    width = max(len(r["saga"]) for r in rows)
    for r in rows:
        click.echo(
            f"{r['saga']:<{width}}  {r['schedule']:<18}  next {r['next'] or '?'}  on {r['trigger']}"
        )


COMMANDS = (schedules,)
