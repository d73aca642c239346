"""Driving sagas and timing them: trigger publish -> completion event, K at a time.

Completion is seen on a core NATS subscription: the engine's lifecycle events
``saga.status.bench-order.<status>``, and the raw baseline's final event. Both
carry the saga id in the ``Saga-Id`` header.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from bench import raw
from bench.procs import BenchError

SAGA = "bench-order"
OBSERVED_SAGA = "bench-observed"
ENGINE_TRIGGER = "bench.orders.placed"
OBSERVED_TRIGGER = "bench.observed.placed"
STATUS_PREFIX = f"saga.status.{SAGA}"
ID_HEADER = "Saga-Id"
NAME_HEADER = "Saga-Name"
T = TypeVar("T")


@dataclass(frozen=True)
class Flow:
    name: str
    trigger: str
    id_header: bool
    """Whether the trigger carries ``Saga-Id`` (the raw services copy it onto every event;
    the engine takes the id from the payload's ``order_id``, as a producer would send it)."""
    saga: str | None = None
    """The saga named in a ``Saga-Name`` header, for services that react to the trigger
    itself (observed steps); None: no such header."""


RAW = Flow("raw", raw.TRIGGER, id_header=True)
ENGINE = Flow("engine", ENGINE_TRIGGER, id_header=False)
OBSERVED = Flow("observed", OBSERVED_TRIGGER, id_header=True, saga=OBSERVED_SAGA)
"""Observed steps (pure choreography): the first service reacts to the trigger, so it
carries the saga headers a front end sends (``SagaClient.start`` does the same)."""


def order_payload(saga_id: str, fail: bool) -> dict[str, Any]:
    """A trigger's payload, the same for both flows (and for ``bench/core.py``'s sagas)."""
    return {
        "order_id": saga_id,
        "customer_id": "cust-0042",
        "items": [{"sku": "SKU-1", "qty": 2}, {"sku": "SKU-7", "qty": 1}],
        "total": 42.5,
        "currency": "EUR",
        "address": {"street": "1 Loopback Lane", "city": "Localhost", "country": "NL"},
        "fail": fail,
    }


def order(saga_id: str, fail: bool) -> bytes:
    """:func:`order_payload` as published: about 230 bytes of JSON."""
    return json.dumps(order_payload(saga_id, fail)).encode()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def tenths(started: float, done_at: list[float]) -> list[float]:
    """Completion rate in each tenth of a run (empty for runs under 100 sagas)."""
    if len(done_at) < 100:
        return []
    rates, previous, size = [], started, len(done_at) / 10
    for i in range(1, 11):
        index = round(i * size) - 1
        end = done_at[index]
        count = index + 1 - round((i - 1) * size)
        rates.append(round(count / (end - previous), 1) if end > previous else 0.0)
        previous = end
    return rates


@dataclass
class Batch:
    """Sagas started together; done when every one has reported an outcome."""

    size: int
    expected: str
    """``completed`` or ``compensated``; anything else counts as unexpected."""
    window: asyncio.Semaphore | None = None
    latencies: list[float] = field(default_factory=list)
    unexpected: dict[str, int] = field(default_factory=dict)
    done_at: list[float] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def done(self, status: str, latency: float, now: float) -> None:
        self.latencies.append(latency)
        if status != self.expected:
            self.unexpected[status] = self.unexpected.get(status, 0) + 1
        self.done_at.append(now)
        if self.window is not None:
            self.window.release()
        if len(self.latencies) >= self.size:
            self.finished.set()


@dataclass
class RunStats:
    flow: str
    sagas: int
    seconds: float
    p50_ms: float
    p99_ms: float
    unexpected: dict[str, int]
    cpu: dict[str, float]
    """CPU seconds used during the run, by role (server, engine, participants, raw, driver)."""
    tenths: list[float] = field(default_factory=list)
    """Sagas/s over each tenth of the run (by completions): shows drift within a long run."""

    @property
    def per_s(self) -> float:
        return self.sagas / self.seconds if self.seconds > 0 else 0.0

    def cores(self) -> dict[str, float]:
        """Average cores busy during the run, by role."""
        return {role: s / self.seconds for role, s in self.cpu.items()} if self.seconds else {}

    def cpu_us_per_saga(self) -> dict[str, float]:
        return {role: round(s / self.sagas * 1e6) for role, s in self.cpu.items()}


class Driver:
    """Publishes triggers and matches outcomes; every wait is bounded by ``stall`` seconds
    without any saga completing, and checks the children on the way."""

    def __init__(
        self,
        nc: Client,
        stall: float,
        check: Callable[[], None],
        cpu: Callable[[], dict[str, float]],
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.stall = stall
        self.check = check
        self.cpu = cpu
        self.pending: dict[str, tuple[float, Batch]] = {}
        self.progress = time.monotonic()
        self.publish_errors: list[BaseException] = []

    async def start(self) -> None:
        await self.nc.subscribe(f"{STATUS_PREFIX}.*", cb=self._outcome)
        await self.nc.subscribe(f"saga.status.{OBSERVED_SAGA}.*", cb=self._outcome)
        await self.nc.subscribe(raw.FINAL, cb=self._outcome)

    async def _outcome(self, msg: Msg) -> None:
        now = time.perf_counter()
        entry = self.pending.pop((msg.headers or {}).get(ID_HEADER, ""), None)
        if entry is None:
            return  # not ours, or a second copy of an outcome
        started, batch = entry
        status = "completed" if msg.subject == raw.FINAL else msg.subject.rsplit(".", 1)[-1]
        self.progress = time.monotonic()
        batch.done(status, now - started, now)

    def _published(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.publish_errors.append(future.exception())  # type: ignore[arg-type]

    async def _trigger(self, flow: Flow, saga_id: str, batch: Batch, fail: bool) -> None:
        headers = {ID_HEADER: saga_id} if flow.id_header else None
        if headers is not None and flow.saga is not None:
            headers[NAME_HEADER] = flow.saga
        self.pending[saga_id] = (time.perf_counter(), batch)
        ack = await self.js.publish_async(flow.trigger, order(saga_id, fail), headers=headers)
        ack.add_done_callback(self._published)

    async def _bounded(self, awaitable: Awaitable[T], what: str) -> T:
        task = asyncio.ensure_future(awaitable)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=0.5)
                if done:
                    return task.result()
                self.check()
                if self.publish_errors:
                    raise BenchError(f"a trigger was not stored: {self.publish_errors[0]!r}")
                idle = time.monotonic() - self.progress
                if idle > self.stall:
                    raise BenchError(f"no saga completed for {idle:.0f}s while waiting for {what}")
        finally:
            task.cancel()

    async def run(
        self, flow: Flow, count: int, inflight: int, tag: str, fail: bool = False
    ) -> RunStats:
        """``count`` sagas with at most ``inflight`` unfinished at any time."""
        batch = Batch(count, "compensated" if fail else "completed", asyncio.Semaphore(inflight))
        assert batch.window is not None
        cpu_before = self.cpu()
        self.progress = time.monotonic()
        started = time.perf_counter()
        for i in range(count):
            await self._bounded(batch.window.acquire(), f"{flow.name} {tag}: a free slot")
            await self._trigger(flow, f"{tag}-{i:06d}", batch, fail)
        await self._bounded(batch.finished.wait(), f"{flow.name} {tag}: the last sagas")
        cpu_after = self.cpu()
        return RunStats(
            flow=flow.name,
            sagas=count,
            seconds=batch.done_at[-1] - started,
            p50_ms=percentile(batch.latencies, 0.50) * 1000,
            p99_ms=percentile(batch.latencies, 0.99) * 1000,
            unexpected=batch.unexpected,
            cpu={role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after},
            tenths=tenths(started, batch.done_at),
        )

    async def solo(self, flows: list[Flow], count: int, tag: str) -> dict[str, list[float]]:
        """``count`` sagas of each flow one at a time, alternating flows; latencies in ms."""
        latencies: dict[str, list[float]] = {f.name: [] for f in flows}
        for i in range(count):
            for flow in flows if i % 2 == 0 else list(reversed(flows)):
                batch = Batch(1, "completed")
                self.progress = time.monotonic()
                await self._trigger(flow, f"{tag}-{flow.name}-{i:06d}", batch, fail=False)
                await self._bounded(batch.finished.wait(), f"solo {flow.name} saga {i}")
                if batch.unexpected:
                    raise BenchError(f"solo {flow.name} saga {i} ended {batch.unexpected}")
                latencies[flow.name].append(batch.latencies[0] * 1000)
        return latencies
