"""``saga list`` and ``saga reindex``: the index from the command line.

``saga list`` reads the index (:class:`saga.index.SagaIndex`), so it costs what it prints,
however many instances are stored; against a server without the index stream it falls back
to reading every instance (and refuses the filters only the index has).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from saga.cli.config import retention_seconds
from saga.cli.options import cli_settings, connected, nats_options, run_async
from saga.cli.render import list_text
from saga.core.state import Status
from saga.definition import Catalog, load_catalog
from saga.definition.duration import parse_duration
from saga.errors import DefinitionError
from saga.index import SagaPage, SagaQuery
from saga.index.rebuild import reindex as rebuild
from saga.nats.connection import NatsSettings, connect
from saga.nats.topology import Topology


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """``1h`` (that long ago), or an ISO 8601 time (UTC when it names no zone)."""
    now = now or datetime.now(UTC)
    try:
        return now - parse_duration(text)
    except (ValueError, DefinitionError, TypeError):
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected a duration back from now (30m, 1h, 2d) or an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_where(pairs: tuple[str, ...]) -> dict[str, str]:
    """``k=v`` pairs (search attributes declared with ``search:``) as a dict."""
    where = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE")
        where[key] = value
    return where


def page_json(page: SagaPage) -> str:
    return json.dumps(
        {
            "items": [json.loads(s.model_dump_json()) for s in page.items],
            "cursor": page.cursor,
        },
        indent=2,
    )


@click.command("list")
@click.option(
    "--state",
    "status_filter",
    type=click.Choice([s.value for s in Status]),
)
@click.option("--saga", "--name", "name", help="Only instances of this saga.")
@click.option("--since", help="Entered their status since: 1h (ago) or an ISO 8601 time.")
@click.option("--until", help="…and until: 10m (ago) or an ISO 8601 time.")
@click.option("--where", multiple=True, help="NAME=VALUE of a search attribute (repeatable).")
@click.option("--limit", default=50, show_default=True)
@click.option("--cursor", help="Go on after the page that printed it.")
@click.option("--json", "as_json", is_flag=True)
@nats_options
def list_(
    status_filter: str | None,
    name: str | None,
    since: str | None,
    until: str | None,
    where: tuple[str, ...],
    limit: int,
    cursor: str | None,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """List instances, newest first (through the index: as fast with a million stored)."""
    query = SagaQuery(
        saga=name,
        state=status_filter,
        since=parse_moment(since) if since else None,
        until=parse_moment(until) if until else None,
        where=parse_where(where),
        limit=limit,
        cursor=cursor,
    )
    run_async(_list)(cli_settings(kwargs), query, as_json)


async def _list(settings: NatsSettings, query: SagaQuery, as_json: bool) -> None:
    try:
        query.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    async with connected(settings) as client:
        index = await client.index()
        if index is not None:
            page = await index.list(query)
            click.echo(page_json(page) if as_json else _page_text(page))
            return
        if query.since or query.until or query.where or query.cursor:
            raise click.ClickException(
                "this server has no index stream (SAGA_INDEX): --since, --until, --where and "
                "--cursor need it; run `saga reindex`"
            )
        state = str(query.state) if query.state else None
        states = await client.states(state, query.saga, query.limit)
    if as_json:
        click.echo(json.dumps([json.loads(s.model_dump_json()) for s in states], indent=2))
    else:
        click.echo(list_text(states))


def _page_text(page: SagaPage) -> str:
    text = list_text(page.items)
    if page.cursor:
        text += f"\nmore: --cursor {page.cursor}"
    return text


@click.command()
@click.option(
    "--definitions",
    envvar="SAGA_DEFINITIONS",
    default="definitions",
    show_default=True,
    type=click.Path(path_type=Path, exists=True),
    help="Definitions whose search attributes to index [env SAGA_DEFINITIONS].",
)
@click.option(
    "--finished-ttl",
    envvar="SAGA_FINISHED_TTL",
    default="7d",
    show_default=True,
    help="As the engine's: finished instances' entries expire with them [env SAGA_FINISHED_TTL].",
)
@nats_options
def reindex(definitions: Path, finished_ttl: str, **kwargs: Any) -> None:
    """Rebuild the index from the instances bucket (after a crash or a lost index stream)."""
    settings = cli_settings(kwargs)
    try:
        catalog = load_catalog([definitions])
        kept = retention_seconds(finished_ttl)
    except DefinitionError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--finished-ttl") from None
    run_async(_reindex)(settings, catalog, kept)


async def _reindex(settings: NatsSettings, catalog: Catalog | None, finished_ttl: float) -> None:
    nc = await connect(settings)
    try:
        done = await rebuild(nc, Topology(), catalog, finished_ttl=finished_ttl)
    finally:
        await nc.close()
    click.echo(
        f"{done.instances} instances: {done.written} entries written, {done.emptied} emptied, "
        f"{done.raced} left to the engine (rewritten meanwhile), in {done.seconds:.1f} s"
    )


COMMANDS = (list_, reindex)
