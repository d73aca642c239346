"""A fetched batch applied together (:meth:`saga.engine.apply.Applier.apply_batch`).

It writes what one message at a time writes, and leaves to :meth:`Applier.apply` what it
cannot take to the end without a read: an instance not cached, a no-op, a lost race.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from saga.core import Command, InstanceState
from saga.definition import Catalog
from saga.engine.apply import Applier, Received
from saga.engine.cache import InstanceCache
from saga.engine.intake import Intake, Work
from saga.nats.settle import ACK, Ack
from tests.unit.test_apply import T0, V2, CountingStore, Sent, _json, applier

INTAKE = Intake(Catalog([V2]))


def event(subject: str, saga_id: str, n: int) -> tuple[str, Work, Received]:
    """The ``n``-th message of the stream: a trigger or a reply of instance ``saga_id``."""
    payload: dict[str, object] = {"id": saga_id} if subject == "shop.ordered" else {}
    parsed = INTAKE.parse(subject, _json(payload), {"Saga-Id": saga_id}, "SAGA_EVENTS", n)
    assert isinstance(parsed, Work)
    return f"shop.{saga_id}", parsed, Received(subject, {}, 0, f"SAGA_EVENTS:{n}")


class Recorded(Sent):
    """Commands by instance."""

    def __init__(self) -> None:
        super().__init__()
        self.by_saga: dict[str, list[Command]] = {}

    async def __call__(
        self, state: InstanceState, commands: Sequence[Command], _: Mapping[str, str] | None
    ) -> None:
        self.by_saga.setdefault(state.saga_id, []).extend(commands)


async def test_a_batch_writes_and_sends_what_one_message_at_a_time_does() -> None:
    rounds = [
        [event("shop.ordered", f"o-{i}", i) for i in range(1, 4)],
        [event("stock.reserved", f"o-{i}", 10 + i) for i in range(1, 3)],
        [event("ship.done", "o-1", 20), event("stock.held", "o-3", 21)],
    ]
    batched, one_by_one = CountingStore(), CountingStore()
    sent_batched, sent_one = Recorded(), Recorded()
    loop = Applier(batched, InstanceCache(10), Catalog([V2]), lambda: T0, sent_batched)
    single = Applier(one_by_one, InstanceCache(10), Catalog([V2]), lambda: T0, sent_one)
    for items in rounds:
        assert await loop.apply_batch(items) == [ACK] * len(items)
        for item in items:
            assert await single.apply(*item) == ACK
    assert batched.loads == batched.latest == 0  # every event decided on the cached copy
    assert await batched.keys() == await one_by_one.keys()
    for key in await batched.keys():
        mine, theirs = await batched.load(key), await one_by_one.load(key)
        assert mine is not None
        assert theirs is not None
        assert mine.record.model_dump() == theirs.record.model_dump()
    assert sent_batched.by_saga == sent_one.by_saga
    assert sent_batched.by_saga["o-1"]  # something was sent


async def test_what_a_batch_cannot_end_without_a_read_is_left_to_apply() -> None:
    store, sent = CountingStore(), Sent()
    loop = applier(store, sent)
    assert await loop.apply_batch([event("shop.ordered", "o-1", 1)]) == [ACK]
    other = applier(store, Sent())  # another replica starts o-2: not in our cache
    assert await other.apply(*event("shop.ordered", "o-2", 2)) == ACK
    writes = store.creates + store.updates
    left = [event("shop.ordered", "o-1", 3), event("stock.reserved", "o-2", 4)]
    # a second trigger of o-1 is a no-op on the cached copy; o-2 has to be read
    assert await loop.apply_batch(left) == [None, None]
    assert store.creates + store.updates == writes
    assert (store.loads, store.latest) == (0, 0)
    no_op = await loop.apply(*left[0])
    assert isinstance(no_op, Ack)
    assert no_op.note
    assert await loop.apply(*left[1]) == ACK
    # a lost race: left to apply, which reads what the store holds and writes again
    assert await loop.apply_batch([event("shop.ordered", "o-3", 5)]) == [ACK]
    store.conflicts = 1
    reserved = event("stock.reserved", "o-3", 6)
    assert await loop.apply_batch([reserved, event("ship.done", "o-2", 7)]) == [None, ACK]
    assert loop.cache.get("shop.o-3") is None
    assert await loop.apply(*reserved) == ACK
    stored = await store.load("shop.o-3")
    assert stored is not None
    assert stored.record.origin == "SAGA_EVENTS:6"
    assert stored.record.state.steps["reserve"].status.value == "succeeded"


async def test_a_transition_whose_commands_fail_is_that_events_failure_only() -> None:
    class Failing(Sent):
        async def __call__(
            self, state: InstanceState, commands: Sequence[Command], _: Mapping[str, str] | None
        ) -> None:
            if state.saga_id == "o-2":
                raise ConnectionError("lost the connection")
            await super().__call__(state, commands, _)

    store, sent = CountingStore(), Failing()
    loop = applier(store, sent)
    results = await loop.apply_batch([event("shop.ordered", f"o-{i}", i) for i in range(1, 4)])
    assert results[0] == results[2] == ACK
    assert isinstance(results[1], ConnectionError)
    stored = await store.load("shop.o-2")  # written first: its redelivery sends the outbox
    assert stored is not None
    assert stored.record.origin == "SAGA_EVENTS:2"
    assert sent.subjects() == ["stock.reserve", "stock.reserve"]


async def test_every_transition_is_sent_before_any_of_their_acks_is_awaited() -> None:
    class Pending(Sent):
        """Returns each send's acks as a future the test resolves."""

        def __init__(self) -> None:
            super().__init__()
            self.acks: list[asyncio.Future[None]] = []

        async def __call__(  # type: ignore[override]
            self, state: InstanceState, commands: Sequence[Command], _: Mapping[str, str] | None
        ) -> asyncio.Future[None]:
            await super().__call__(state, commands, _)
            self.acks.append(asyncio.get_running_loop().create_future())
            return self.acks[-1]

    sent = Pending()
    batch = asyncio.ensure_future(
        applier(CountingStore(), sent).apply_batch(
            [event("shop.ordered", f"o-{i}", i) for i in range(1, 4)]
        )
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(sent.acks) == 3  # all three sent, none of their acks came back yet
    assert not batch.done()
    for ack in sent.acks:
        ack.set_result(None)
    assert await asyncio.wait_for(batch, 10) == [ACK] * 3
