"""The ``saga`` command: the people-facing entry point to every adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import getpass
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from nats.errors import NoRespondersError, NoServersError
from nats.js import JetStreamContext
from pydantic import ValidationError

from saga import jsonwire
from saga.cli_asyncapi import asyncapi_command
from saga.cli_dlq import dlq_group
from saga.definition import (
    definition_files,
    json_schema,
    load_catalog,
    load_definition,
    load_definitions,
    version_warnings,
)
from saga.definition.diagram import to_mermaid
from saga.definition.model import SagaDefinition
from saga.errors import DefinitionError, Problem, SagaError
from saga.logs import configure_logging
from saga.nats.connection import NatsSettings, connect
from saga.nats.outage import TRANSIENT, describe
from saga.nats.topology import Topology
from saga.store import InstanceStore

F = TypeVar("F", bound=Callable[..., Any])
DEFINITIONS_HELP = "Folder (or file) of saga definitions."


def nats_options(func: F) -> F:
    """The connection options shared by every command that talks to NATS."""
    options = [
        click.option(
            "--nats",
            "nats_url",
            envvar="SAGA_NATS_URL",
            help="NATS URL(s), comma separated [env SAGA_NATS_URL].",
        ),
        click.option("--user", envvar="SAGA_NATS_USER", help="User name [env SAGA_NATS_USER]."),
        click.option(
            "--password", envvar="SAGA_NATS_PASSWORD", help="Password [env SAGA_NATS_PASSWORD]."
        ),
        click.option("--token", envvar="SAGA_NATS_TOKEN", help="Auth token [env SAGA_NATS_TOKEN]."),
        click.option(
            "--nkey",
            "nkey_seed_file",
            envvar="SAGA_NATS_NKEY",
            type=click.Path(path_type=Path),
            help="NKey seed file [env SAGA_NATS_NKEY].",
        ),
        click.option(
            "--creds",
            "creds_file",
            envvar="SAGA_NATS_CREDS",
            type=click.Path(path_type=Path),
            help="Credentials file [env SAGA_NATS_CREDS].",
        ),
        click.option(
            "--tls-ca",
            "tls_ca_file",
            envvar="SAGA_NATS_TLS_CA",
            type=click.Path(path_type=Path),
            help="CA bundle for TLS.",
        ),
        click.option(
            "--tls-cert",
            "tls_cert_file",
            envvar="SAGA_NATS_TLS_CERT",
            type=click.Path(path_type=Path),
            help="Client certificate for mutual TLS.",
        ),
        click.option(
            "--tls-key",
            "tls_key_file",
            envvar="SAGA_NATS_TLS_KEY",
            type=click.Path(path_type=Path),
            help="Client key for mutual TLS.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_NATS_KEYS = (
    "nats_url",
    "user",
    "password",
    "token",
    "nkey_seed_file",
    "creds_file",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
)


def nats_settings(kwargs: dict[str, Any], name: str, discover: bool = True) -> NatsSettings | None:
    """Pop the connection options; ``None`` when no URL was given and discovery is off."""
    from saga.runner import discover_url

    values = {k: kwargs.pop(k) for k in _NATS_KEYS}
    url = values.pop("nats_url")
    if url is None and not discover:
        return None
    fields = {k: v for k, v in values.items() if v is not None}
    if name == "saga-cli":
        fields.update(max_reconnect_attempts=2, connect_timeout=2.0, initial_connect_timeout=6.0)
    return NatsSettings(url=discover_url(url), name=name, **fields)


def run_async(func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an async command; our own errors are printed plainly, not as tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return asyncio.run(func(*args, **kwargs))
        except SagaError as exc:
            raise click.ClickException(str(exc)) from None
        except (OSError, TimeoutError, NoServersError) as exc:
            raise click.ClickException(f"cannot reach NATS: {exc}") from None

    return wrapper


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
    if not problems and len(files) > 1:
        try:  # rules across files: saga names and consumed subjects must be unique
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


_PARAM_OF = {
    "admin": "admin_address",
    "nats": "nats_url",
    "nkey": "nkey_seed_file",
    "creds": "creds_file",
    "tls_ca": "tls_ca_file",
    "tls_cert": "tls_cert_file",
    "tls_key": "tls_key_file",
}


def _use_config_file(ctx: click.Context, _: click.Parameter, value: Path | None) -> None:
    """Eager: the file's settings become the defaults of the other options."""
    if value is None:
        return
    from saga.config import read_config

    try:
        settings = read_config(value)
    except SagaError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    ctx.default_map = {_PARAM_OF.get(key, key): v for key, v in settings.items()}


@main.command()
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="SAGA_CONFIG",
    is_eager=True,
    expose_value=False,
    callback=_use_config_file,
    help="YAML file of settings; options and SAGA_* variables override it [env SAGA_CONFIG].",
)
@click.option(
    "--definitions",
    "definitions",
    envvar="SAGA_DEFINITIONS",
    default="definitions",
    show_default=True,
    type=click.Path(path_type=Path, exists=True),
    help=DEFINITIONS_HELP + " [env SAGA_DEFINITIONS]",
)
@click.option(
    "--data-dir",
    default=".saga-data",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Store of the embedded nats-server (used when no --nats is given).",
)
@click.option("--log-level", default="INFO", show_default=True, envvar="SAGA_LOG_LEVEL")
@click.option(
    "--admin",
    "admin_address",
    default="127.0.0.1:7480",
    show_default=True,
    envvar="SAGA_ADMIN_ADDR",
    help="Admin HTTP API address HOST:PORT, or 'off' [env SAGA_ADMIN_ADDR].",
)
@click.option(
    "--admin-token",
    envvar="SAGA_ADMIN_TOKEN",
    help="Bearer token the admin API and operator actions over NATS require "
    "[env SAGA_ADMIN_TOKEN].",
)
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    envvar="SAGA_RELOAD",
    help="Pick up changed definitions without a restart (validated first) [env SAGA_RELOAD].",
)
@click.option(
    "--stream-replicas",
    default=1,
    show_default=True,
    envvar="SAGA_STREAM_REPLICAS",
    type=click.IntRange(1, 5),
    help="Replicas of the engine's streams and bucket (3 on a 3-node cluster) "
    "[env SAGA_STREAM_REPLICAS].",
)
@click.option(
    "--storage",
    default="file",
    show_default=True,
    envvar="SAGA_STREAM_STORAGE",
    type=click.Choice(["file", "memory"]),
    help="Storage of the engine's streams and bucket [env SAGA_STREAM_STORAGE].",
)
@click.option(
    "--finished-ttl",
    default="7d",
    show_default=True,
    envvar="SAGA_FINISHED_TTL",
    help="How long a completed or compensated instance is kept after it ended (7d, 12h…), "
    "or 'never' to keep it for ever [env SAGA_FINISHED_TTL].",
)
@click.option(
    "--partitions",
    default=0,
    show_default=True,
    envvar="SAGA_PARTITIONS",
    type=click.IntRange(0, 1024),
    help="Deal instances into this many partitions, each owned by one engine replica at a "
    "time; use the same number on every replica, e.g. 12 for up to 12 replicas. "
    "0: no partitioning [env SAGA_PARTITIONS].",
)
@nats_options
def run(
    definitions: Path,
    data_dir: Path,
    log_level: str,
    admin_address: str,
    admin_token: str | None,
    stream_replicas: int,
    storage: str,
    finished_ttl: str,
    partitions: int,
    reload: bool,
    **kwargs: Any,
) -> None:
    """Run the engine until SIGTERM/SIGINT. Without --nats it embeds a nats-server."""
    from nats.js.api import StorageType

    from saga.admin import parse_address
    from saga.config import retention_seconds
    from saga.engine import EngineSettings
    from saga.nats.provision import StreamSettings
    from saga.runner import run_engine

    configure_logging(log_level)
    settings = nats_settings(kwargs, "saga-engine", discover=False)
    try:
        admin = parse_address(admin_address)
    except SagaError as exc:
        raise click.BadParameter(str(exc), param_hint="--admin") from None
    if admin is not None and admin_token:
        admin = dataclasses.replace(admin, token=admin_token)
    streams = StreamSettings(replicas=stream_replicas, storage=StorageType(storage))
    try:
        kept = retention_seconds(finished_ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--finished-ttl") from None
    engine_settings = EngineSettings(
        streams=streams, partitions=partitions, finished_ttl=kept, admin_token=admin_token
    )
    run_async(run_engine)(
        definitions, settings, data_dir, engine_settings, admin=admin, reload=reload
    )


@main.command()
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
    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    status = run_async(_start)(settings, name, local, data, saga_id, wait, timeout)
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


async def _start_definition(
    js: JetStreamContext, name: str, local: dict[str, SagaDefinition] | None
) -> SagaDefinition:
    """NAME from ``--definitions``, else from the running engine, else from ./definitions."""
    from saga.nats.served import served_definitions

    if local is not None:
        return local[name]
    served = await served_definitions(js, Topology().definitions_bucket)
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
    from saga.inspect import find_instance, instance_store, start_saga
    from saga.render import status_text
    from saga.telemetry import telemetry_from_env

    telemetry = telemetry_from_env("saga-cli")
    nc = await connect(settings)
    try:
        js = nc.jetstream()
        definition = await _start_definition(js, name, local)
        try:
            store: InstanceStore | None = await instance_store(js, Topology())
        except SagaError:
            store = None  # no engine ever ran here: publishing will say so
        try:
            started = await start_saga(js, definition, data, saga_id, store)
        except NoRespondersError:
            raise click.ClickException(
                f"no stream captures {definition.trigger.event!r}: is `saga run` running "
                "against this server?"
            ) from None
        if not started.new:
            click.echo(started.describe(), err=True)
            return "exists"
        saga_id = started.saga_id
        click.echo(saga_id)
        if not wait:
            return None
        store = store or await instance_store(js, Topology())
        deadline = time.monotonic() + timeout
        last = None
        pause = 0.2
        while time.monotonic() < deadline:
            try:
                state = await find_instance(store, saga_id, definition.name)
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
    finally:
        await nc.close()
        telemetry.shutdown()


@main.command()
@click.argument("saga_id")
@click.option("--name", help="Saga name (needed only when two sagas share the id).")
@click.option("--json", "as_json", is_flag=True, help="Print the instance state as JSON.")
@nats_options
def status(saga_id: str, name: str | None, as_json: bool, **kwargs: Any) -> None:
    """Show one instance: state, steps, attempts, timings and history."""
    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    run_async(_status)(settings, saga_id, name, as_json)


async def _status(settings: NatsSettings, saga_id: str, name: str | None, as_json: bool) -> None:
    from saga.inspect import find_instance, instance_store
    from saga.render import status_text

    nc = await connect(settings)
    try:
        state = await find_instance(await instance_store(nc.jetstream(), Topology()), saga_id, name)
    finally:
        await nc.close()
    if state is None:
        raise click.ClickException(f"no saga instance with id {saga_id!r}")
    click.echo(state.model_dump_json(indent=2) if as_json else status_text(state))


@main.command()
@click.argument("saga_id")
@click.option("--name", help="Saga name (needed only when two sagas share the id).")
@click.option("--json", "as_json", is_flag=True, help="Print trace id and timings as JSON.")
@nats_options
def trace(saga_id: str, name: str | None, as_json: bool, **kwargs: Any) -> None:
    """Show one saga as a waterfall (steps, compensations, attempts) and its trace id."""
    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    run_async(_trace)(settings, saga_id, name, as_json)


async def _trace(settings: NatsSettings, saga_id: str, name: str | None, as_json: bool) -> None:
    from saga.inspect import find_record, instance_store
    from saga.render import waterfall_text
    from saga.telemetry import trace_id_of

    nc = await connect(settings)
    try:
        record = await find_record(await instance_store(nc.jetstream(), Topology()), saga_id, name)
    finally:
        await nc.close()
    if record is None:
        raise click.ClickException(f"no saga instance with id {saga_id!r}")
    trace_id = trace_id_of(record.trace)
    if as_json:
        state = json.loads(record.state.model_dump_json())
        click.echo(
            json.dumps(
                {
                    "trace_id": trace_id,
                    "traceparent": record.trace.get("traceparent"),
                    "status": state["status"],
                    "steps": state["steps"],
                    "history": state["history"],
                },
                indent=2,
            )
        )
    else:
        click.echo(waterfall_text(record.state, trace_id))


def _operator_command(action: str, help_text: str) -> None:
    @main.command(action, help=help_text)
    @click.argument("saga_id")
    @click.option("--name", help="Saga name (needed only when two sagas share the id).")
    @click.option("--reason", help="Why (recorded in the instance history, with who).")
    @click.option(
        "--admin-token",
        envvar="SAGA_ADMIN_TOKEN",
        help="The engine's admin token, when it has one [env SAGA_ADMIN_TOKEN].",
    )
    @nats_options
    def command(
        saga_id: str,
        name: str | None,
        reason: str | None,
        admin_token: str | None,
        **kwargs: Any,
    ) -> None:
        from saga.engine.operator import ActionRequest

        settings = nats_settings(kwargs, "saga-cli")
        assert settings is not None
        fields = {"action": action, "saga_id": saga_id, "name": name, "reason": reason}
        request = ActionRequest.model_validate({**fields, "actor": _cli_actor()})
        run_async(_operator)(settings, request, admin_token)


def _cli_actor() -> str:
    """``cli:<login>``: who typed the command, as far as this machine knows."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container without a user entry)
        return "cli"


async def _operator(settings: NatsSettings, request: Any, admin_token: str | None) -> None:
    from saga.engine.operator import OPERATOR_SUBJECT, auth_headers

    action = request.action
    nc = await connect(settings)
    try:
        reply = await nc.request(
            OPERATOR_SUBJECT,
            request.model_dump_json().encode(),
            timeout=15,
            headers=auth_headers(admin_token),
        )
    except NoRespondersError:
        raise click.ClickException("no engine answered: is `saga run` running?") from None
    finally:
        await nc.close()
    result = json.loads(reply.data)
    if not result["ok"]:
        raise click.ClickException(f"{action} refused: {result['message']}")
    click.echo(f"{action}: {result['message']}; instance is now {result['status']}")


main.add_command(asyncapi_command)
main.add_command(dlq_group)
_operator_command("abort", "Compensate a running saga now.")
_operator_command("retry", "Re-drive a parked compensation, or the running step.")
_operator_command("resume", "Mark a parked compensation as done by hand and go on compensating.")


@main.command()
@click.argument("saga_id")
@click.argument("event")
@click.option("--data", "data_text", default="{}", help="The event's payload: JSON, @FILE or -.")
@click.option("--name", help="Saga name (needed only when two sagas share the id).")
@click.option("--reason", help="Why (recorded in the instance history, with who).")
@click.option("--admin-token", envvar="SAGA_ADMIN_TOKEN", help="The engine's admin token.")
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
    from saga.engine.operator import EMIT, ActionRequest

    fields: dict[str, Any] = {"action": EMIT, "saga_id": saga_id, "name": name, "reason": reason}
    fields |= {"subject": event, "data": _trigger_data(data_text), "actor": _cli_actor()}
    try:
        request = ActionRequest.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise click.BadParameter(problems, param_hint="EVENT or --data") from None
    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    run_async(_operator)(settings, request, admin_token)


@main.command("list")
@click.option(
    "--state",
    "status_filter",
    type=click.Choice(["running", "compensating", "completed", "compensated", "parked"]),
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
    from saga.cli_index import list_command, parse_moment, parse_where
    from saga.index import SagaQuery

    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    query = SagaQuery(
        saga=name,
        state=status_filter,
        since=parse_moment(since) if since else None,
        until=parse_moment(until) if until else None,
        where=parse_where(where),
        limit=limit,
        cursor=cursor,
    )
    run_async(list_command)(settings, query, as_json)


@main.command()
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
    from saga.cli_index import reindex_command
    from saga.config import retention_seconds

    settings = nats_settings(kwargs, "saga-cli")
    assert settings is not None
    try:
        catalog = load_catalog([definitions])
        kept = retention_seconds(finished_ttl)
    except DefinitionError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--finished-ttl") from None
    run_async(reindex_command)(settings, catalog, kept)


@main.command()
@click.argument("target")
@click.option("--nats", "nats_url", envvar="SAGA_NATS_URL", help="NATS URL [env SAGA_NATS_URL].")
@click.option("--log-level", default="INFO", show_default=True, envvar="SAGA_LOG_LEVEL")
@click.option(
    "--health",
    envvar="SAGA_HEALTH_ADDR",
    help="Serve /healthz and /readyz on HOST:PORT (:PORT is loopback); off by default "
    "[env SAGA_HEALTH_ADDR].",
)
def participant(target: str, nats_url: str | None, log_level: str, health: str | None) -> None:
    """Run a participant service given as MODULE:APP (e.g. services.inventory:app).

    It authenticates with the same SAGA_NATS_* variables as `saga run` (user and password,
    token, NKey, creds, TLS)."""
    from saga.participant import run_participant
    from saga.runner import discover_url

    configure_logging(log_level)
    try:
        run_participant(target, discover_url(nats_url), health)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--count", default=24, show_default=True, help="Sagas to run (both example sagas).")
@click.option(
    "--definitions",
    type=click.Path(path_type=Path),
    default=None,
    help="Definitions folder (default: ./definitions or the repository's).",
)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the sagas.")
@click.option(
    "--keep", is_flag=True, help="Keep everything running after the summary (Ctrl-C stops)."
)
def demo(count: int, definitions: Path | None, timeout: float, keep: bool) -> None:
    """Run the engine and the example services on an embedded server with a batch of sagas."""
    from saga.demo import default_definitions, run_demo

    status = run_async(run_demo)(count, definitions or default_definitions(), timeout, keep)
    sys.exit(status)


@main.group()
def config() -> None:
    """Inspect settings."""


@config.command("check")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="SAGA_CONFIG",
    help="YAML file of settings [env SAGA_CONFIG].",
)
def config_check(config_file: Path | None) -> None:
    """Print the settings `saga run` would use (file + environment), secrets masked."""
    import yaml

    from saga.config import masked, resolved

    try:
        settings, origin = resolved(config_file)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None
    values = masked(settings)
    click.echo(yaml.safe_dump(values, sort_keys=False), nl=False)
    for key in values:
        if key in origin:
            click.echo(f"# {key}: from {origin[key]}", err=True)


def _definitions(path: Path) -> dict[str, SagaDefinition]:
    try:
        return load_definitions([path])
    except DefinitionError as exc:
        raise click.ClickException(str(exc)) from None
