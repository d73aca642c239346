"""Run the engine as a service: connect (or embed a server), start, wait for a signal, shut down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from pathlib import Path

from nats.aio.client import Client
from nats.errors import Error as NatsError

from saga.admin import AdminServer, AdminSettings
from saga.definition import load_catalog
from saga.engine import Engine, EngineSettings
from saga.engine.reload import DefinitionsWatcher
from saga.heap import settle_after_start
from saga.nats.connection import NatsSettings, connect
from saga.nats.outage import until_available
from saga.nats.server import EmbeddedServer
from saga.telemetry import telemetry_from_env

log = logging.getLogger("saga.run")

DEFAULT_DATA_DIR = Path(".saga-data")
URL_FILE = "nats.url"
DEFAULT_PORT = 4222


def embedded_server(data_dir: Path) -> EmbeddedServer:
    """Start the embedded server in ``data_dir`` and write its URL where the CLI finds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = DEFAULT_PORT if _port_free(DEFAULT_PORT) else 0  # 0: the server picks one
    server = EmbeddedServer(store_dir=data_dir / "jetstream", port=port).start()
    (data_dir / URL_FILE).write_text(server.url + "\n")
    return server


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def discover_url(explicit: str | None, data_dir: Path = DEFAULT_DATA_DIR) -> str:
    """``--nats``/``SAGA_NATS_URL``, else the embedded server of ``saga run`` here, else localhost."""
    if explicit:
        return explicit
    url_file = data_dir / URL_FILE
    if url_file.is_file():
        return url_file.read_text().strip()
    return f"nats://127.0.0.1:{DEFAULT_PORT}"


async def start_when_possible(
    engine: Engine, stop: asyncio.Event, patience: float | None = None
) -> bool:
    """Start the engine, trying again while JetStream does not answer (a cluster electing a
    leader: an outage to wait out); False when told to stop first. A real error raises at
    once; so does the last transient one after ``patience`` seconds, when given."""

    async def start() -> bool:
        await engine.start()
        return True

    started = await until_available(start, "saga-engine", stop, log, patience=patience)
    return bool(started)


def watch_definitions(engine: Engine, folder: Path) -> DefinitionsWatcher:
    """Reload ``engine``'s definitions when ``folder`` changes (call ``start()``)."""
    return DefinitionsWatcher(
        folder, lambda: engine.catalog, engine.reload, engine.removed_versions
    )


async def drain_or_close(nc: Client) -> None:
    """Drain (the last acks and publishes go out); a connection whose server is gone cannot
    be drained, so close it and say so in one line instead of a traceback. Nothing is lost:
    unacknowledged messages are redelivered once a server is back."""
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except (NatsError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
    else:
        reason = "the NATS server is unreachable"
    # a reset socket, too; on uvloop, nats-py's close writes what is pending to the closed
    # transport, which raises RuntimeError (asyncio's own transport ignores the write)
    with contextlib.suppress(NatsError, TimeoutError, OSError, RuntimeError):
        await nc.close()
    log.warning(
        "stopped without draining (%s): unacknowledged messages will be redelivered", reason
    )


async def run_engine(
    definitions_path: Path,
    nats: NatsSettings | None,
    data_dir: Path = DEFAULT_DATA_DIR,
    settings: EngineSettings | None = None,
    announce: bool = True,
    admin: AdminSettings | None = None,
    reload: bool = True,
    gc_threshold: int | None = None,
) -> None:
    """Until SIGTERM/SIGINT: stop fetching, finish in-flight work, drain, stop the embedded server.
    ``gc_threshold``: the collector once started (:func:`saga.heap.settle_after_start`)."""
    definitions = load_catalog([definitions_path])
    server = None
    if nats is None:
        server = await asyncio.to_thread(embedded_server, data_dir)
        nats = NatsSettings(url=server.url, name="saga-engine")
        if announce:
            print(
                f"embedded nats-server listening on {server.url} (store: {data_dir}/jetstream)",
                flush=True,
            )
    nc = await connect(nats)
    telemetry = telemetry_from_env("saga-engine", prometheus=admin is not None)
    engine = Engine(nc, definitions, settings, telemetry=telemetry)
    admin_server = AdminServer(engine.view(), admin) if admin is not None else None
    watcher: DefinitionsWatcher | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if admin_server is not None:  # first, so /healthz answers while provisioning
            url = await admin_server.start()
            if announce:
                print(f"admin API on {url}", flush=True)
                print(f"web console on {url}/console/", flush=True)
        if not await start_when_possible(engine, stop):
            return
        settle_after_start(gc_threshold)
        if reload and await asyncio.to_thread(definitions_path.is_dir):
            watcher = watch_definitions(engine, definitions_path)
            watcher.start()
        if announce:
            names = ", ".join(f"{d.name} v{d.version}" for d in definitions)
            print(f"engine running {len(definitions)} saga definition(s): {names}", flush=True)
        await stop.wait()
        log.info("shutting down: finishing in-flight work")
    finally:
        if watcher is not None:
            await watcher.stop()
        await engine.stop()
        if admin_server is not None:
            await admin_server.stop()
        await drain_or_close(nc)
        telemetry.shutdown()
        if server is not None:
            await server.astop()
