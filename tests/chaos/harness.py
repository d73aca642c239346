"""The chaos harness: the engine and the example services as real processes, a planned
workload with random failures, progress timestamps, and the final checks.

Nothing here sleeps and hopes: waits are bounded polls (``tests.support.wait_for``);
sleeps only pace the workload and the faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from saga.client import SagaClient
from saga.core.state import InstanceState
from saga.definition import SagaDefinition, load_definitions
from saga.nats.topology import Topology
from saga.protocol import kv_prefix
from saga.testing.invariants import Report, check_live
from services.orders import new_order, place_orders
from services.trips import new_trip, request_trips
from tests.chaos import diagnose
from tests.support import wait_for

HERE = Path(__file__).resolve().parent
DEFINITIONS = HERE / "definitions"
ROOT = HERE.parent.parent
SERVICES = ("inventory", "payment", "shipping", "flight", "hotel", "car")
ENDED = ("completed", "compensated", "parked")
RECOVERY_BOUND = 15.0
"""Seconds within which work must resume after a restart (a generous bound, not a target)."""


def chaos_definitions() -> dict[str, SagaDefinition]:
    return load_definitions([DEFINITIONS])


# -- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    saga: str
    saga_id: str
    expect: str
    """``completed``, ``compensated`` or ``parked``: what the services' rules and the
    simulated faults make of it, whatever else breaks meanwhile."""
    payload: dict[str, Any]
    why: str


ORDER_STEPS = ("inventory", "payment", "shipping")
TRIP_STEPS = ("flight", "hotel", "car")
UNDO_OF = {
    "inventory": "inventory.release",
    "payment": "payment.refund",
    "flight": "travel.flight.cancel",
    "hotel": "travel.hotel.cancel",
}


def plan(count: int, seed: int, prefix: str = "c") -> list[Planned]:
    """Half clean; the rest fail by a business rule, time out, crash once, or park."""
    rng = random.Random(seed)
    planned = []
    for i in range(count):
        orders = i % 2 == 0
        steps = ORDER_STEPS if orders else TRIP_STEPS
        saga_id = f"{prefix}-{i:05d}"
        roll = rng.random()
        simulate: dict[str, str] = {}
        fail: str | None = None
        if roll < 0.45:
            expect, why = "completed", "clean"
        elif roll < 0.65:
            fail = rng.choice(steps)
            expect, why = "compensated", f"{fail} rejects"
        elif roll < 0.75:
            target = rng.choice(steps)
            simulate[target] = "timeout"
            expect, why = "compensated", f"{target} times out"
        elif roll < 0.87:
            target = rng.choice(steps)
            simulate[target] = "crash-once"
            expect, why = "completed", f"{target} crashes once"
        elif roll < 0.95:
            fail = steps[2]
            undo = rng.choice(sorted(u for s, u in UNDO_OF.items() if s in steps))
            simulate[undo] = "crash-once"
            expect, why = "compensated", f"{fail} rejects, {undo} crashes once"
        else:
            fail = steps[2]
            undo = UNDO_OF[steps[1]]
            simulate[undo] = "timeout"
            expect, why = "parked", f"{fail} rejects, {undo} never answers"
        extra = {"simulate": simulate} if simulate else {}
        if orders:
            payload = new_order(order_id=saga_id, fail=fail, **extra)
            planned.append(Planned("order-fulfilment", saga_id, expect, payload, why))
        else:
            payload = new_trip(trip_id=saga_id, fail=fail, **extra)
            planned.append(Planned("travel-booking", saga_id, expect, payload, why))
    return planned


def plan_timeouts(count: int, seed: int, prefix: str = "t") -> list[Planned]:
    """Every saga has one step that never answers: each lives on its timers (two attempts
    of a step timeout, then the undos), for runs that kill the timers stream's leader."""
    rng = random.Random(seed)
    planned = []
    for i in range(count):
        orders = i % 2 == 0
        target = rng.choice(ORDER_STEPS if orders else TRIP_STEPS)
        saga_id = f"{prefix}-{i:05d}"
        simulate = {"simulate": {target: "timeout"}}
        if orders:
            payload = new_order(order_id=saga_id, fail=None, **simulate)
            saga = "order-fulfilment"
        else:
            payload = new_trip(trip_id=saga_id, fail=None, **simulate)
            saga = "travel-booking"
        planned.append(Planned(saga, saga_id, "compensated", payload, f"{target} times out"))
    return planned


async def publish(js: JetStreamContext, batch: Sequence[Planned]) -> None:
    """Publish triggers; a failed publish (server away) is retried with the same message id."""
    orders = [p.payload for p in batch if p.saga == "order-fulfilment"]
    trips = [p.payload for p in batch if p.saga == "travel-booking"]
    for attempt in range(60):
        try:
            if orders:
                await asyncio.wait_for(place_orders(js, orders), 10)
            if trips:
                await asyncio.wait_for(request_trips(js, trips), 10)
            return
        except Exception:
            if attempt == 59:
                raise
            await asyncio.sleep(0.5)


async def engine_ready(js: JetStreamContext, topology: Topology | None = None) -> None:
    """Wait until an engine has provisioned the streams and its consumer (a trigger published
    before that would be captured by no stream)."""
    topology = topology or Topology()

    async def provisioned() -> bool:
        try:
            await js.consumer_info(topology.events_stream, topology.engine_consumer)
        except Exception:
            return False
        return True

    await wait_for(provisioned, timeout=30, interval=0.2, message="the engine's streams")


async def feed(js: JetStreamContext, planned: Sequence[Planned], seconds: float) -> None:
    """Spread the triggers over ``seconds``, in small batches (once an engine is up)."""
    await engine_ready(js)
    batches = max(1, int(seconds / 0.5))
    size = max(1, -(-len(planned) // batches))
    for start in range(0, len(planned), size):
        await publish(js, planned[start : start + size])
        await asyncio.sleep(0.5)


# -- processes ------------------------------------------------------------------------------


class Fleet:
    """Engines and services as child processes; every one is stopped at the end."""

    def __init__(self, urls: str, log_dir: Path, definitions: Path = DEFINITIONS) -> None:
        self.urls = urls
        self.log_dir = log_dir
        self.definitions = definitions
        self.engines: dict[int, subprocess.Popen[bytes]] = {}
        self.services: dict[str, subprocess.Popen[bytes]] = {}
        self.kills = 0
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SAGA_LOG_LEVEL": "WARNING",
            "SAGA_ADMIN_ADDR": "off",  # several engines on one machine: no fixed HTTP port
        }

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, *args], stdout=log, stderr=log, env=self.env, cwd=ROOT
            )

    def start_engine(self, index: int = 0, *options: str) -> None:
        args = ["-m", "saga", "run", "--nats", self.urls, "--definitions", str(self.definitions)]
        self.engines[index] = self._spawn(f"engine-{index}", [*args, *options])

    def start_services(self) -> None:
        for name in SERVICES:
            args = ["-m", f"services.{name}", "--nats", self.urls, "--log-level", "WARNING"]
            self.services[name] = self._spawn(name, args)

    def stop_engine(self, index: int = 0) -> None:
        """SIGTERM, and wait for a clean exit (the engine hands its partitions over)."""
        engine = self.engines.pop(index)
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0, f"engine {index} did not stop cleanly"

    def kill_engine(self, index: int = 0) -> None:
        engine = self.engines.pop(index)
        engine.send_signal(signal.SIGKILL)
        engine.wait()
        self.kills += 1

    def check_alive(self) -> None:
        for name, child in [
            *self.services.items(),
            *(("engine", e) for e in self.engines.values()),
        ]:
            assert child.poll() is None, (
                f"{name} exited with {child.returncode}; see {self.log_dir}"
            )

    def stop(self) -> None:
        children = [*self.engines.values(), *self.services.values()]
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# -- observing progress -----------------------------------------------------------------------


class Progress:
    """When instance records were written: each KV write is a message on ``$KV.<bucket>.>``."""

    def __init__(self) -> None:
        self.writes: list[float] = []

    async def start(self, nc: Client, topology: Topology | None = None) -> None:
        bucket = (topology or Topology()).instances_bucket

        async def seen(_: Msg) -> None:
            self.writes.append(time.monotonic())

        await nc.subscribe(f"{kv_prefix(bucket)}>", cb=seen)

    async def recovery_after(self, since: float, timeout: float = RECOVERY_BOUND) -> float:
        """Seconds from ``since`` to the first write after it (fails after ``timeout``)."""
        await wait_for(
            lambda: bool(self.writes) and self.writes[-1] > since,
            timeout=timeout,
            message="the first instance write after the restart",
        )
        return next(t for t in self.writes if t > since) - since


async def fleet_ready(js: JetStreamContext, progress: Progress, since: float) -> None:
    """Wait until every service pulls from its consumer and an engine has written an
    instance since ``since``: the moment to inject a fault (not a fixed pause)."""
    stream = Topology().events_stream

    async def ready() -> bool:
        if not (progress.writes and progress.writes[-1] > since):
            return False
        for name in SERVICES:
            try:
                info = await js.consumer_info(stream, name)
            except Exception:
                return False  # not created yet, or the cluster is busy electing
            if not info.num_waiting:
                return False
        return True

    await wait_for(ready, timeout=90, interval=0.2, message="the services and engines to work")


async def planned_states(
    client: SagaClient, planned: Sequence[Planned]
) -> dict[tuple[str, str], InstanceState]:
    """The state of each planned saga that has one, by (saga, id): read by key from the
    instances bucket (the truth; the index may miss what a killed engine did not index)."""
    states = await asyncio.gather(*(client.get(p.saga_id, p.saga) for p in planned))
    return {(p.saga, p.saga_id): s for p, s in zip(planned, states, strict=True) if s is not None}


async def wait_all_ended(
    nc: Client,
    planned: Sequence[Planned],
    timeout: float,
    stall: float = 30.0,
    seen: dict[tuple[str, str], str] | None = None,
) -> bool:
    """True once every planned saga has ended. False after ``timeout``, or once no saga has
    ended or been written for ``stall`` seconds (longer than any timeout in the chaos
    definitions):
    the verdict then names the stuck ones. ``seen`` gets the end status read for each
    (each is read until it has ended, not after): the verdict's later read that finds one
    running is then a stale read."""
    client = SagaClient(nc)
    wanted = {(p.saga, p.saga_id) for p in planned}
    seen_ended: dict[tuple[str, str], str] = {} if seen is None else seen
    last: tuple[tuple[int, datetime | None], float] = ((-1, None), time.monotonic())

    async def ended() -> bool:
        nonlocal last
        waiting = [p for p in planned if (p.saga, p.saga_id) not in seen_ended]
        try:
            states = await planned_states(client, waiting)
        except Exception:
            return False  # the server is away for a moment, or no engine made the bucket yet
        seen_ended.update(
            (key, s.status.value) for key, s in states.items() if s.status.value in ENDED
        )
        done = len(seen_ended)
        # progress: a saga ended, or one still running was written (a slow one is not stuck)
        moved = max((s.updated_at for s in states.values()), default=None)
        if (done, moved) != last[0]:
            last = ((done, moved), time.monotonic())
        elif time.monotonic() - last[1] > stall:
            raise Stalled(f"{len(wanted) - done} sagas made no progress for {stall:.0f}s")
        return done == len(wanted)

    try:
        await wait_for(ended, timeout=timeout, interval=1.0, message=f"{len(wanted)} sagas to end")
    except (AssertionError, Stalled):
        return False
    return True


class Stalled(Exception):
    pass


# -- the verdict --------------------------------------------------------------------------------


@dataclass
class Figures:
    """What one chaos scenario did and found; printed at the end of the run."""

    scenario: str
    sagas: int = 0
    kills: int = 0
    restarts: int = 0
    recoveries: list[float] = field(default_factory=list)
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    violations: int = 0
    mismatches: int = 0
    """Sagas that ended other than planned, with no timeout to explain it: a failure."""
    timed_out: int = 0
    """Sagas that ended other than planned after an unplanned timeout (a participant slowed
    by the fault lost the race against its step timeout): allowed, and counted."""
    notes: str = ""

    def line(self) -> str:
        rec = (
            f"recover p50 {statistics.median(self.recoveries):.1f}s max {max(self.recoveries):.1f}s"
            if self.recoveries
            else "recover -"
        )
        states = " ".join(f"{k}={v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.scenario:<18} sagas {self.sagas:>5}  kills {self.kills:>3}  restarts "
            f"{self.restarts:>3}  {rec:<30} {self.seconds:>6.0f}s  [{states}]  violations "
            f"{self.violations}  unexpected outcomes {self.mismatches}"
            + (f" (+{self.timed_out} after an unplanned timeout)" if self.timed_out else "")
            + (f"  ({self.notes})" if self.notes else "")
        )


async def verdict(
    nc: Client,
    planned: Sequence[Planned],
    figures: Figures,
    log_dir: Path,
    seen_ended: dict[tuple[str, str], str] | None = None,
) -> tuple[Report, list[str]]:
    """Invariants over everything recorded, and each saga's outcome against its plan;
    a saga still running is explained in ``verdict.json`` (:mod:`tests.chaos.diagnose`),
    ``seen_ended``: what :func:`wait_all_ended` read ended."""
    definitions = chaos_definitions()
    expected = [(p.saga, p.saga_id) for p in planned]
    report = await check_live(nc.jetstream(timeout=10), definitions, expected)
    states = await planned_states(SagaClient(nc), planned)
    mismatches: list[str] = []
    timed_out: list[str] = []
    for p in planned:
        state = states.get((p.saga, p.saga_id))
        got = state.status.value if state else "missing"
        if got != p.expect:
            reason = state.failure_reason if state else ""
            line = f"{p.saga}/{p.saga_id}: {p.why}: expected {p.expect}, got {got} ({reason})"
            planned_timeout = "timeout" in p.payload.get("simulate", {}).values()
            unplanned_timeout = not planned_timeout and state is not None and timed_out_in(state)
            (timed_out if unplanned_timeout else mismatches).append(line)
    figures.sagas = report.sagas
    figures.statuses = report.statuses
    figures.violations = len(report.violations)
    figures.mismatches = len(mismatches)
    figures.timed_out = len(timed_out)
    unfinished = [s for s in states.values() if s.status.value not in ENDED]
    explained = {}
    for s in unfinished[:10]:
        key = (s.saga_name, s.saga_id)
        found = await diagnose.explain(
            nc, s.saga_name, s.saga_id, log_dir, (seen_ended or {}).get(key)
        )
        explained[f"{s.saga_name}/{s.saga_id}"] = found
        mismatches = [
            f"{m}\n    {diagnose.summary(found)}"
            if m.startswith(f"{s.saga_name}/{s.saga_id}:")
            else m
            for m in mismatches
        ]
    (log_dir / "verdict.json").write_text(
        json.dumps(
            {
                "figures": figures.line(),
                "violations": [str(v) for v in report.violations],
                "mismatches": mismatches,
                "ended_otherwise_after_an_unplanned_timeout": timed_out,
                "unfinished": explained,
            },
            indent=2,
            default=str,
        )
    )
    return report, mismatches


def timed_out_in(state: InstanceState) -> bool:
    """A step or an undo timed out: under a fault a slow participant may legitimately lose
    the race against its timeout, and the saga then ends another way, by the rules."""
    return any(
        h.event in ("step.timed-out", "saga.deadline-exceeded") or "timed out" in (h.detail or "")
        for h in state.history
    )


def assert_clean(report: Report, mismatches: list[str]) -> None:
    problems = [str(v) for v in report.violations][:20] + mismatches[:20]
    assert not report.violations, "\n".join([report.summary(), *problems])
    assert not mismatches, "\n".join([report.summary(), *problems])


@contextlib.asynccontextmanager
async def running(fleet: Fleet) -> Any:
    try:
        yield fleet
    finally:
        await asyncio.to_thread(fleet.stop)
