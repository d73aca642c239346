"""CPU of the engine's transitions alone: ``Applier.apply_batch`` with its I/O stubbed.

    python bench/transition.py [--sagas N] [--batch B] [--rounds R] [--json]

Runs the bench saga (``bench/definitions/bench-order.yaml``, completed: a trigger and three
successes, as ``bench/sagas.py`` drives it) through the engine's own ``Applier``, with its
real ``CommandSender``, ``BrokerTimers``, ``IndexWriter``, ``Observer`` and ``SpanMarks``
(telemetry as the bench's engine has it: the admin endpoint's metrics, SDK disabled), in
fetched batches of ``B`` events of different instances, each turn's events parsed before the
clock starts. The connection is a stub: a publish is counted and its ack comes back on the
next loop iteration; the store's revision-checked writes succeed at once (their encoding is
not timed: ``saga/store``'s). What is timed (thread CPU) is ``apply_batch``: decide, the
record and outbox built, cache, observer, index writes, commands, timers, status event,
their ack futures, the waits; with ``--kv`` the real ``KvInstanceStore``'s revision-checked
writes too (the record's encoding included). Prints µs per saga, the median of ``--rounds`` (range). The
collector is tuned as the engine tunes it (``saga.heap``). Compare checkouts by running it
with each on ``PYTHONPATH``, alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("OTEL_SDK_DISABLED", "true")  # as bench/sagas.py runs the engine

from nats.aio.client import Client
from nats.js.kv import KeyValue

from bench.measure import order
from saga import jsonwire
from saga.definition.catalog import Catalog
from saga.definition.loader import load_definition
from saga.engine.apply import Applier, Received
from saga.engine.cache import InstanceCache
from saga.engine.effects import CommandSender
from saga.engine.intake import Intake, Work
from saga.engine.observe import Observer
from saga.heap import settle_after_start
from saga.index.writer import IndexWriter
from saga.nats.timers import BrokerTimers
from saga.store import InstanceStore
from saga.store.kv import KvInstanceStore
from saga.telemetry.recovery import SpanMarks
from saga.telemetry.setup import telemetry_from_env

DEFINITION = Path(__file__).resolve().parent / "definitions" / "bench-order.yaml"
STORED = b'{"stream":"S","seq":1}'
REPLIES: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("bench.inventory.reserved", lambda sid: {"reservation_id": f"res-{sid}"}),
    ("bench.payment.charged", lambda sid: {"payment_id": f"pay-{sid}", "amount": 42.5}),
    ("bench.shipping.scheduled", lambda sid: {"tracking_id": f"trk-{sid}"}),
]


class _Ack:
    __slots__ = ("data", "headers", "subject")

    def __init__(self, subject: str) -> None:
        self.subject, self.data, self.headers = subject, STORED, None


class _Pending(list[bytes]):
    """nats-py's pending buffer as :mod:`saga.nats.wire` fills it: each command appended is
    a publish, whose reply subject gets its ack on the next loop iteration."""

    def __init__(self, connection: StubConnection) -> None:
        super().__init__()
        self.connection = connection

    def append(self, command: bytes, /) -> None:
        self.connection.published += 1
        line = command[: command.index(b"\r\n")].split(b" ")
        if len(line) >= 4 and line[2]:  # PUB/HPUB <subject> <reply> ...
            self.connection.reply(line[2].decode())


class StubConnection:
    """What the engine's publishers use of a connection (nats-py's public calls and the
    attributes :mod:`saga.nats.wire` reads); every publish is stored at once."""

    _status = Client.CONNECTED
    _max_payload = 1 << 20
    _max_pending_size = 0
    _flush_queue = None
    _ps = None  # no nats-py parser: saga.nats.wire.read_cheaply leaves it alone

    def __init__(self) -> None:
        self.published = 0
        self.stats = {"out_msgs": 0, "out_bytes": 0}
        self._pending = _Pending(self)
        self._pending_data_size = 0
        self._replies: list[str] = []
        self._on_ack: Callable[[Any], Any] | None = None

    def new_inbox(self) -> str:
        return "_INBOX.bench"

    async def subscribe(self, subject: str, future: asyncio.Future[Any]) -> None:
        self._on_ack = future.set_result  # saga.nats.wire.subscribe_inline's handler

    def jetstream(self) -> None:
        return None

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.published += 1
        if reply:
            self.reply(reply)

    def reply(self, subject: str) -> None:
        if not self._replies:
            asyncio.get_running_loop().call_soon(self._ack_all)
        self._replies.append(subject)

    def _ack_all(self) -> None:
        replies, self._replies = self._replies, []
        assert self._on_ack is not None
        for reply in replies:
            self._on_ack(_Ack(reply))


class StubStore:
    """Revision-checked writes that all succeed (``write_all`` is all the batch path uses)."""

    def __init__(self) -> None:
        self.revision = 0

    async def write_all(self, writes: Sequence[tuple[str, Any, int | None]]) -> list[int]:
        first = self.revision + 1
        self.revision += len(writes)
        return list(range(first, self.revision + 1))


def turn(intake: Intake, ids: list[str], n: int, sequence: int) -> list[tuple[str, Work, Received]]:
    """The ``n``-th event (0: the trigger) of each instance in ``ids``, as fetched."""
    items = []
    for i, saga_id in enumerate(ids):
        if n == 0:
            subject, data, headers = "bench.orders.placed", order(saga_id, False), {}
        else:
            subject, payload = REPLIES[n - 1]
            data = jsonwire.dumps(payload(saga_id))
            headers = {"Saga-Id": saga_id, "Saga-Name": "bench-order", "Saga-Attempt": "1"}
        work = intake.parse(subject, data, headers, "SAGA_EVENTS", sequence + i)
        assert isinstance(work, Work), work
        origin = f"SAGA_EVENTS:{sequence + i}"
        items.append((f"bench-order.{saga_id}", work, Received(subject, headers, 0, origin)))
    return items


async def timed(sagas: int, batch: int, rounds: int, kv: bool = False) -> list[float]:
    definition = load_definition(DEFINITION)
    catalog = Catalog([definition])
    intake = Intake(catalog)
    telemetry = telemetry_from_env("bench-transition", prometheus=True)
    settle_after_start()
    figures: list[float] = []
    sequence = 0
    for round_ in range(rounds + 1):  # the first warms up
        nc = StubConnection()
        connection = cast(Client, nc)
        timers = BrokerTimers(connection, "SAGA_TIMERS")
        timers.replace_to_cancel = True
        sender = CommandSender(connection, timers, telemetry)
        store = KvInstanceStore(connection, "SAGA", cast(KeyValue, None)) if kv else StubStore()
        applier = Applier(
            cast(InstanceStore, store),
            InstanceCache(sagas),
            catalog,
            lambda: datetime.now(UTC),
            sender.send,
            index=IndexWriter(connection, 3600.0),
            telemetry=telemetry,
            observer=Observer(telemetry),
            marks=SpanMarks(telemetry),
        )
        cpu = 0.0
        for first in range(0, sagas, batch):
            ids = [f"o-{round_}-{i:06d}" for i in range(first, min(first + batch, sagas))]
            for n in range(1 + len(REPLIES)):
                items = turn(intake, ids, n, sequence)
                sequence += len(items)
                started = time.thread_time()
                results = await applier.apply_batch(items)
                cpu += time.thread_time() - started
                assert all(r is not None and getattr(r, "note", 0) is None for r in results)
        if round_:
            figures.append(cpu / sagas * 1e6)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sagas", type=int, default=2000, help="sagas per round")
    parser.add_argument("--batch", type=int, default=100, help="events per fetched batch")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--kv", action="store_true", help="the real KvInstanceStore's writes (encoding included)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    figures = asyncio.run(timed(args.sagas, args.batch, args.rounds, args.kv))
    median = round(statistics.median(figures), 1)
    if args.json:
        rounded = [round(f, 1) for f in figures]
        print(json.dumps({"us_per_saga": median, "rounds": rounded}, allow_nan=False))
        return
    print(f"apply_batch {median:8.1f} µs/saga ({min(figures):.1f}-{max(figures):.1f})")


if __name__ == "__main__":
    main()
