"""The engine's per-message loop (:class:`saga.engine.apply.Applier`) without a server.

Each test drives one of its subtle branches on the in-memory store: a trigger created
without a read, a no-op decided on a cached copy read again, an instance kept on its own
version, an outbox sent again after a crash, and a loop of lost races.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from saga.core import Command, InstanceState, PublishEvent, SagaTriggered
from saga.core.commands import command_to_json
from saga.definition import Catalog, parse_definition
from saga.engine.apply import Applier, Received
from saga.engine.cache import InstanceCache
from saga.engine.intake import Intake, Work
from saga.errors import RevisionConflict
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import ACK, Ack, Nak, Term, Verdict
from saga.store import InstanceRecord, MemoryInstanceStore, Stored
from saga.testing import SagaHarness, reply

V1 = parse_definition(
    """
name: shop
version: 1
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve}
    success: stock.reserved
  - name: ship
    publish: {event: ship.go}
    success: ship.done
"""
)
V2 = parse_definition(
    """
name: shop
version: 2
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve}
    success: [stock.reserved, stock.held]
  - name: ship
    publish: {event: ship.go}
    success: ship.done
"""
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
KEY = "shop.o-1"


class CountingStore(MemoryInstanceStore):
    """The in-memory store, counting reads and writes; ``conflicts`` writes lose a race."""

    def __init__(self, conflicts: int = 0) -> None:
        super().__init__()
        self.loads = self.latest = self.creates = self.updates = 0
        self.conflicts = conflicts

    async def load(self, key: str) -> Stored | None:
        self.loads += 1
        return await super().load(key)

    async def load_latest(self, key: str) -> Stored | None:
        self.latest += 1
        return await MemoryInstanceStore.load(self, key)

    async def create(self, key: str, record: InstanceRecord) -> int:
        self.creates += 1
        self._lose()
        return await super().create(key, record)

    async def update(self, key: str, record: InstanceRecord, revision: int) -> int:
        self.updates += 1
        self._lose()
        return await super().update(key, record, revision)

    def _lose(self) -> None:
        if self.conflicts:
            self.conflicts -= 1
            raise RevisionConflict("another replica wrote first")


class Sent:
    """What the applier asked to carry out, in order."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def __call__(
        self, state: InstanceState, commands: Sequence[Command], _: Mapping[str, str] | None
    ) -> None:
        self.commands.extend(commands)

    def subjects(self) -> list[str]:
        return [c.subject for c in self.commands if isinstance(c, PublishEvent)]


def applier(
    store: CountingStore, sent: Sent, catalog: Catalog | None = None, cache_size: int = 100
) -> Applier:
    return Applier(
        store,
        InstanceCache(cache_size),
        catalog or Catalog([V2]),
        lambda: T0,
        sent,
        max_conflicts=4,
    )


def work(subject: str, payload: dict[str, object], catalog: Catalog | None = None) -> Work:
    parsed = Intake(catalog or Catalog([V2])).parse(
        subject, _json(payload), {"Saga-Id": "o-1"}, "SAGA_EVENTS", 1
    )
    assert isinstance(parsed, Work)
    return parsed


def _json(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode()


def received(origin: str, subject: str = "shop.ordered") -> Received:
    return Received(subject, {}, 0, origin)


async def started(store: CountingStore, definition: str = "v2") -> InstanceState:
    """An instance of ``shop`` waiting for its ``reserve`` step, written straight to the store."""
    catalog = Catalog([V1, V2]) if definition == "v1" else Catalog([V2])
    first = Applier(store, InstanceCache(10), catalog, lambda: T0, Sent(), max_conflicts=4)
    trigger = Work(V1 if definition == "v1" else V2, "o-1", SagaTriggered("o-1", {"id": "o-1"}))
    assert await first.apply(KEY, trigger, received("SAGA_EVENTS:1")) == ACK
    stored = await store.load(KEY)
    assert stored is not None
    return stored.record.state


async def test_a_new_trigger_is_created_without_a_read() -> None:
    store, sent = CountingStore(), Sent()
    verdict = await applier(store, sent).apply(
        KEY, work("shop.ordered", {"id": "o-1"}), received("SAGA_EVENTS:1")
    )
    assert verdict == ACK
    assert (store.loads, store.creates) == (0, 1)
    assert sent.subjects() == ["stock.reserve"]


async def test_a_trigger_of_an_existing_instance_reads_it_after_the_failed_create() -> None:
    store = CountingStore()
    await started(store)
    store.loads = store.creates = 0
    sent = Sent()
    verdict = await applier(store, sent).apply(
        KEY, work("shop.ordered", {"id": "o-1"}), received("SAGA_EVENTS:2")
    )
    assert isinstance(verdict, Ack)
    assert verdict.note is not None  # a second trigger changes nothing
    assert (store.creates, store.loads, store.latest, store.updates) == (1, 1, 1, 0)
    assert sent.commands == []


async def test_a_no_op_on_a_cached_copy_is_decided_again_on_what_the_store_holds() -> None:
    store, sent = CountingStore(), Sent()
    loop = applier(store, sent)
    assert await loop.apply(KEY, work("shop.ordered", {"id": "o-1"}), received("S:1")) == ACK
    # Another replica moves the instance on: ``reserve`` succeeded, ``ship`` runs now.
    other = applier(store, Sent(), cache_size=0)
    assert await other.apply(KEY, work("stock.reserved", {}), received("S:2")) == ACK
    # Decided on the cached copy (still at ``reserve``), ship.done would change nothing.
    sent.commands.clear()
    store.loads = 0
    verdict = await loop.apply(KEY, work("ship.done", {}), received("S:3", "ship.done"))
    assert verdict == ACK
    assert (store.loads, store.latest) == (0, 1)  # read through the leader at once
    stored = await store.load(KEY)
    assert stored is not None
    assert stored.record.state.status.value == "completed"


async def test_a_no_op_decided_on_what_the_store_holds_is_believed() -> None:
    store = CountingStore()
    await started(store)
    sent = Sent()
    verdict = await applier(store, sent).apply(
        KEY, work("ship.done", {}), received("S:2", "ship.done")
    )
    assert isinstance(verdict, Ack)
    assert verdict.note
    assert store.updates == 0


class LaggingStore(CountingStore):
    """A bucket whose fast reads come from a replica behind the last writes (a node brought
    back answers direct gets once 90% caught up): ``load`` returns what was stored
    ``behind`` writes ago (None: not there yet); ``load_latest`` the leader's copy."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[Stored] = []
        self.behind = 0

    async def load(self, key: str) -> Stored | None:
        self.loads += 1
        if self.behind >= len(self.history):
            return None
        return self.history[-1 - self.behind]

    async def create(self, key: str, record: InstanceRecord) -> int:
        revision = await super().create(key, record)
        self.history.append(Stored(record, revision))
        return revision

    async def update(self, key: str, record: InstanceRecord, revision: int) -> int:
        written = await super().update(key, record, revision)
        self.history.append(Stored(record, written))
        return written


async def test_an_event_is_not_dead_lettered_on_a_replica_without_the_instance_yet() -> None:
    """The chaos run's stall: a replica still catching up answered "no such key" for an
    instance written while it was down; the reply was dead-lettered as for no instance,
    and the saga waited for ever."""
    store = LaggingStore()
    await started(store)
    store.behind = 1  # the replica has not got the instance yet
    sent = Sent()
    verdict = await applier(store, sent).apply(
        KEY, work("stock.reserved", {}), received("S:2", "stock.reserved")
    )
    assert verdict == ACK
    assert sent.subjects() == ["ship.go"]
    assert store.latest == 1


async def test_an_event_is_not_dropped_as_a_no_op_on_a_replica_behind() -> None:
    """Decided on the lagging copy (still at ``reserve``), ship.done would change nothing
    and be acked: the saga would wait for ever on a reply already consumed."""
    store = LaggingStore()
    await started(store)
    assert (
        await applier(store, Sent()).apply(KEY, work("stock.reserved", {}), received("S:2")) == ACK
    )
    store.behind = 1  # the replica has the instance, not the step that moved it on
    verdict = await applier(store, Sent()).apply(
        KEY, work("ship.done", {}), received("S:3", "ship.done")
    )
    assert verdict == ACK
    stored = await store.load_latest(KEY)
    assert stored is not None
    assert stored.record.state.status.value == "completed"


async def test_an_event_for_no_instance_is_a_dead_letter() -> None:
    store, sent = CountingStore(), Sent()
    verdict = await applier(store, sent).apply(
        KEY, work("stock.reserved", {}), received("S:1", "stock.reserved")
    )
    assert verdict == Term(DeadLetterCode.UNKNOWN_INSTANCE, "no instance 'o-1' of saga 'shop'")


async def test_an_instance_is_decided_on_the_version_it_started_on() -> None:
    store = CountingStore()
    assert (await started(store, "v1")).saga_version == 1
    sent = Sent()
    both = Catalog([V1, V2])
    event = work("stock.reserved", {}, both)
    assert event.definition.version == 2  # the newest version that knows the subject
    verdict = await applier(store, sent, both).apply(KEY, event, received("S:2"))
    assert verdict == ACK
    stored = await store.load(KEY)
    assert stored is not None
    assert stored.record.state.saga_version == 1
    assert sent.subjects() == ["ship.go"]


async def test_an_event_its_version_does_not_know_is_acked_with_a_note() -> None:
    store = CountingStore()
    await started(store, "v1")
    both = Catalog([V1, V2])
    verdict = await applier(store, Sent(), both).apply(
        KEY, work("stock.held", {}, both), received("S:2", "stock.held")
    )
    assert verdict == Ack("stock.held means nothing in version 1")
    assert store.updates == 0


async def test_an_instance_on_a_version_not_loaded_is_a_dead_letter() -> None:
    store = CountingStore()
    await started(store, "v1")
    verdict = await applier(store, Sent()).apply(KEY, work("stock.reserved", {}), received("S:2"))
    assert isinstance(verdict, Term)
    assert verdict.code is DeadLetterCode.ENGINE_ERROR
    assert "version 1" in verdict.reason


async def test_a_message_redelivered_after_its_write_sends_the_outbox_again() -> None:
    store = CountingStore()
    await started(store)
    stored = await store.load(KEY)
    assert stored is not None
    outbox = [PublishEvent("ship.go", {"id": "o-1"}, msg_id="shop:o-1:ship")]
    crashed = stored.record.model_copy(
        update={"origin": "S:7", "outbox": [command_to_json(c) for c in outbox]}
    )
    await store.update(KEY, crashed, stored.revision)
    store.updates, sent = 0, Sent()
    verdict = await applier(store, sent).apply(KEY, work("stock.reserved", {}), received("S:7"))
    assert verdict == ACK
    # not decided again: the stored transition is sent, marked as sent again (a participant
    # then reads its reply ledger before running anything)
    assert sent.commands == [
        PublishEvent("ship.go", {"id": "o-1"}, {"Saga-Replay": "1"}, msg_id="shop:o-1:ship")
    ]
    assert store.updates == 0


async def test_too_many_lost_races_ask_for_a_redelivery() -> None:
    store = CountingStore()
    await started(store)
    store.conflicts = 10
    verdict = await applier(store, Sent()).apply(KEY, work("stock.reserved", {}), received("S:2"))
    assert verdict == Nak("too many revision conflicts")
    assert store.updates == 4


async def test_a_lost_race_is_decided_again_on_the_new_record() -> None:
    store = CountingStore()
    await started(store)
    store.conflicts = 1
    sent = Sent()
    verdict = await applier(store, sent).apply(KEY, work("stock.reserved", {}), received("S:2"))
    assert verdict == ACK
    assert store.updates == 2
    assert sent.subjects() == ["ship.go"]


async def test_the_in_memory_harness_runs_this_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    applied: list[str] = []
    apply = Applier.apply

    async def spy(self: Applier, key: str, work: Work, received: Received) -> Verdict:
        applied.append(type(work.event).__name__)
        return await apply(self, key, work, received)

    monkeypatch.setattr(Applier, "apply", spy)
    harness = SagaHarness(V2).on("stock.reserve", reply("stock.reserved"))
    result = await harness.on("ship.go", reply("ship.done")).run({"id": "o-1"})

    assert result.status == "completed"
    assert applied == ["SagaTriggered", "StepSucceeded", "StepSucceeded"]
