"""Pipelined publishes: every ack resolves, to a result or to the server's error, or times out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from saga.nats.acks import AckGroup, Acks, PubAck, acks_for
from saga.nats.server import EmbeddedServer


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(StreamConfig(name="S", subjects=["s.>"], duplicate_window=60))
    yield nc
    await nc.close()


async def test_acks_come_back_in_order_with_their_sequences(client: Client) -> None:
    acks = Acks(client)
    pending = [await acks.send("s.a", f"{n}".encode()) for n in range(50)]
    results = await asyncio.gather(*pending)
    assert [a.seq for a in results] == list(range(1, 51))
    assert {a.stream for a in results} == {"S"}


async def test_a_repeated_message_id_is_acked_as_a_duplicate(client: Client) -> None:
    acks = Acks(client)
    first = await (await acks.send("s.a", b"x", {"Nats-Msg-Id": "m-1"}))
    again = await (await acks.send("s.a", b"x", {"Nats-Msg-Id": "m-1"}))
    assert again == PubAck("S", first.seq, duplicate=True)


async def test_an_error_ack_raises_the_servers_error(client: Client) -> None:
    """nats-py's publish_async leaves such a future pending for ever (nats.py#985)."""
    acks = Acks(client)
    await (await acks.send("s.k", b"1"))
    stale = await acks.send("s.k", b"2", {"Nats-Expected-Last-Subject-Sequence": "0"})
    with pytest.raises(APIError) as raised:
        await asyncio.wait_for(stale, 5)
    assert raised.value.err_code == 10071
    wrong_stream = await acks.send("s.k", b"3", {"Nats-Expected-Stream": "OTHER"})
    with pytest.raises(APIError):
        await asyncio.wait_for(wrong_stream, 5)


async def test_a_subject_no_stream_captures_fails_at_once(client: Client) -> None:
    acks = Acks(client)
    with pytest.raises(NoStreamResponseError):
        await asyncio.wait_for(await acks.send("nowhere.x", b""), 5)


async def test_a_missing_ack_times_out_and_is_forgotten(client: Client) -> None:
    acks = Acks(client, timeout=0.2)
    await client.subscribe("silent.>")  # an interest that never answers
    ack = await acks.send("silent.x", b"")
    with pytest.raises(NatsTimeoutError):
        await asyncio.wait_for(ack, 5)
    assert acks._waiting == {}


async def test_a_group_is_done_when_every_ack_came_back(client: Client) -> None:
    acks = Acks(client)
    group = AckGroup()
    for n in range(20):
        await acks.send_in(group, "s.g", f"{n}".encode(), {"Nats-Msg-Id": f"g-{n % 10}"})
    await asyncio.wait_for(group.wait(), 5)  # duplicates are acks too
    assert len(group) == 0
    info = await client.jetstream().stream_info("S")
    assert info.state.messages == 10
    empty = AckGroup()
    await asyncio.wait_for(empty.wait(), 1)


async def test_a_group_fails_with_the_first_error_or_a_timeout(client: Client) -> None:
    acks = Acks(client, timeout=0.2)
    group = AckGroup()
    await acks.send_in(group, "s.k", b"1")
    await acks.send_in(group, "s.k", b"2", {"Nats-Expected-Last-Subject-Sequence": "0"})
    with pytest.raises(APIError) as raised:
        await asyncio.wait_for(group.wait(), 5)
    assert raised.value.err_code == 10071
    nowhere = AckGroup()
    await acks.send_in(nowhere, "nowhere.x", b"")
    with pytest.raises(NoStreamResponseError):
        await asyncio.wait_for(nowhere.wait(), 5)
    await client.subscribe("silent.>")  # an interest that never answers
    silent = AckGroup()
    await acks.send_in(silent, "s.k", b"3")
    await acks.send_in(silent, "silent.x", b"")
    with pytest.raises(NatsTimeoutError):
        await asyncio.wait_for(silent.wait(), 5)
    assert acks._waiting == {}


async def test_one_shared_instance_per_connection(client: Client) -> None:
    assert acks_for(client) is acks_for(client)
