"""A batch's plain acks, together (:func:`saga.nats.settle.ack_all`, one write through
:func:`saga.nats.wire.publish_empty`): each message acked once, and a failure to ack is
logged, never raised (the message comes back after the ack wait)."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import BadSubjectError
from nats.js.api import AckPolicy, ConsumerConfig

from saga.nats.pull import RawPull
from saga.nats.server import EmbeddedServer
from saga.nats.settle import ack_all
from saga.nats.wire import publish_empty
from tests.support import wait_for

STREAM, CONSUMER = "ACKS", "acker"


async def fetched(nc: Client, count: int) -> tuple[RawPull, list[Msg]]:
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=["acks.>"])
    await js.add_consumer(
        STREAM, ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, ack_wait=30)
    )
    for i in range(count):
        await js.publish(f"acks.{i}", b"{}")
    pull = RawPull(nc, STREAM, CONSUMER)
    msgs: list[Msg] = []
    deadline = asyncio.get_running_loop().time() + 10
    while len(msgs) < count and asyncio.get_running_loop().time() < deadline:
        msgs += await pull.fetch(count, 1.0)
    assert len(msgs) == count
    return pull, msgs


async def test_every_message_of_the_batch_is_acked(nc: Client) -> None:
    pull, msgs = await fetched(nc, 5)
    js = nc.jetstream()
    assert (await js.consumer_info(STREAM, CONSUMER)).num_ack_pending == 5
    await ack_all(nc, msgs, logging.getLogger("test"))

    async def all_acked() -> bool:
        return not (await js.consumer_info(STREAM, CONSUMER)).num_ack_pending

    await wait_for(all_acked, timeout=10, interval=0.02, message="no ack pending")
    assert (await js.consumer_info(STREAM, CONSUMER)).ack_floor.stream_seq == 5
    await pull.close()


async def test_an_ack_that_cannot_be_sent_is_logged_not_raised(
    nats_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await nats.connect(nats_server.url)
    _pull, msgs = await fetched(nc, 2)
    await nc.close()
    with caplog.at_level(logging.ERROR, logger="test"):
        await ack_all(nc, msgs, logging.getLogger("test"))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("could not settle acks." in e and "returns after the ack wait" in e for e in errors)


async def collected(nc: Client) -> tuple[list[tuple[str, bytes]], Subscription]:
    """Subject and payload of each message on ``w.>`` from now on, and the subscription."""
    got: list[tuple[str, bytes]] = []

    async def received(msg: Msg) -> None:
        got.append((msg.subject, msg.data))

    sub = await nc.subscribe("w.>", cb=received)
    await nc.flush()
    return got, sub


async def test_publish_empty_sends_each_subject_in_order(nc: Client) -> None:
    got, sub = await collected(nc)
    await publish_empty(nc, [f"w.{i}" for i in range(50)])
    await wait_for(lambda: len(got) >= 50, timeout=10, interval=0.01, message="50 messages")
    assert got == [(f"w.{i}", b"") for i in range(50)]
    await sub.unsubscribe()


async def test_publish_empty_refuses_a_bad_subject_and_sends_nothing(nc: Client) -> None:
    got, sub = await collected(nc)
    with pytest.raises(BadSubjectError):
        await publish_empty(nc, ["w.1", "w.2 PUB w.3 0"])
    await publish_empty(nc, ["w.4"])
    await wait_for(lambda: bool(got), timeout=10, interval=0.01, message="a message")
    await nc.flush()
    assert got == [("w.4", b"")]
    await sub.unsubscribe()
