"""What the engine publishes per transition is byte for byte what it was.

For the walks of ``test_core_golden.py`` (every feature of the DSL) and the bench saga's
scenarios, each changed transition's publishes are made by the engine's real senders,
``CommandSender`` (commands, native and fallback timers, status events, parked/reopened),
``IndexWriter`` (entries, tombstones, search markers) and ``KvInstanceStore.write_all`` (the
revision-checked record write), on a connection that keeps the ``PUB``/``HPUB`` commands
nats-py would write to the socket and acks each at once. ``tests/unit/data/sends_golden.json``
holds, per walk, the first 16 hex digits of the SHA-256 of every transition's commands. A
speed-up of the send path that changes one byte (a subject, a header, its order, a payload)
fails here.

The file was written by main at b547dd1 (before round 7's send levers); write it again only
for a change meant to alter the wire: ``PYTHONPATH=$PWD python tests/unit/test_sends_golden.py
--write``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

if __name__ == "__main__":  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nats.aio.client import Client
from nats.js.kv import KeyValue

from bench.core import SCENARIOS
from saga.core.announce import announced
from saga.core.state import InstanceState
from saga.core.wakeup import decide_slotted
from saga.definition.model import SagaDefinition
from saga.engine.effects import CommandSender
from saga.index.writer import IndexWriter
from saga.nats.timers import BrokerTimers
from saga.store.base import InstanceRecord
from saga.store.kv import KvInstanceStore
from tests.unit.test_core_golden import FEATURES, WALKS, definitions, walk

GOLDEN = Path(__file__).resolve().parent / "data" / "sends_golden.json"
STORED = b'{"stream":"S","seq":7}'
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
"""The saga's trace context on the native-timer pass (the other one runs untraced)."""


class _Ack:
    __slots__ = ("data", "headers", "subject")

    def __init__(self, subject: str) -> None:
        self.subject, self.data, self.headers = subject, STORED, None


class _Pending(list[bytes]):
    def __init__(self, connection: _Connection) -> None:
        super().__init__()
        self.connection = connection

    def append(self, command: bytes, /) -> None:
        super().append(command)
        self.connection.acked(command)


class _JetStream:
    """A fallback-mode timer is cancelled by a purge of its subject: kept, in order."""

    def __init__(self, other: list[bytes]) -> None:
        self.other = other

    async def purge_stream(self, stream: str, subject: str) -> None:
        self.other.append(f"PURGE {stream} {subject}\r\n".encode())


class _Connection:
    """The attributes and calls of nats-py's client the engine's senders use; keeps what
    would be written to the socket and acks each publish at once (``Client.publish`` is
    what the senders must not fall back to here: it fails the test)."""

    _status = Client.CONNECTED
    _max_payload = 1 << 20
    _max_pending_size = 0
    _flush_queue = None
    _ps = None  # no nats-py parser: saga.nats.wire.read_cheaply leaves it alone

    def __init__(self) -> None:
        self.stats = {"out_msgs": 0, "out_bytes": 0}
        self._pending = _Pending(self)
        self._pending_data_size = 0
        self._handler: Callable[[Any], Any] | None = None
        self.other: list[bytes] = []
        """What did not go through the pending buffer: purges, nats-py's own publishes."""
        self._js = _JetStream(self.other)

    def new_inbox(self) -> str:
        return "_INBOX.golden"

    def jetstream(self) -> _JetStream:
        return self._js

    async def subscribe(self, subject: str, future: asyncio.Future[Any]) -> None:
        self._handler = future.set_result

    async def publish(self, subject: str, payload: bytes = b"") -> None:
        self.other.append(f"PUBLISH {subject} {payload!r}\r\n".encode())

    def acked(self, command: bytes) -> None:
        line = command[: command.index(b"\r\n")].split(b" ")
        assert self._handler is not None
        loop = asyncio.get_running_loop()
        loop.call_soon(self._handler, _Ack(line[2].decode()))


Walk = list[tuple[Any, InstanceState | None, Any]]


async def _sent(walks: dict[str, Walk], connection_class: type[_Connection]) -> dict[str, Any]:
    found: dict[str, list[str]] = {}
    for name, transitions in walks.items():
        hashes = []
        for native in (True, False):
            nc = connection_class()
            connection = cast(Client, nc)
            timers = BrokerTimers(connection, "SAGA_TIMERS", native=native)
            timers.replace_to_cancel = True
            sender = CommandSender(connection, timers)
            index = IndexWriter(connection, 60.0 if native else 0.0)
            store = KvInstanceStore(
                connection, "SAGA", cast(KeyValue, None), finished_ttl=30.0 if native else 0.0
            )
            trace = TRACE if native else None
            for revision, (definition, before, decision) in enumerate(transitions):
                state = decision.state
                key = f"{state.saga_name}.{state.saga_id}"
                record = InstanceRecord(state=state, origin=f"S:{revision}")
                (written,) = await store.write_all(
                    [(key, record, None if before is None else revision)]
                )
                assert written == 7, written
                group = await index.send(definition, before, state, repair=revision % 5 == 4)
                acks = await sender.send(state, decision.commands, trace)
                if acks is not None:
                    await acks
                await index.settled(group)
                sent = b"".join(nc._pending + nc.other)
                nc._pending.clear()
                nc.other.clear()
                hashes.append(hashlib.sha256(sent).hexdigest()[:16])
        found[name] = hashes
    return found


def _walks() -> dict[str, Walk]:
    """Per walk, its changed transitions: (definition, state before, decision)."""
    found: dict[str, Walk] = {}
    bench = definitions()["bench-order"]
    for name, make in SCENARIOS.items():
        before: InstanceState | None = None
        steps = []
        for now, event in make(f"o-{name}"):
            decision = announced(decide_slotted(bench, before, event, now), bench.status_events)
            if decision.changed and decision.state is not None:
                steps.append((bench, before, decision))
                before = decision.state
        found[f"bench:{name}"] = steps
    searched = {**FEATURES, "name": "golden-search", "search": {"v": "trigger.v", "w": "trigger.w"}}
    walked = {**definitions(), "features-search": SagaDefinition.model_validate(searched)}
    for name, definition in walked.items():
        for seed in range(WALKS):
            steps, before = [], None
            for decision in walk(definition, seed):
                if decision.changed and decision.state is not None:
                    if before is not None and before.saga_id != decision.state.saga_id:
                        before = None  # the walk's next instance
                    steps.append((definition, before, decision))
                    before = decision.state
            found[f"walk:{name}:{seed}"] = steps
    return found


def sends(connection_class: type[_Connection] = _Connection) -> dict[str, Any]:
    return asyncio.run(_sent(_walks(), connection_class))


def test_every_publish_of_every_transition_is_byte_for_byte_the_golden_one() -> None:
    golden = json.loads(GOLDEN.read_text())
    now = sends()
    assert now.keys() == golden.keys()
    for name, hashes in golden.items():
        assert len(hashes) == len(now[name]), name
        differs = [i for i, (a, b) in enumerate(zip(hashes, now[name], strict=True)) if a != b]
        assert not differs, f"{name}: transition {differs[0]} is published differently"


def test_the_walks_publish_every_kind_of_message() -> None:
    """The golden walks reach commands, both timer modes, cancels, status events, parked
    and reopened announcements, index entries, tombstones and search markers."""
    subjects: set[str] = set()

    class Seen(_Connection):
        def acked(self, command: bytes) -> None:
            subjects.add(command.split(b" ", 2)[1].decode().split(".", 2)[1])
            super().acked(command)

    sends(Seen)
    assert {"timer", "index", "search", "status", "SAGA"} <= subjects, subjects


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(json.dumps(sends(), indent=0, sort_keys=True) + "\n")
