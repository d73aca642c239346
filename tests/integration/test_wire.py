"""saga.nats.wire against a real server: inline subscriptions (nats-py's future path) and the
publish path through a reconnection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from saga.nats.server import EmbeddedServer
from saga.nats.wire import Wire, read_cheaply, subscribe_inline


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_every_message_reaches_the_handler_in_order_without_a_task(nc: Client) -> None:
    seen: list[tuple[str, bytes, bool]] = []

    def handler(msg: Msg) -> None:
        seen.append((msg.subject, msg.data, asyncio.current_task() is nc._reading_task))

    sub = await subscribe_inline(nc, "in.*", handler)
    assert sub._wait_for_msgs_task is None  # nats-py made no task for it
    for n in range(200):
        await nc.publish(f"in.{n % 3}", f"{n}".encode())
    await _until(lambda: len(seen) == 200)
    assert [data for _, data, _ in seen] == [f"{n}".encode() for n in range(200)]
    assert {subject for subject, _, _ in seen} == {"in.0", "in.1", "in.2"}
    assert all(inline for _, _, inline in seen)  # called from nats-py's read loop


async def test_a_failing_handler_is_logged_and_the_next_message_still_comes(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []

    def handler(msg: Msg) -> None:
        if msg.data == b"bad":
            raise ValueError("bad message")
        seen.append(msg.data)

    await subscribe_inline(nc, "in.x", handler)
    with caplog.at_level(logging.ERROR, logger="saga.nats.wire"):
        for data in (b"1", b"bad", b"2"):
            await nc.publish("in.x", data)
        await _until(lambda: seen == [b"1", b"2"])
    assert "bad message" in caplog.text
    assert nc.is_connected


async def test_a_cheaply_reading_client_gets_what_nats_py_gives(
    nats_server: EmbeddedServer,
) -> None:
    """Two clients on one subject, one reading with saga.nats.wire's parser and header
    reader: the same messages (split across reads: some are larger than nats-py's read)."""
    plain, cheap = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    got: dict[bool, list[tuple[str, str, bytes, dict[str, str] | None]]] = {True: [], False: []}
    try:
        read_cheaply(cheap)
        for client, cheaply in ((plain, False), (cheap, True)):

            async def keep(msg: Msg, cheaply: bool = cheaply) -> None:
                got[cheaply].append((msg.subject, msg.reply, msg.data, msg.headers))

            await client.subscribe("big.>", cb=keep)
        await plain.flush()
        await cheap.flush()
        sizes = [0, 1, 300, 70_000, 200_000, 5]
        for n, size in enumerate(sizes * 5):
            headers = {"Saga-Id": f"{n}", "traceparent": "00-ab-cd-01"} if n % 2 else None
            await plain.publish(f"big.{n}", bytes([n % 251]) * size, f"r.{n}", headers)
        await _until(lambda: len(got[True]) == len(got[False]) == 30)
        assert got[True] == got[False]
        assert got[True][1][3] == {"Saga-Id": "1", "traceparent": "00-ab-cd-01"}
    finally:
        await plain.close()
        await cheap.close()


async def test_publishes_while_reconnecting_are_buffered_and_sent() -> None:
    """The server restarts on its port: what Wire published meanwhile arrives after."""
    server = EmbeddedServer().start()
    seen: list[bytes] = []
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await nats.connect(
        server.url, reconnect_time_wait=0.1, max_reconnect_attempts=-1, reconnected_cb=on_reconnect
    )
    try:
        await subscribe_inline(nc, "r.>", lambda msg: seen.append(msg.data))
        wire = Wire(nc)
        port = server.port
        server.close()
        await _until(lambda: not nc.is_connected)
        sent = wire.publish("r.a", "_INBOX.none", b"while down", {"K": "v"})
        assert sent is not None  # nats-py's own publish, which buffers
        await sent
        server = EmbeddedServer(port=port).start()
        await asyncio.wait_for(reconnected.wait(), 10)
        await _until(lambda: seen == [b"while down"])
    finally:
        await nc.close()
        server.close()
