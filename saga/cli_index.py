"""``saga list`` and ``saga reindex``: the index from the command line.

``saga list`` reads the index (:class:`saga.index.SagaIndex`), so it costs what it prints,
however many instances are stored; against a server without the index stream it falls back
to reading every instance (and refuses the filters only the index has).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from saga.definition import Catalog
from saga.definition.duration import parse_duration
from saga.errors import DefinitionError
from saga.index import SagaIndex, SagaPage, SagaQuery
from saga.index.rebuild import reindex
from saga.nats.connection import NatsSettings, connect
from saga.nats.topology import Topology
from saga.render import list_text


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


async def list_command(settings: NatsSettings, query: SagaQuery, as_json: bool) -> None:
    from saga.inspect import instance_store, list_instances

    try:
        query.check()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    nc = await connect(settings)
    try:
        index = SagaIndex(nc, Topology())
        if await index.available():
            page = await index.list(query)
            click.echo(page_json(page) if as_json else _page_text(page))
            return
        if query.since or query.until or query.where or query.cursor:
            raise click.ClickException(
                "this server has no index stream (SAGA_INDEX): --since, --until, --where and "
                "--cursor need it; run `saga reindex`"
            )
        store = await instance_store(nc, Topology())
        state = str(query.state) if query.state else None
        states = await list_instances(store, state, query.saga, query.limit)
    finally:
        await nc.close()
    if as_json:
        click.echo(json.dumps([json.loads(s.model_dump_json()) for s in states], indent=2))
    else:
        click.echo(list_text(states))


def _page_text(page: SagaPage) -> str:
    text = list_text(page.items)
    if page.cursor:
        text += f"\nmore: --cursor {page.cursor}"
    return text


async def reindex_command(
    settings: NatsSettings, catalog: Catalog | None, finished_ttl: float
) -> None:
    nc = await connect(settings)
    try:
        done = await reindex(nc, Topology(), catalog, finished_ttl=finished_ttl)
    finally:
        await nc.close()
    click.echo(
        f"{done.instances} instances: {done.written} entries written, {done.emptied} emptied, "
        f"{done.raced} left to the engine (rewritten meanwhile), in {done.seconds:.1f} s"
    )
