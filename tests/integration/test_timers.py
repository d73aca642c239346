"""Broker timers on a real nats-server: a cancelled timer never fires, and what cancelled it
(a plain message over the schedule, with a per-message TTL) does not stay in the stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StreamConfig
from nats.js.errors import NotFoundError

from saga.core.events import Timer, TimerKind
from saga.definition import parse_definition
from saga.engine import Engine, EngineSettings
from saga.nats.provision import StreamSettings, provision_engine
from saga.nats.server import EmbeddedServer
from saga.nats.timers import BrokerTimers
from saga.nats.topology import Topology, timer_fire_subject, timer_schedule_subject
from saga.protocol import (
    HEADER_SCHEDULE,
    HEADER_TIMER,
    HEADER_TTL,
    TIMER_FIRE_PREFIX,
    TIMER_SCHEDULE_PREFIX,
)
from tests.support import ScriptedParticipant, wait_for

TOPOLOGY = Topology()
STREAM = TOPOLOGY.timers_stream
CANCELLED = Timer(TimerKind.STEP_TIMEOUT, "pay", 1)
CONTROL = Timer(TimerKind.STEP_TIMEOUT, "ship", 1)


@pytest.fixture
async def client(nats_server: EmbeddedServer) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def provision(js: JetStreamContext, settings: StreamSettings | None = None) -> bool:
    provisioned = await provision_engine(
        js, TOPOLOGY, settings or StreamSettings(), listened=["t.in"], published=["t.out"]
    )
    return provisioned.native_timers


async def last_message(js: JetStreamContext, subject: str) -> Any | None:
    try:
        return await js.get_last_msg(STREAM, subject)
    except NotFoundError:
        return None


async def test_a_cancelled_timer_never_fires_and_its_replacement_expires(client: Client) -> None:
    js = client.jetstream()
    assert await provision(js)
    assert (await js.stream_info(STREAM)).config.allow_msg_ttl is True
    timers = BrokerTimers(client, STREAM)
    now = datetime.now(UTC)
    # Given a timer due in 1 s, and a control timer due after it
    await (await timers.schedule("shop", "o-1", CANCELLED, now + timedelta(seconds=1)))
    await (await timers.schedule("shop", "o-1", CONTROL, now + timedelta(seconds=1.5)))
    schedule = timer_schedule_subject("shop", "o-1", CANCELLED.key)
    before = await last_message(js, schedule)
    assert before is not None
    assert HEADER_SCHEDULE in (before.headers or {})

    # When the first one is cancelled
    await (await timers.cancel("shop", "o-1", CANCELLED))

    # Then its schedule is replaced by a plain message that carries a TTL and no schedule
    assert timers.replace_to_cancel is True  # asked of the stream: TTLs are allowed
    replacement = await last_message(js, schedule)
    assert replacement is not None
    headers = replacement.headers or {}
    assert HEADER_SCHEDULE not in headers
    assert headers[HEADER_TTL] == "1"
    assert headers[HEADER_TIMER] == CANCELLED.key

    # ... the control timer fires, and the cancelled one (due earlier) never did
    control = timer_fire_subject("shop", "o-1", CONTROL.key)

    async def control_fired() -> bool:
        return await last_message(js, control) is not None

    await wait_for(control_fired, message="the control timer to fire")
    cancelled = timer_fire_subject("shop", "o-1", CANCELLED.key)
    assert await last_message(js, cancelled) is None

    # ... and the replacement expires: nothing of the cancelled timer stays in the stream
    async def schedule_gone() -> bool:
        return await last_message(js, schedule) is None

    await wait_for(schedule_gone, timeout=10, message="the replacement to expire")
    assert await last_message(js, cancelled) is None


async def test_cancel_then_schedule_of_one_timer_keeps_the_schedule(client: Client) -> None:
    """Both are publishes in the decided order on one connection: the later one wins."""
    js = client.jetstream()
    assert await provision(js)
    timers = BrokerTimers(client, STREAM)
    due = datetime.now(UTC) + timedelta(minutes=5)
    await (await timers.schedule("shop", "o-2", CANCELLED, due))
    cancel = await timers.cancel("shop", "o-2", CANCELLED)
    again = await timers.schedule("shop", "o-2", CANCELLED, due)
    await cancel
    await again
    kept = await last_message(js, timer_schedule_subject("shop", "o-2", CANCELLED.key))
    assert kept is not None
    assert HEADER_SCHEDULE in (kept.headers or {})


async def test_an_existing_timers_stream_gets_per_message_ttls(client: Client) -> None:
    js = client.jetstream()
    # Given the timers stream as earlier versions created it (schedules, no TTLs)
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=[f"{TIMER_SCHEDULE_PREFIX}.>", f"{TIMER_FIRE_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            allow_msg_schedules=True,
            max_msgs_per_subject=1,
        )
    )
    assert not (await js.stream_info(STREAM)).config.allow_msg_ttl
    # When the engine provisions, Then the stream allows them, with native timers kept
    assert await provision(js)
    assert (await js.stream_info(STREAM)).config.allow_msg_ttl is True


async def test_without_per_message_ttls_cancel_purges(client: Client) -> None:
    """A stream the engine could not update (say, managed elsewhere) still cancels timers."""
    js = client.jetstream()
    await js.add_stream(
        StreamConfig(
            name=STREAM,
            subjects=[f"{TIMER_SCHEDULE_PREFIX}.>", f"{TIMER_FIRE_PREFIX}.>"],
            allow_msg_schedules=True,
            max_msgs_per_subject=1,
        )
    )
    timers = BrokerTimers(client, STREAM)
    await (await timers.schedule("shop", "o-3", CANCELLED, datetime.now(UTC) + timedelta(hours=1)))
    await (await timers.cancel("shop", "o-3", CANCELLED))
    assert timers.replace_to_cancel is False
    assert await last_message(js, timer_schedule_subject("shop", "o-3", CANCELLED.key)) is None


SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
deadline: 1m
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    timeout: 30s
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id}}
    success: pay.charged
    timeout: 30s
"""


@pytest.mark.parametrize("native", [True, False])
async def test_finished_sagas_leave_no_timer_behind(client: Client, native: bool) -> None:
    """Every timeout and the deadline are set and cancelled; the stream ends up empty."""
    streams = StreamSettings(ack_wait_backoff=(1.0, 2.0), max_deliver=3, native_timers=native)
    engine = Engine(
        client, {"shop": parse_definition(SHOP)}, EngineSettings(streams=streams, fetch_wait=0.2)
    )
    await engine.start()
    rules = {
        "stock.reserve": lambda payload, headers: ("stock.reserved", {}),
        "pay.charge": lambda payload, headers: ("pay.charged", {}),
    }
    participant = await ScriptedParticipant(client, rules).start()
    js = client.jetstream()
    try:
        assert engine.timers.native is native
        status = await client.subscribe("saga.status.shop.completed")
        for n in range(5):
            await js.publish("shop.ordered", json.dumps({"id": f"f-{n}"}).encode())
        for _ in range(5):
            await status.next_msg(timeout=15)

        async def timers_stream_empty() -> bool:
            return (await js.stream_info(STREAM)).state.messages == 0

        await wait_for(timers_stream_empty, timeout=10, message="an empty timers stream")
        assert engine.timers.replace_to_cancel is (True if native else None)
    finally:
        await participant.stop()
        await engine.stop()


TIMING_OUT = """
name: late
trigger: {event: late.ordered, id: {field: id}}
steps:
  - {name: wait, publish: {event: late.work}, success: late.done, timeout: 200ms}
"""


async def test_fired_timers_are_swept_from_the_stream_once_handled(client: Client) -> None:
    """Fired timer messages are removed by a periodic purge up to the consumer's ack floor
    (one API request), not by one delete per timer, which made timers seconds late under
    a burst of timeouts (bench/timers.py)."""
    settings = EngineSettings(
        streams=StreamSettings(ack_wait_backoff=(1.0, 2.0), max_deliver=3),
        fetch_wait=0.2,
        timer_sweep=0.2,
    )
    engine = Engine(client, {"late": parse_definition(TIMING_OUT)}, settings)
    await engine.start()
    js = client.jetstream()
    try:
        assert engine.timers.native
        status = await client.subscribe("saga.status.late.compensated")
        for n in range(5):
            await js.publish("late.ordered", json.dumps({"id": f"l-{n}"}).encode())
        for _ in range(5):
            await status.next_msg(timeout=15)

        async def timers_stream_empty() -> bool:
            return (await js.stream_info(STREAM)).state.messages == 0

        await wait_for(timers_stream_empty, timeout=10, message="the fired timers swept")
    finally:
        await engine.stop()
