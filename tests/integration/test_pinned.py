"""The pinned pull adapter against a real server: one puller at a time, clean handover."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from saga.nats.pinned import PinnedPull, ensure_pinned_consumer, unpin


async def pinned_stream(nc: Client) -> None:
    await nc.jetstream().add_stream(name="W", subjects=["w.>"])
    config = ConsumerConfig(durable_name="p0", ack_policy=AckPolicy.EXPLICIT, filter_subject="w.>")
    await ensure_pinned_consumer(nc, "W", config, priority_timeout=30.0)


async def test_a_lone_message_ends_the_pull_at_once(nc: Client) -> None:
    """The pull asks for 100 and may wait 30 s, but returns with the first message."""
    await pinned_stream(nc)
    puller = PinnedPull(nc, "W", "p0")
    pulling = asyncio.create_task(puller.fetch(100, wait=30.0))
    await asyncio.sleep(0)
    await nc.jetstream().publish("w.a", b"1")
    msgs = await asyncio.wait_for(pulling, timeout=10.0)
    assert [m.data for m in msgs] == [b"1"]
    assert puller.pin is not None


async def test_only_the_pinned_puller_receives_until_it_unpins(nc: Client) -> None:
    await pinned_stream(nc)
    js = nc.jetstream()
    owner, other = PinnedPull(nc, "W", "p0"), PinnedPull(nc, "W", "p0")
    await js.publish("w.a", b"1")
    first = await owner.fetch(10, wait=1.0)
    for msg in first:
        await msg.ack()
    await js.publish("w.a", b"2")
    assert await other.fetch(10, wait=0.5) == []  # pinned to the owner: nothing for us
    await unpin(nc, "W", "p0")
    handed_over = await other.fetch(10, wait=2.0)
    assert [m.data for m in handed_over] == [b"2"]
    assert other.pin is not None
    assert other.pin != owner.pin
    # The old owner's pin is stale now: its pull ends with nothing and it forgets the pin.
    assert await owner.fetch(10, wait=0.5) == []
    assert owner.pin is None
    await owner.close()
    await other.close()
