"""``saga demo``: a real server, the engine and six services as separate processes, and a batch
of sagas whose outcomes are known in advance from the services' business rules."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import nats
from nats.js import JetStreamContext

from saga.cli.render import table
from saga.client import SagaClient
from saga.core.state import InstanceState
from saga.nats.outage import TRANSIENT, describe
from saga.nats.server import EmbeddedServer
from saga.nats.topology import Topology
from saga.telemetry import telemetry_from_env

SERVICES = ("inventory", "payment", "shipping", "flight", "hotel", "car")
log = logging.getLogger("saga.demo")
ENGINE_CONSUMER = Topology().engine_consumer


@dataclass(frozen=True)
class Planned:
    saga: str
    saga_id: str
    expect: str
    """``completed``, or ``compensated`` with the step expected to fail."""
    failing_step: str | None
    rule: str


def default_definitions() -> Path:
    here = Path("definitions")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "definitions"


def examples_root() -> Path:
    """The repository checkout holding the example services (``services/``), put on the import
    path. The wheel does not install them (``services`` is a name users' code has): the
    checkout this package runs from (an editable install), else the working directory."""
    for root in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (root / "services" / "orders.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            return root
    raise click.ClickException(
        "saga demo runs the example services of a repository checkout (services/): "
        "run it from the repository's root"
    )


def plan(count: int) -> tuple[list[Planned], list[dict[str, Any]], list[dict[str, Any]]]:
    """Half complete; the rest fail at each step in turn, by a documented business rule."""
    examples_root()
    from services.orders import new_order
    from services.trips import new_trip

    order_failures = [
        (None, "completed", "valid order"),
        ("inventory", "reserve_inventory", "unknown SKU"),
        ("payment", "charge_payment", "total above the 1000 limit"),
        ("shipping", "schedule_shipping", "address in Antarctica"),
    ]
    trip_failures = [
        (None, "completed", "bookable trip"),
        ("flight", "book_flight", "route through XXX"),
        ("hotel", "book_hotel", "21 nights: hotel full"),
        ("car", "rent_car", "destination Atlantis"),
    ]
    planned, orders, trips = [], [], []
    for i in range(count):
        use_orders = i % 2 == 0
        options = order_failures if use_orders else trip_failures
        fail, step, rule = options[0] if (i // 2) % 2 == 0 else options[1 + (i // 4) % 3]
        expect = "completed" if fail is None else "compensated"
        failing = None if fail is None else step
        if use_orders:
            order = new_order(order_id=f"demo-order-{i:03d}", fail=fail)
            orders.append(order)
            planned.append(Planned("order-fulfilment", order["order_id"], expect, failing, rule))
        else:
            trip = new_trip(trip_id=f"demo-trip-{i:03d}", fail=fail)
            trips.append(trip)
            planned.append(Planned("travel-booking", trip["trip_id"], expect, failing, rule))
    return planned, orders, trips


class Processes:
    """Child processes that are always stopped, even on Ctrl-C."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.children[name] = subprocess.Popen(
                [sys.executable, *args], stdout=log, stderr=log, env=env
            )

    def check(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                raise click.ClickException(
                    f"{name} exited with {child.returncode}; see {self.log_dir}/{name}.log"
                )

    def stop(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


async def _consumers_ready(js: JetStreamContext, stream: str) -> bool:
    try:
        names = {c.name for c in await js.consumers_info(stream)}
    except Exception:
        return False
    return {ENGINE_CONSUMER, *SERVICES} <= names


async def _wait(condition: Any, timeout: float, what: str, processes: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        processes.check()
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def run_demo(count: int, definitions: Path, timeout: float, keep: bool = False) -> int:
    examples = examples_root()
    from services.orders import place_orders
    from services.trips import request_trips

    telemetry = telemetry_from_env("saga-demo")  # the demo plays the front ends
    work = Path(tempfile.mkdtemp(prefix="saga-demo-"))
    click.echo(f"saga demo: {count} sagas, logs in {work}")
    server = await asyncio.to_thread(EmbeddedServer(store_dir=work / "nats").start)
    click.echo(f"  nats-server     {server.url} (embedded, JetStream store {work / 'nats'})")
    env = {
        "SAGA_ADMIN_ADDR": "127.0.0.1:0",
        **os.environ,
        "SAGA_NATS_URL": server.url,
        "SAGA_LOG_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(examples)])),
    }
    processes = Processes(work)
    nc = None
    try:
        processes.start("engine", ["-m", "saga", "run", "--definitions", str(definitions)], env)
        for name in SERVICES:
            processes.start(name, ["-m", f"services.{name}", "--log-level", "WARNING"], env)
        click.echo(f"  engine          1 process ({definitions})")
        click.echo(f"  services        {', '.join(SERVICES)} (1 process each)")
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        topology = Topology()
        await _wait(
            lambda: _consumers_ready(js, topology.events_stream),
            60,
            "the engine and services to start",
            processes,
        )
        console = console_url(work / "engine.log")
        if console is not None:
            click.echo(f"  web console     {console}")
        planned, orders, trips = plan(count)
        started = time.monotonic()
        await place_orders(js, orders)
        await request_trips(js, trips)
        client = SagaClient(nc, topology)
        await client.store()  # fails now, not in the loop, when no engine made the bucket
        wanted = {(p.saga, p.saga_id) for p in planned}
        finished: dict[tuple[str, str], InstanceState] = {}
        shown = [-1]

        async def all_done() -> bool:
            try:
                states = await client.states(limit=100_000)
            except TRANSIENT as exc:  # an outage to wait out, not a reason to give up
                log.warning("saga-demo: JetStream is not answering (%s)", describe(exc))
                return False
            for state in states:
                key = (state.saga_name, state.saga_id)
                if key in wanted and (state.status.terminal or state.status.value == "parked"):
                    finished[key] = state
            if len(finished) != shown[-1]:
                shown.append(len(finished))
                click.echo(
                    f"\r  progress        {len(finished)}/{len(wanted)} sagas ended", nl=False
                )
            return len(finished) == len(wanted)

        await _wait(all_done, timeout, "the sagas to end", processes)
        click.echo(f" in {time.monotonic() - started:.1f} s\n")
        status = report(planned, finished, server.url if keep else None, console)
        if keep:
            click.echo("\nEverything keeps running; press Ctrl-C to stop.")
            await _until_signal()
        return status
    finally:
        if nc is not None:
            await nc.close()
        processes.stop()
        telemetry.shutdown()
        await server.astop()
        click.echo("stopped the engine, the services and nats-server")


def console_url(engine_log: Path) -> str | None:
    """The console's URL, from the line ``saga run`` prints (its admin port is picked at start)."""
    prefix = "web console on "
    for line in engine_log.read_text(errors="replace").splitlines():
        if line.startswith(prefix):
            return line.removeprefix(prefix).strip()
    return None


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def report(
    planned: list[Planned],
    finished: dict[tuple[str, str], InstanceState],
    url: str | None,
    console: str | None = None,
) -> int:
    rows, unexpected = [], []
    groups: dict[tuple[str, str, str], list[float]] = {}
    for p in planned:
        state = finished[(p.saga, p.saga_id)]
        ok = state.status.value == p.expect and state.failure_step == p.failing_step
        if not ok:
            unexpected.append((p, state))
        end = state.finished_at or state.updated_at
        outcome = state.status.value + (f" at {state.failure_step}" if state.failure_step else "")
        groups.setdefault((p.saga, outcome, p.rule), []).append(
            (end - state.started_at).total_seconds() * 1000
        )
    for (saga, outcome, rule), latencies in sorted(groups.items()):
        rows.append(
            [
                saga,
                outcome,
                rule,
                str(len(latencies)),
                f"{statistics.median(latencies):.0f} ms",
                f"{max(latencies):.0f} ms",
            ]
        )
    click.echo(table(rows, ["saga", "outcome", "business rule", "count", "p50", "max"]))
    example = next((p for p in planned if p.expect == "compensated"), planned[0])
    click.echo(f"\n{len(planned) - len(unexpected)}/{len(planned)} sagas ended as expected.")
    if url is None:
        click.echo("Look next: `saga demo --keep` leaves everything running so you can run")
        click.echo(f"  saga status {example.saga_id} --nats <url>   # steps, compensation, history")
    else:
        if console is not None:
            click.echo(f"Open the web console: {console}")
        click.echo("Look next, in another terminal:")
        click.echo(f"  saga status {example.saga_id} --nats {url}   # steps, compensation, history")
        click.echo(f"  saga list --state compensated --nats {url}")
    click.echo("  saga graph definitions/travel-booking.yaml   # the saga as a Mermaid diagram")
    for p, state in unexpected:
        click.echo(
            click.style(
                f"UNEXPECTED {p.saga} {p.saga_id}: expected {p.expect}"
                f" (failing at {p.failing_step}), got {state.status.value}"
                f" (failing at {state.failure_step}: {state.failure_reason})",
                fg="red",
            ),
            err=True,
        )
    return 1 if unexpected else 0
