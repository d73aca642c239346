"""Running an app from the command line: ``saga participant MODULE:APP [--nats URL]``."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TYPE_CHECKING

from saga.address import parse_address
from saga.errors import ConfigError
from saga.eventloop import UVLOOP_ENV, loop_factory, uvloop_wanted
from saga.heap import settle_after_start
from saga.logs import configure_logging
from saga.participant.app import App
from saga.participant.health import HEALTH_ENV
from saga.telemetry import telemetry_from_env

if TYPE_CHECKING:
    from saga.nats.connection import NatsSettings


def load_app(target: str) -> App:
    """``package.module:attribute`` (attribute ``app`` by default) -> the ``App`` there.

    The working directory is importable, as with ``python -m``, so a service
    next to where it is started is found by a console script too.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name:
        raise ConfigError(f"{target!r}: expected MODULE:APP, e.g. services.inventory:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name}: {exc}") from exc
    app = getattr(module, attribute or "app", None)
    if not isinstance(app, App):
        raise ConfigError(f"{target!r} is not a saga.participant.App (got {type(app).__name__})")
    return app


def nats_settings(app: App, nats_url: str | None) -> NatsSettings:
    """``--nats``, else ``$SAGA_NATS_URL``, else the local default, with the engine's
    ``SAGA_NATS_*`` authentication variables; the client is named after the app."""
    from saga.nats.connection import settings_from_env  # pydantic: only when connecting

    return settings_from_env(nats_url, app.name)


def run_app(
    app: App,
    nats_url: str | None = None,
    log_level: str = "INFO",
    health: str | None = None,
    uvloop: bool | None = None,
    gc_threshold: int | None = None,
) -> None:
    """Run ``app`` until SIGTERM/SIGINT; blocks. Tracing follows the OTEL_* environment.

    ``health``: ``HOST:PORT`` (or ``:PORT``, loopback) of the probes, else ``$SAGA_HEALTH_ADDR``;
    off when neither is set. ``uvloop``: run on uvloop's event loop when it is installed
    (extra ``fast``: less CPU per message), else ``$SAGA_UVLOOP``; on when neither is set.
    The process's garbage collector is tuned as ``saga run``'s (:mod:`saga.heap`):
    ``gc_threshold``, else ``$SAGA_GC_THRESHOLD``, else the default."""
    if not logging.getLogger().handlers:
        configure_logging(log_level)
    if not app.telemetry.enabled:
        app.telemetry = telemetry_from_env(app.name)
    import asyncio  # here, not at the top: importing the SDK stays light (issue 17)

    probes = parse_address(health or os.environ.get(HEALTH_ENV) or "off")
    wanted = uvloop_wanted(os.environ.get(UVLOOP_ENV)) if uvloop is None else uvloop
    # the app and the SDK are loaded: freeze them out of collections
    settle_after_start(gc_threshold)
    try:
        with asyncio.Runner(loop_factory=loop_factory(wanted)) as runner:
            runner.run(app.run(nats_settings(app, nats_url), health=probes))
    finally:
        app.telemetry.shutdown()


def run_participant(
    target: str,
    nats_url: str | None,
    health: str | None = None,
    uvloop: bool | None = None,
    gc_threshold: int | None = None,
) -> None:
    """The ``saga participant`` command: import ``target`` and run it until a signal."""
    run_app(load_app(target), nats_url, health=health, uvloop=uvloop, gc_threshold=gc_threshold)
