"""Commands that run things: ``run`` (the engine), ``demo``, and ``config check`` (what
``run`` would use). ``run``'s options are made from :class:`saga.cli.config.RunConfig`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from saga.cli.config import NATS_SETTINGS, RunConfig, read_config
from saga.cli.options import nats_settings, run_async, setting_options
from saga.errors import SagaError
from saga.logs import configure_logging

RUN_SETTINGS = tuple(name for name in RunConfig.model_fields if name not in NATS_SETTINGS)


def _use_config_file(ctx: click.Context, _: click.Parameter, value: Path | None) -> None:
    """Eager: the file's settings become the defaults of the other options."""
    if value is None:
        return
    try:
        ctx.default_map = read_config(value)
    except SagaError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None


@click.command()
@click.option(
    "--config",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    envvar="SAGA_CONFIG",
    is_eager=True,
    expose_value=False,
    callback=_use_config_file,
    help="YAML file of settings; options and SAGA_* variables override it [env SAGA_CONFIG].",
)
@setting_options(RUN_SETTINGS)
@setting_options(NATS_SETTINGS)
def run(
    definitions: Path,
    data_dir: Path,
    log_level: str,
    admin: str,
    admin_token: str | None,
    stream_replicas: int,
    storage: str,
    finished_ttl: str,
    partitions: int,
    reload: bool,
    uvloop: bool,
    gc_threshold: int,
    **kwargs: Any,
) -> None:
    """Run the engine until SIGTERM/SIGINT. Without --nats it embeds a nats-server."""
    from nats.js.api import StorageType

    from saga.admin import parse_address
    from saga.cli.config import retention_seconds
    from saga.engine import EngineSettings
    from saga.engine.process import run_engine
    from saga.eventloop import loop_factory
    from saga.nats.provision import StreamSettings

    configure_logging(log_level)
    settings = nats_settings(kwargs, "saga-engine", discover=False)
    try:
        address = parse_address(admin)
    except SagaError as exc:
        raise click.BadParameter(str(exc), param_hint="--admin") from None
    if address is not None and admin_token:
        address = dataclasses.replace(address, token=admin_token)
    streams = StreamSettings(replicas=stream_replicas, storage=StorageType(storage))
    try:
        kept = retention_seconds(finished_ttl)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--finished-ttl") from None
    engine_settings = EngineSettings(
        streams=streams, partitions=partitions, finished_ttl=kept, admin_token=admin_token
    )
    run_async(run_engine, loop_factory(uvloop))(
        definitions,
        settings,
        data_dir,
        engine_settings,
        admin=address,
        reload=reload,
        gc_threshold=gc_threshold,
    )


@click.command()
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


@click.group()
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

    from saga.cli.config import masked, resolved

    try:
        settings, origin = resolved(config_file)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None
    values = masked(settings)
    click.echo(yaml.safe_dump(values, sort_keys=False), nl=False)
    for key in values:
        if key in origin:
            click.echo(f"# {key}: from {origin[key]}", err=True)


COMMANDS = (run, demo, config)
