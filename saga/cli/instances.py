"""Commands on one instance: ``start``, ``status``, ``trace``, and the operator actions
``abort``, ``retry``, ``resume``, ``terminate`` and ``redrive`` (on one instance, or in bulk
over ``--saga`` and ``--state`` from the index, after a confirmation). They go through :class:`saga.client.SagaClient`."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from nats.errors import NoRespondersError
from pydantic import ValidationError

from saga import jsonwire
from saga.cli.config import DEFINITIONS_HELP
from saga.cli.options import cli_settings, connected, nats_options, run_async
from saga.cli.render import status_text, waterfall_text
from saga.client import SagaClient
from saga.core.state import Status
from saga.definition import load_definitions
from saga.definition.model import SagaDefinition
from saga.engine.operator import ActionRequest
from saga.errors import DefinitionError
from saga.nats.connection import NatsSettings
from saga.nats.outage import TRANSIENT, describe
from saga.protocol import HEADER_TRACEPARENT

NAME_HELP = "Saga name (needed only when two sagas share the id)."


@click.command()
@click.argument("name")
@click.option(
    "--data",
    "data_text",
    default="{}",
    help="Trigger payload: a JSON object, @FILE to read it from a file, or - for stdin.",
)
@click.option("--id", "saga_id", help="Saga id (default: from the payload, or a new UUID).")
@click.option("--wait", is_flag=True, help="Wait for the saga to end and print its status.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds --wait waits.")
@click.option(
    "--definitions",
    envvar="SAGA_DEFINITIONS",
    type=click.Path(path_type=Path, exists=True),
    help=DEFINITIONS_HELP + " Default: the ones the running engine serves, else ./definitions.",
)
@nats_options
def start(
    name: str,
    data_text: str,
    saga_id: str | None,
    wait: bool,
    timeout: float,
    definitions: Path | None,
    **kwargs: Any,
) -> None:
    """Start an instance of saga NAME; prints its id.

    Exits 1 without starting anything when an instance with this id already exists."""
    data = _trigger_data(data_text)
    local = None
    if definitions is not None:
        local = _definitions(definitions)
        if name not in local:
            raise click.BadParameter(
                f"no saga {name!r} in {definitions} (have: {', '.join(sorted(local))})",
                param_hint="NAME",
            )
    status = run_async(_start)(cli_settings(kwargs), name, local, data, saga_id, wait, timeout)
    if status is not None and status not in ("completed", "compensated"):
        sys.exit(1)


def _trigger_data(text: str) -> dict[str, Any]:
    """``--data``: JSON text, ``@file`` or ``-`` (stdin), as RFC 8259 JSON (no NaN/Infinity)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(
                f"cannot read {text[1:]}: {exc}", param_hint="--data"
            ) from None
    try:
        data = jsonwire.loads(text)
    except jsonwire.NonFiniteNumberError as exc:
        raise click.BadParameter(
            f"{exc}: JSON has no NaN or Infinity", param_hint="--data"
        ) from None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--data")
    return data


def _definitions(path: Path) -> dict[str, SagaDefinition]:
    try:
        return load_definitions([path])
    except DefinitionError as exc:
        raise click.ClickException(str(exc)) from None


async def _start_definition(
    client: SagaClient, name: str, local: dict[str, SagaDefinition] | None
) -> SagaDefinition:
    """NAME from ``--definitions``, else from the running engine, else from ./definitions."""
    from saga.nats.served import served_definitions

    if local is not None:
        return local[name]
    served = await served_definitions(client.js, client.topology.definitions_bucket)
    if name in served:
        return served[name]
    if not served and await asyncio.to_thread(Path("definitions").is_dir):
        fallback = _definitions(Path("definitions"))
        if name in fallback:
            return fallback[name]
    where = (
        "the running engine" if served else "the server (is `saga run` running?) nor ./definitions"
    )
    have = f" (have: {', '.join(sorted(served))})" if served else ""
    raise click.BadParameter(f"no saga {name!r} in {where}{have}", param_hint="NAME")


async def _start(
    settings: NatsSettings,
    name: str,
    local: dict[str, SagaDefinition] | None,
    data: dict[str, Any],
    saga_id: str | None,
    wait: bool,
    timeout: float,
) -> str | None:
    from saga.telemetry import telemetry_from_env

    telemetry = telemetry_from_env("saga-cli")
    try:
        async with connected(settings) as client:
            definition = await _start_definition(client, name, local)
            try:
                started = await client.start(definition, data, saga_id)
            except NoRespondersError:
                raise click.ClickException(
                    f"no stream captures {definition.trigger.event!r}: is `saga run` running "
                    "against this server?"
                ) from None
            if not started.new:
                click.echo(started.describe(), err=True)
                return "exists"
            click.echo(started.saga_id)
            if not wait:
                return None
            return await _wait(client, started.saga_id, definition.name, timeout)
    finally:
        telemetry.shutdown()


async def _wait(client: SagaClient, saga_id: str, name: str, timeout: float) -> str:
    """Print each status the instance enters until it ends (or parks); its last status."""
    deadline = time.monotonic() + timeout
    last = None
    pause = 0.2
    while time.monotonic() < deadline:
        try:
            state = await client.get(saga_id, name)
        except TRANSIENT as exc:  # a cluster electing a leader: an outage to wait out
            pause = min(pause * 2, 5.0)
            click.echo(f"  ... JetStream is not answering ({describe(exc)})", err=True)
            await asyncio.sleep(pause)
            continue
        if state is not None and state.status.value != last:
            last = state.status.value
            click.echo(f"  ... {last}", err=True)
        if state is not None and (state.status.terminal or state.status.value == "parked"):
            click.echo(status_text(state))
            return state.status.value
        await asyncio.sleep(0.2)
    raise click.ClickException(
        f"saga {saga_id} did not end within {timeout}s (is the engine running?)"
    )


@click.command()
@click.argument("saga_id")
@click.option("--name", help=NAME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the instance state as JSON.")
@nats_options
def status(saga_id: str, name: str | None, as_json: bool, **kwargs: Any) -> None:
    """Show one instance: state, steps, attempts, timings and history."""
    run_async(_status)(cli_settings(kwargs), saga_id, name, as_json)


async def _status(settings: NatsSettings, saga_id: str, name: str | None, as_json: bool) -> None:
    async with connected(settings) as client:
        state = await client.get(saga_id, name)
    if state is None:
        raise click.ClickException(f"no saga instance with id {saga_id!r}")
    click.echo(state.model_dump_json(indent=2) if as_json else status_text(state))


@click.command()
@click.argument("saga_id")
@click.option("--name", help=NAME_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print trace id and timings as JSON.")
@nats_options
def trace(saga_id: str, name: str | None, as_json: bool, **kwargs: Any) -> None:
    """Show one saga as a waterfall (steps, compensations, attempts) and its trace id."""
    run_async(_trace)(cli_settings(kwargs), saga_id, name, as_json)


async def _trace(settings: NatsSettings, saga_id: str, name: str | None, as_json: bool) -> None:
    from saga.telemetry import trace_id_of

    async with connected(settings) as client:
        record = await client.record(saga_id, name)
    if record is None:
        raise click.ClickException(f"no saga instance with id {saga_id!r}")
    trace_id = trace_id_of(record.trace)
    if as_json:
        state = json.loads(record.state.model_dump_json())
        click.echo(
            json.dumps(
                {
                    "trace_id": trace_id,
                    HEADER_TRACEPARENT: record.trace.get(HEADER_TRACEPARENT),
                    "status": state["status"],
                    "steps": state["steps"],
                    "history": state["history"],
                },
                indent=2,
            )
        )
    else:
        click.echo(waterfall_text(record.state, trace_id))


BULK_LIMIT = 10_000
"""At most this many instances in one bulk action (the index's largest page)."""


def _action_command(action: str, help_text: str) -> click.Command:
    @click.command(action, help=help_text)
    @click.argument("saga_id", required=False)
    @click.option("--name", help=NAME_HELP)
    @click.option("--reason", help="Why (recorded in the instance history, with who).")
    @click.option("--state", help="Bulk: every instance in this status (with --saga).")
    @click.option("--saga", "saga", help="Bulk: every instance of this saga (with --state).")
    @click.option("--where", multiple=True, help="Bulk: NAME=VALUE of a search attribute.")
    @click.option("--since", help="Bulk: in their status since 1h (ago) or an ISO 8601 time.")
    @click.option("--yes", is_flag=True, help="Bulk: do not ask for confirmation.")
    @click.option(
        "--admin-token",
        envvar="SAGA_ADMIN_TOKEN",
        help="The engine's admin token, when it has one [env SAGA_ADMIN_TOKEN].",
    )
    @nats_options
    def command(
        saga_id: str | None,
        name: str | None,
        reason: str | None,
        state: str | None,
        saga: str | None,
        where: tuple[str, ...],
        since: str | None,
        yes: bool,
        admin_token: str | None,
        **kwargs: Any,
    ) -> None:
        from saga.cli.index import parse_moment, parse_where

        if saga_id is None:
            if not (state and saga):
                raise click.UsageError(f"give a SAGA_ID, or --state and --saga to {action} in bulk")
            moment = parse_moment(since) if since else None
            bulk = _Bulk(action, saga, state, reason, yes, parse_where(where), moment)
            run_async(_act_bulk)(cli_settings(kwargs), bulk, admin_token)
            return
        if state or saga or where or since:
            raise click.UsageError("give a SAGA_ID or --state/--saga/--where/--since, not both")
        fields = {"action": action, "saga_id": saga_id, "name": name, "reason": reason}
        request = ActionRequest.model_validate({**fields, "actor": _cli_actor()})
        run_async(_act)(cli_settings(kwargs), request, admin_token)

    return command


@dataclass(frozen=True)
class _Bulk:
    """One action over every instance the index lists for a saga and a status."""

    action: str
    saga: str
    state: str
    reason: str | None
    yes: bool
    where: dict[str, str]
    since: datetime | None


async def _act_bulk(settings: NatsSettings, bulk: _Bulk, admin_token: str | None) -> None:
    """List the targets from the index, confirm, then act on each (each recorded in its own
    history with who and why); exits 1 when any was refused."""
    from saga.errors import StoreError
    from saga.index import SagaQuery

    try:
        Status(bulk.state)
    except ValueError:
        have = ", ".join(s.value for s in Status)
        raise click.BadParameter(f"unknown status (have: {have})", param_hint="--state") from None
    async with connected(settings) as client:
        try:
            query = SagaQuery(
                saga=bulk.saga,
                state=bulk.state,
                where=bulk.where,
                since=bulk.since,
                limit=BULK_LIMIT,
            )
            page = await client.list(query)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from None
        ids = [item.saga_id for item in page.items]
        if not ids:
            click.echo(f"no {bulk.state} instance of {bulk.saga}: nothing to {bulk.action}")
            return
        click.echo(f"{bulk.action}: {len(ids)} {bulk.state} instance(s) of {bulk.saga}:")
        for saga_id in ids[:20]:
            click.echo(f"  {saga_id}")
        if len(ids) > 20:
            click.echo(f"  ... and {len(ids) - 20} more")
        if not bulk.yes and not click.confirm(f"{bulk.action} all {len(ids)}?", default=False):
            raise click.ClickException("nothing done")
        refused = 0
        for saga_id in ids:
            request = ActionRequest(
                action=bulk.action,
                saga_id=saga_id,
                name=bulk.saga,
                reason=bulk.reason,
                actor=_cli_actor(),
            )
            reply = await client.act(request, admin_token)
            refused += not reply.ok
            outcome = f"now {reply.status}" if reply.ok else f"refused: {reply.message}"
            click.echo(f"  {saga_id}: {outcome}")
    click.echo(f"{bulk.action}: {len(ids) - refused} done, {refused} refused")
    if refused:
        sys.exit(1)


def _cli_actor() -> str:
    """``cli:<login>``: who typed the command, as far as this machine knows."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container without a user entry)
        return "cli"


async def _act(settings: NatsSettings, request: ActionRequest, admin_token: str | None) -> None:
    async with connected(settings) as client:
        reply = await client.act(request, admin_token)
    if not reply.ok:
        raise click.ClickException(f"{request.action} refused: {reply.message}")
    click.echo(f"{request.action}: {reply.message}; instance is now {reply.status}")


@click.command()
@click.argument("saga_id")
@click.argument("event")
@click.option("--data", "data_text", default="{}", help="The event's payload: JSON, @FILE or -.")
@click.option("--name", help=NAME_HELP)
@click.option("--reason", help="Why (recorded in the instance history, with who).")
@click.option(
    "--admin-token",
    envvar="SAGA_ADMIN_TOKEN",
    help="The engine's admin token, when it has one [env SAGA_ADMIN_TOKEN].",
)
@nats_options
def emit(
    saga_id: str,
    event: str,
    data_text: str,
    name: str | None,
    reason: str | None,
    admin_token: str | None,
    **kwargs: Any,
) -> None:
    """Deliver EVENT (a success or failure subject of an observed step) to one instance,
    e.g. a manual approval; recorded in its history with who and why."""
    from saga.engine.operator import EMIT

    fields: dict[str, Any] = {"action": EMIT, "saga_id": saga_id, "name": name, "reason": reason}
    fields |= {"subject": event, "data": _trigger_data(data_text), "actor": _cli_actor()}
    try:
        request = ActionRequest.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise click.BadParameter(problems, param_hint="EVENT or --data") from None
    run_async(_act)(cli_settings(kwargs), request, admin_token)


COMMANDS = (
    start,
    status,
    trace,
    _action_command("abort", "Compensate a running saga now."),
    _action_command("retry", "Re-drive a parked compensation, or the running step."),
    _action_command("resume", "Mark a parked compensation as done by hand and go on compensating."),
    _action_command(
        "terminate",
        "End a running, compensating or parked saga now, without compensating (status "
        "terminated): what its steps did stays as it is.",
    ),
    _action_command(
        "redrive",
        "Run a compensated, parked or terminated saga again from its failed step with the "
        "same data; steps whose effect stands are not run again.",
    ),
    emit,
)
