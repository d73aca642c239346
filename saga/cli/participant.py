"""``saga participant MODULE:APP``: run a participant service."""

from __future__ import annotations

import click

from saga.errors import SagaError
from saga.heap import YOUNG_THRESHOLD
from saga.logs import configure_logging


@click.command()
@click.argument("target")
@click.option("--nats", "nats_url", envvar="SAGA_NATS_URL", help="NATS URL [env SAGA_NATS_URL].")
@click.option("--log-level", default="INFO", show_default=True, envvar="SAGA_LOG_LEVEL")
@click.option(
    "--health",
    envvar="SAGA_HEALTH_ADDR",
    help="Serve /healthz and /readyz on HOST:PORT (:PORT is loopback); off by default "
    "[env SAGA_HEALTH_ADDR].",
)
@click.option(
    "--uvloop/--no-uvloop",
    default=True,
    envvar="SAGA_UVLOOP",
    help="Run on uvloop's event loop when it is installed (extra 'fast'): less CPU per "
    "message [env SAGA_UVLOOP].",
)
@click.option(
    "--gc-threshold",
    type=click.IntRange(0),
    default=None,
    envvar="SAGA_GC_THRESHOLD",
    help="Allocations between young garbage collections once started (default "
    f"{YOUNG_THRESHOLD}; Python's: 700); 0 leaves Python's collector as it is "
    "[env SAGA_GC_THRESHOLD].",
)
def participant(
    target: str,
    nats_url: str | None,
    log_level: str,
    health: str | None,
    uvloop: bool,
    gc_threshold: int | None,
) -> None:
    """Run a participant service given as MODULE:APP (e.g. services.inventory:app).

    It authenticates with the same SAGA_NATS_* variables as `saga run` (user and password,
    token, NKey, creds, TLS)."""
    from saga.engine.process import discover_url
    from saga.participant.runner import run_participant

    configure_logging(log_level)
    try:
        run_participant(target, discover_url(nats_url), health, uvloop, gc_threshold)
    except SagaError as exc:
        raise click.ClickException(str(exc)) from None
