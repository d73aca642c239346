"""The participant SDK and the example services against a real nats-server.

The engine is not running here: each test creates the engine's streams itself
(with the subjects of ``definitions/``) and plays the engine by publishing
commands with saga headers, then reads the replies back from the stream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg, StorageType, StreamConfig
from nats.js.errors import NotFoundError

import saga.participant
from saga.client import find_instance, instance_store
from saga.definition import SagaDefinition, load_definition
from saga.definition.expressions import render
from saga.engine import Engine, EngineSettings
from saga.errors import ConfigError, ProvisioningError
from saga.nats.provision import StreamSettings, ensure_stream
from saga.nats.server import EmbeddedServer
from saga.nats.topology import token
from saga.participant import App, Context, NoReply, ParticipantSettings, Reject, Retry
from saga.participant.effects import effect_key
from saga.participant.runner import load_app
from saga.protocol import EFFECTS_BUCKET, STATUS_PREFIX
from services import car, flight, hotel, inventory, orders, payment, shipping, trips
from tests.conftest import DEFINITIONS, ROOT
from tests.support import wait_for

EVENTS = "SAGA_EVENTS"
DLQ = "SAGA_DLQ"
FAST = ParticipantSettings(
    stream=StreamSettings(ack_wait_backoff=(0.3,), max_deliver=3, storage=StorageType.MEMORY),
    fetch_timeout=0.2,
    keepalive=0.1,
)
"""Redelivery after 0.3 s, dead letter at the third delivery, stop within 0.2 s."""
ORDER = load_definition(DEFINITIONS / "order-fulfilment.yaml")
TRAVEL = load_definition(DEFINITIONS / "travel-booking.yaml")


# -- the engine's side, played by the test ----------------------------------------------


async def provision(js: JetStreamContext) -> None:
    """The streams the engine would create: every subject of the definitions, plus ``t.>``."""
    subjects = {f"{STATUS_PREFIX}.>", "t.>"}
    for definition in (ORDER, TRAVEL):
        subjects |= {*definition.subjects.listened, *definition.subjects.published}
    common: dict[str, Any] = {"storage": StorageType.MEMORY, "duplicate_window": 120.0}
    await ensure_stream(js, StreamConfig(name=EVENTS, subjects=sorted(subjects), **common))
    await ensure_stream(js, StreamConfig(name=DLQ, subjects=["saga.dlq.>"], **common))


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    jsc = nc.jetstream()
    await provision(jsc)
    return jsc


def saga_headers(
    saga_id: str = "s-1",
    step: str = "work",
    attempt: int = 1,
    kind: str = "step",
    saga: str = "test-saga",
    **extra: str,
) -> dict[str, str]:
    return {
        "Saga-Id": saga_id,
        "Saga-Name": saga,
        "Saga-Step": step,
        "Saga-Attempt": str(attempt),
        "Saga-Kind": kind,
        "Nats-Msg-Id": f"{saga}:{saga_id}:{step}:{kind}:{attempt}",
        **extra,
    }


async def command(
    js: JetStreamContext, subject: str, payload: Any, headers: dict[str, str] | None
) -> None:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await js.publish(subject, data, headers=headers)


def engine_command(
    definition: SagaDefinition,
    step: str,
    trigger: dict[str, Any],
    saga_id: str,
    steps: dict[str, Any] | None = None,
    compensation: bool = False,
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The command the engine would publish, rendered from the definition's own template."""
    spec = definition.step(step)
    publish = spec.compensate.publish if compensation and spec.compensate else spec.publish
    assert publish is not None
    context = {
        "saga": {"id": saga_id, "name": definition.name, "version": definition.version},
        "trigger": trigger,
        "steps": steps or {},
    }
    payload = render(publish.data, context) if publish.data is not None else {}
    kind = "compensation" if compensation else "step"
    return publish.event, payload, saga_headers(saga_id, step, kind=kind, saga=definition.name)


async def on_subject(
    js: JetStreamContext, subject: str, stream: str = EVENTS
) -> list[RawStreamMsg]:
    """Every message stored on ``subject``, oldest first (no consumer involved)."""
    found: list[RawStreamMsg] = []
    seq = 1
    while True:
        try:
            msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(msg)
        assert msg.seq is not None
        seq = msg.seq + 1


async def wait_messages(
    js: JetStreamContext, subject: str, count: int = 1, stream: str = EVENTS, timeout: float = 10
) -> list[RawStreamMsg]:
    found: list[RawStreamMsg] = []

    async def enough() -> bool:
        found[:] = await on_subject(js, subject, stream)
        return len(found) >= count

    await wait_for(enough, timeout=timeout, message=f"{count} message(s) on {subject}")
    return found


def body(msg: RawStreamMsg) -> dict[str, Any]:
    assert msg.data is not None
    loaded: dict[str, Any] = json.loads(msg.data)
    return loaded


async def settled(js: JetStreamContext, consumer: str) -> None:
    """Every message the consumer got is acked (or terminated) and none is waiting."""

    async def idle() -> bool:
        info = await js.consumer_info(EVENTS, consumer)
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    await wait_for(idle, timeout=10, message=f"consumer {consumer} to settle")


@pytest.fixture
async def running(nc: Client, js: JetStreamContext) -> AsyncIterator[Any]:
    """``await running(app, ...)`` starts apps on ``nc``; all stop at teardown."""
    stack: list[Any] = []

    async def start(*apps: App) -> None:
        for app in apps:
            context = app.running(nc, FAST)
            await context.__aenter__()
            stack.append(context)

    yield start
    await asyncio.gather(*(context.__aexit__(None, None, None) for context in stack))


# -- the SDK ----------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    """What a service needs; the rest is imported from its module (``.testing``, ``.chaos``,
    ``.runner``, ``.effects``, ``.settings``)."""
    assert saga.participant.__all__ == [
        "App",
        "Context",
        "NoReply",
        "ParticipantSettings",
        "Reject",
        "Retry",
        "run_app",
    ]
    for name in saga.participant.__all__:
        assert getattr(saga.participant, name) is not None


def test_bad_routes_are_refused_together() -> None:
    app = App("t")
    with pytest.raises(ConfigError) as caught:
        app.on("t.>", success="t.ok.*")(_noop)
    assert "t.>" in str(caught.value)
    assert "t.ok.*" in str(caught.value)
    assert "step=" in str(caught.value)
    app.step("t.cmd", success="t.ok")(_noop)
    with pytest.raises(ConfigError, match="already has a handler"):
        app.compensation("t.cmd", success="t.ok")(_noop)
    with pytest.raises(ConfigError, match="app name"):
        App("has.dot")


def test_a_plain_def_handler_is_refused_at_registration() -> None:
    """Defect 13: a handler that is not ``async def`` used to be redelivered 10 times."""
    app = App("sync")

    def plain(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {}

    for register in (
        app.step("t.cmd", success="t.ok"),
        app.compensation("t.undo", success="t.undone"),
        app.on("t.evt"),
    ):
        with pytest.raises(TypeError, match=r"t\.\w+ in app sync must be an `async def`.*plain"):
            register(plain)  # type: ignore[arg-type]
    assert app.routes == {}

    class Callable:
        async def __call__(self, ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
            return {}

    app.step("t.cmd", success="t.ok")(Callable())
    assert list(app.routes) == ["t.cmd"]


def test_load_app_finds_the_service_and_explains_mistakes() -> None:
    assert load_app("services.inventory:app") is inventory.app
    assert load_app("services.payment") is payment.app
    with pytest.raises(ConfigError, match="cannot import"):
        load_app("services.nope:app")
    with pytest.raises(ConfigError, match=r"not a saga\.participant\.App"):
        load_app("services.inventory:MAX_QTY")


async def _noop(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
    return {}


async def test_success_reply_carries_the_result_and_the_saga_headers(
    js: JetStreamContext, running: Any
) -> None:
    seen: list[Context] = []
    app = App("echo")

    @app.step("t.cmd", success="t.ok", failure="t.failed")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(ctx)
        return {"doubled": payload["n"] * 2}

    await running(app)
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = saga_headers(attempt=2, traceparent=trace, tracestate="k=v")
    await command(js, "t.cmd", {"n": 21}, headers)

    [reply] = await wait_messages(js, "t.ok")
    assert body(reply) == {"doubled": 42}
    assert reply.headers is not None
    assert {k: v for k, v in reply.headers.items() if k.startswith("Saga-")} == {
        "Saga-Id": "s-1",
        "Saga-Name": "test-saga",
        "Saga-Step": "work",
        "Saga-Kind": "step",
        "Saga-Attempt": "2",  # the attempt it answers (issue 12, defect 3)
    }
    assert reply.headers["traceparent"] == trace
    assert reply.headers["tracestate"] == "k=v"
    assert reply.headers["Nats-Msg-Id"] == "test-saga:s-1:work:step:reply:2"
    [ctx] = seen
    assert (ctx.saga_id, ctx.saga_name, ctx.step, ctx.kind, ctx.attempt, ctx.delivery) == (
        "s-1",
        "test-saga",
        "work",
        "step",
        2,
        1,
    )
    assert ctx.idempotency_key == "test-saga:s-1:work:step"
    assert ctx.subject == "t.cmd"
    assert ctx.service == "echo"
    await settled(js, "echo")


async def test_reject_publishes_the_failure_event_with_reason_and_data(
    js: JetStreamContext, running: Any
) -> None:
    app = App("refuser")

    @app.step("t.cmd", success="t.ok", failure="t.failed")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        raise Reject("out-of-stock", {"sku": "A", "reason": "ignored: reason wins"})

    await running(app)
    await command(js, "t.cmd", {}, saga_headers())
    [reply] = await wait_messages(js, "t.failed")
    assert body(reply) == {"reason": "out-of-stock", "sku": "A"}
    assert reply.headers is not None
    assert reply.headers["Saga-Step"] == "work"
    await settled(js, "refuser")
    assert await on_subject(js, "t.ok") == []


async def test_unexpected_error_is_retried_by_redelivery_until_it_succeeds(
    js: JetStreamContext, running: Any
) -> None:
    deliveries: list[int] = []
    app = App("flaky")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        deliveries.append(ctx.delivery)
        if ctx.delivery < 3:
            raise ConnectionError("database away")
        return {"ok": True}

    await running(app)
    await command(js, "t.cmd", {}, saga_headers())
    [reply] = await wait_messages(js, "t.ok")
    assert body(reply) == {"ok": True}
    assert deliveries == [1, 2, 3]
    await settled(js, "flaky")
    assert await on_subject(js, "saga.dlq.handler-failed", DLQ) == []


async def test_a_handler_that_always_fails_ends_in_the_dead_letters(
    js: JetStreamContext, running: Any
) -> None:
    calls: list[int] = []
    app = App("broken")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.delivery)
        raise ValueError("bug in handler")

    await running(app)
    await command(js, "t.cmd", {"n": 1}, saga_headers())
    [dead] = await wait_messages(js, "saga.dlq.handler-failed", stream=DLQ)
    assert calls == [1, 2, 3]
    assert dead.headers is not None
    assert dead.headers["Saga-Dlq-Code"] == "handler-failed"
    assert "ValueError: bug in handler" in dead.headers["Saga-Dlq-Reason"]
    assert dead.headers["Saga-Dlq-Subject"] == "t.cmd"
    assert dead.headers["Saga-Dlq-Consumer"] == "broken"
    assert dead.headers["Saga-Id"] == "s-1"
    assert body(dead) == {"n": 1}
    await settled(js, "broken")
    assert await on_subject(js, "t.ok") == []


@pytest.mark.parametrize(
    ("result", "why"),
    [
        ([1, 2], "returned list, not a dict"),
        ("ok", "returned str, not a dict"),
        ({"when": object()}, "not JSON"),
        ({"amount": float("inf")}, "not JSON"),
    ],
    ids=["list", "str", "not-serialisable", "infinity"],
)
async def test_a_wrong_return_type_is_dead_lettered_at_once_as_a_handler_bug(
    js: JetStreamContext, running: Any, result: Any, why: str
) -> None:
    """Defect 13: no redelivery fixes a bug, so the first delivery dead-letters it."""
    calls: list[int] = []
    app = App("buggy")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> Any:
        calls.append(ctx.delivery)
        return result

    await running(app)
    await command(js, "t.cmd", {"n": 1}, saga_headers())
    [dead] = await wait_messages(js, "saga.dlq.handler-bug", stream=DLQ)
    await settled(js, "buggy")
    assert calls == [1]
    assert dead.headers is not None
    assert dead.headers["Saga-Dlq-Code"] == "handler-bug"
    assert why in dead.headers["Saga-Dlq-Reason"]
    assert "t.cmd" in dead.headers["Saga-Dlq-Reason"]
    assert await on_subject(js, "t.ok") == []
    kv = await js.key_value("saga_replies")
    with pytest.raises(NotFoundError):
        await kv.get(token("test-saga:s-1:work:step"))


async def test_duplicate_commands_get_one_reply_and_run_the_handler_once(
    js: JetStreamContext, running: Any
) -> None:
    calls: list[int] = []
    app = App("once")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.attempt)
        await asyncio.sleep(0.05)  # let the concurrent copy arrive while we run
        return {"token": os.urandom(4).hex()}

    await running(app)
    first = saga_headers()
    # The engine's outbox sent again after the duplicate window: not deduplicated by the
    # server, and marked as sent again.
    copy = {**first, "Nats-Msg-Id": "another-id", "Saga-Replay": "1"}
    await asyncio.gather(
        command(js, "t.cmd", {}, first), command(js, "t.cmd", {}, copy)
    )  # both may land in one batch
    [reply] = await wait_messages(js, "t.ok")
    await settled(js, "once")
    # The engine's retry after a timeout: attempt 2 of the same step gets the stored reply.
    await command(js, "t.cmd", {}, saga_headers(attempt=2))
    await settled(js, "once")
    assert calls == [1]
    replies = await on_subject(js, "t.ok")
    assert len(replies) == 1
    assert replies[0].data == reply.data


async def test_a_handler_that_waits_holds_up_nothing_else_of_its_batch(
    js: JetStreamContext, running: Any
) -> None:
    """A fetched batch's first answers are handled together, yet a handler that waits
    (here until the test lets it go) holds up neither the others' replies nor their acks."""
    release = asyncio.Event()
    app = App("batched")

    @app.step("t.slow", success="t.slow.ok")
    async def slow(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {"slow": True}

    @app.step("t.fast", success="t.fast.ok")
    async def fast(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"fast": True}

    # Both wait in the stream before the app starts: its first fetch brings both.
    await command(js, "t.slow", {}, saga_headers("s-slow"))
    for i in range(3):
        await command(js, "t.fast", {}, saga_headers(f"s-fast-{i}"))
    await running(app)
    await wait_messages(js, "t.fast.ok", count=3)

    async def fast_ones_acked() -> bool:
        info = await js.consumer_info(EVENTS, "batched")
        return info.num_ack_pending == 1 and info.num_pending == 0

    await wait_for(fast_ones_acked, message="the fast commands acked, the slow one in hand")
    assert await on_subject(js, "t.slow.ok") == []
    release.set()
    [reply] = await wait_messages(js, "t.slow.ok")
    assert body(reply) == {"slow": True}
    await settled(js, "batched")


async def test_a_batch_answered_together_is_acked_without_waiting_for_redelivery(
    nc: Client, js: JetStreamContext
) -> None:
    """The first answers of a fetched batch are acked together, once their replies are
    stored: with an ack wait longer than the wait below, only those acks can settle it."""
    app = App("acked")

    @app.step("t.many", success="t.many.ok")
    async def many(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"n": payload["n"]}

    patient = dataclasses.replace(
        FAST, stream=dataclasses.replace(FAST.stream, ack_wait_backoff=(60.0,))
    )
    for i in range(5):  # in the stream before the app starts: its first fetch brings all
        await command(js, "t.many", {"n": i}, saga_headers(f"s-many-{i}"))
    async with app.running(nc, patient):
        replies = await wait_messages(js, "t.many.ok", count=5)
        await settled(js, "acked")
        info = await js.consumer_info(EVENTS, "acked")
    assert info.num_redelivered == 0
    assert sorted(body(reply)["n"] for reply in replies) == [0, 1, 2, 3, 4]


async def test_an_unmarked_copy_of_a_first_attempt_still_gets_the_stored_reply(
    js: JetStreamContext, running: Any
) -> None:
    """A first delivery of attempt 1 skips the ledger read (create-first); a copy nobody
    marked as sent again may run the handler again, but loses the create and publishes
    the reply stored first: one answer, whatever the copies."""
    app = App("copies")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"token": os.urandom(4).hex()}

    await running(app)
    first = saga_headers()
    await command(js, "t.cmd", {}, first)
    [reply] = await wait_messages(js, "t.ok")
    await settled(js, "copies")
    await command(js, "t.cmd", {}, {**first, "Nats-Msg-Id": "an-unmarked-copy"})
    await settled(js, "copies")
    kv = await js.key_value("saga_replies")
    entry = await kv.get(token("test-saga:s-1:work:step"))
    assert entry.value is not None
    assert json.loads(entry.value)["data"] == reply.data.decode()
    published = await on_subject(js, "t.ok")
    assert {m.data for m in published} == {reply.data}  # the copy republished the first reply


async def test_a_purged_ledger_entry_is_written_again_over_its_marker(
    js: JetStreamContext, running: Any
) -> None:
    """The ledger's pipelined create (``Nats-Expected-Last-Subject-Sequence: 0``) fails on a
    key an operator purged (the purge leaves a marker); the write then names the marker's
    revision, as ``kv.create`` does, instead of retrying the command for ever."""
    app = App("purged")
    calls: list[int] = []

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.attempt)
        return {"n": len(calls)}

    await running(app)
    first = saga_headers()
    await command(js, "t.cmd", {}, first)
    await wait_messages(js, "t.ok")
    await settled(js, "purged")
    kv = await js.key_value("saga_replies")
    await kv.purge(token("test-saga:s-1:work:step"))
    await command(js, "t.cmd", {}, {**first, "Nats-Msg-Id": "after-the-purge"})

    async def stored_again() -> bool:
        try:
            entry = await kv.get(token("test-saga:s-1:work:step"))
        except NotFoundError:  # only the marker
            return False
        return entry.value is not None and json.loads(json.loads(entry.value)["data"]) == {"n": 2}

    await wait_for(stored_again, timeout=10, message="the reply stored over the marker")
    await settled(js, "purged")
    assert calls == [1, 1]
    info = await js.consumer_info(EVENTS, "purged")
    assert info.num_redelivered == 0  # the second copy was answered on its first delivery


async def test_a_redelivered_command_keeps_its_first_side_effect(
    js: JetStreamContext, running: Any, nc: Client
) -> None:
    effects: list[str] = []
    app = App("effects")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        async def charge() -> dict[str, Any]:
            effects.append(ctx.idempotency_key)
            return {"charge_id": os.urandom(4).hex()}

        charged = await ctx.once("charge", charge)
        if ctx.delivery == 1:
            raise RuntimeError("crashed after charging")
        return charged

    await running(app)
    await command(js, "t.cmd", {}, saga_headers())
    [reply] = await wait_messages(js, "t.ok")
    await settled(js, "effects")
    assert effects == ["test-saga:s-1:work:step"]
    kv = await js.key_value(EFFECTS_BUCKET)
    entry = await kv.get(effect_key("effects", "charge", "test-saga:s-1:work:step"))
    assert entry.value is not None
    assert json.loads(entry.value)["result"] == body(reply)


async def test_a_failure_answers_only_its_attempt(js: JetStreamContext, running: Any) -> None:
    """A retry after a failure (retry.on_failure, a failed undo) must really run again."""
    calls: list[tuple[int, int]] = []
    app = App("retrying")

    @app.compensation("t.undo", success="t.undone", failure="t.undo-failed")
    async def undo(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((ctx.attempt, ctx.delivery))
        if ctx.attempt == 1:
            raise Reject("locked")
        return {"undone": True}

    await running(app)
    await command(js, "t.undo", {}, saga_headers(kind="compensation"))
    await wait_messages(js, "t.undo-failed")
    redelivered = {**saga_headers(kind="compensation"), "Nats-Msg-Id": "again", "Saga-Replay": "1"}
    await command(js, "t.undo", {}, redelivered)  # same attempt: the stored failure again
    await settled(js, "retrying")
    await command(js, "t.undo", {}, saga_headers(kind="compensation", attempt=2))
    [success] = await wait_messages(js, "t.undone")
    await settled(js, "retrying")
    assert calls == [(1, 1), (2, 1)]
    assert [body(m) for m in await on_subject(js, "t.undo-failed")] == [{"reason": "locked"}]
    assert success.headers is not None
    assert success.headers["Saga-Kind"] == "compensation"
    assert success.headers["Nats-Msg-Id"] == "test-saga:s-1:work:compensation:reply:2"


@pytest.mark.parametrize(
    ("payload", "headers", "code"),
    [
        ({"n": 1}, {"Saga-Name": "test-saga", "Saga-Step": "work"}, "no-saga-id"),
        (b"{not json", saga_headers(), "malformed"),
        ([1, 2, 3], saga_headers(), "malformed"),
        ({"n": 1}, {"Saga-Id": "s-1", "Saga-Step": "work"}, "malformed"),
        ({}, saga_headers(saga_id="x" * 257), "malformed"),
        ({}, {**saga_headers(), "Saga-Attempt": "two"}, "malformed"),
        ({}, {**saga_headers(), "Saga-Attempt": "0"}, "malformed"),
        ({}, {**saga_headers(), "Saga-Kind": "undo"}, "malformed"),
        ({}, saga_headers(kind="compensation"), "malformed"),
        ({}, {k: v for k, v in saga_headers().items() if k != "Saga-Step"}, "malformed"),
        (b'{"note": "\xff"}', saga_headers(), "malformed"),
        (b'{"amount": NaN}', saga_headers(), "non-finite-number"),
        (b'{"amount": 1e400}', saga_headers(), "non-finite-number"),
    ],
    ids=[
        "no-saga-id",
        "not-json",
        "not-an-object",
        "no-saga-name",
        "saga-id-over-256",
        "attempt-not-a-number",
        "attempt-zero",
        "kind-unknown",
        "kind-not-the-subjects",
        "no-saga-step",
        "invalid-utf8",
        "nan",
        "infinite",
    ],
)
async def test_unusable_commands_are_dead_lettered_and_the_consumer_goes_on(
    js: JetStreamContext, running: Any, payload: Any, headers: dict[str, str], code: str
) -> None:
    app = App("strict")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"saga": ctx.saga_id}

    await running(app)
    await command(js, "t.cmd", payload, headers)
    await command(js, "t.cmd", {}, saga_headers(saga_id="good"))
    [dead] = await wait_messages(js, f"saga.dlq.{code}", stream=DLQ)
    [reply] = await wait_messages(js, "t.ok")
    assert body(reply) == {"saga": "good"}
    assert dead.headers is not None
    assert dead.headers["Saga-Dlq-Subject"] == "t.cmd"
    await settled(js, "strict")


async def test_no_reply_acks_without_answering(js: JetStreamContext, running: Any) -> None:
    app = App("silent")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        raise NoReply("the engine will time out")

    await running(app)
    await command(js, "t.cmd", {}, saga_headers())
    await settled(js, "silent")
    assert await on_subject(js, "t.ok") == []
    assert await on_subject(js, "saga.dlq.>", DLQ) == []


async def test_retry_redelivers_after_the_given_delay(js: JetStreamContext, running: Any) -> None:
    deliveries: list[int] = []
    app = App("later")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        deliveries.append(ctx.delivery)
        if ctx.delivery == 1:
            raise Retry("not yet", delay=0.1)
        return {}

    await running(app)
    await command(js, "t.cmd", {}, saga_headers())
    await wait_messages(js, "t.ok")
    assert deliveries == [1, 2]


async def test_the_app_waits_for_the_engine_streams(
    nc: Client, caplog: pytest.LogCaptureFixture
) -> None:
    js = nc.jetstream()
    app = App("patient")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        return {"late": True}

    caplog.set_level(logging.WARNING, "saga.participant")
    context = app.running(nc, FAST)
    entering = asyncio.create_task(context.__aenter__())
    await wait_for(
        lambda: "waiting for stream(s) SAGA_EVENTS, SAGA_DLQ" in caplog.text,
        message="the waiting log line",
    )
    assert not entering.done()
    await provision(js)
    await asyncio.wait_for(entering, 10)
    try:
        await command(js, "t.cmd", {}, saga_headers())
        [reply] = await wait_messages(js, "t.ok")
        assert body(reply) == {"late": True}
    finally:
        await context.__aexit__(None, None, None)


async def test_stop_finishes_in_flight_messages(nc: Client, js: JetStreamContext) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    app = App("graceful")

    @app.step("t.cmd", success="t.ok")
    async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"finished": True}

    context = app.running(nc, FAST)
    await context.__aenter__()
    await command(js, "t.cmd", {}, saga_headers())
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(context.__aexit__(None, None, None))
    # Not a hope but a window: held twice the ack wait (0.3 s), the message must neither
    # be redelivered (the keepalive holds it) nor let the stop return.
    await asyncio.sleep(0.6)
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, 10)
    [reply] = await on_subject(js, "t.ok")
    assert body(reply) == {"finished": True}
    await settled(js, "graceful")
    info = await js.consumer_info(EVENTS, "graceful")
    assert info.delivered is not None
    assert info.delivered.consumer_seq == 1


# -- copies of one app sharing its durable (defect 7) -------------------------------------


def answering(name: str, *subjects: str) -> tuple[App, list[str]]:
    """An app named ``name`` answering each ``t.<x>`` on ``t.<x>.ok``; the subjects it saw."""
    app, seen = App(name), []
    for subject in subjects:

        async def work(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
            seen.append(ctx.subject)
            return {}

        app.step(subject, success=f"{subject}.ok")(work)
    return app, seen


async def filter_of(js: JetStreamContext, consumer: str) -> list[str]:
    config = (await js.consumer_info(EVENTS, consumer)).config
    return sorted(config.filter_subjects or [config.filter_subject or ""])


async def test_a_second_app_with_the_same_name_is_refused_and_the_first_keeps_working(
    js: JetStreamContext, running: Any
) -> None:
    """Two modules both declaring ``App("mail")``: the second used to take the first's
    subjects away by overwriting the durable's filter."""
    mail, seen = answering("mail", "t.mail.send")
    await running(mail)
    other, _ = answering("mail", "t.mail.digest")
    with pytest.raises(ProvisioningError) as refused:
        await running(other)
    message = str(refused.value)
    assert "consumer mail on SAGA_EVENTS filters t.mail.send" in message
    assert "t.mail.digest" in message
    assert "Give this app its own name" in message
    assert await filter_of(js, "mail") == ["t.mail.send"]
    await command(js, "t.mail.send", {}, saga_headers())
    await wait_messages(js, "t.mail.send.ok")
    assert seen == ["t.mail.send"]


async def test_a_rolling_deploy_adding_a_handler_loses_nothing_and_a_rollback_narrows_nothing(
    nc: Client, js: JetStreamContext
) -> None:
    """The old copy used to dead-letter the new subject ("no handler"); it must leave it to
    the new copy. After a rollback the filter stays and the orphan ends as a dead letter."""
    old, old_seen = answering("mail", "t.a")
    new, new_seen = answering("mail", "t.a", "t.b")
    # 20 deliveries 0.25 s apart: time enough for the new copy to come back.
    rolling = dataclasses.replace(
        FAST, stream=dataclasses.replace(FAST.stream, ack_wait_backoff=(0.25,), max_deliver=20)
    )
    async with old.running(nc, rolling):
        async with new.running(nc, rolling):
            assert await filter_of(js, "mail") == ["t.a", "t.b"]
        # The new copy restarts: meanwhile only the old copy receives t.b, and leaves it.
        await command(js, "t.b", {}, saga_headers("b-1"))

        async def redelivered() -> bool:
            info = await js.consumer_info(EVENTS, "mail")
            return bool(info.num_redelivered)

        await wait_for(redelivered, message="the old copy to leave t.b for later")
        async with new.running(nc, rolling):
            [reply] = await wait_messages(js, "t.b.ok")
            assert reply.headers is not None
            assert reply.headers["Saga-Id"] == "b-1"
            await settled(js, "mail")
        assert await on_subject(js, "saga.dlq.>", DLQ) == []
        assert new_seen == ["t.b"]
        # Rolled back: the old copy alone. It neither narrows the filter nor drops t.b silently.
    async with old.running(nc, rolling):
        assert await filter_of(js, "mail") == ["t.a", "t.b"]
        await command(js, "t.b", {}, saga_headers("b-2"))
        await command(js, "t.a", {}, saga_headers("a-1"))
        # 20 deliveries 0.25 s apart, each nakked: about 5 s
        [dead] = await wait_messages(js, "saga.dlq.unknown-event", stream=DLQ, timeout=30)
        await wait_messages(js, "t.a.ok")
    assert dead.headers is not None
    assert dead.headers["Saga-Id"] == "b-2"
    assert "no handler for t.b in this copy of mail" in dead.headers["Saga-Dlq-Reason"]
    assert "in 20 deliveries" in dead.headers["Saga-Dlq-Reason"]
    assert old_seen == ["t.a"]


async def test_an_existing_durable_keeps_its_delivery_settings_and_they_are_followed(
    nc: Client, js: JetStreamContext
) -> None:
    """A copy with other settings does not rewrite the shared durable behind the others'
    back; it dead-letters at the durable's ``max_deliver``, not its own."""
    first, _ = answering("mail", "t.a")
    async with first.running(nc, FAST):
        pass
    calls: list[int] = []
    second = App("mail")

    @second.step("t.a", success="t.a.ok")
    async def failing(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx.delivery)
        raise RuntimeError("down")

    patient = dataclasses.replace(
        FAST, stream=dataclasses.replace(FAST.stream, ack_wait_backoff=(0.2,), max_deliver=5)
    )
    async with second.running(nc, patient):
        info = await js.consumer_info(EVENTS, "mail")
        assert info.config.max_deliver == 3
        assert info.config.backoff == [0.3]
        await command(js, "t.a", {}, saga_headers())
        await wait_messages(js, "saga.dlq.handler-failed", stream=DLQ)
    assert calls == [1, 2, 3]


# -- the example services ---------------------------------------------------------------


async def test_hotel_books_on_its_own_when_the_flight_is_booked(
    js: JetStreamContext, running: Any
) -> None:
    await running(flight.app, hotel.app)
    trip = trips.new_trip("trip-1")
    await trips.request_trips(js, [trip])
    subject, payload, headers = engine_command(TRAVEL, "book_flight", trip, "trip-1")
    await command(js, subject, payload, headers)

    [booked] = await wait_messages(js, "travel.hotel.booked")
    assert booked.headers is not None
    assert {k: v for k, v in booked.headers.items() if k.startswith("Saga-")} == {
        "Saga-Id": "trip-1",
        "Saga-Name": "travel-booking",
        "Saga-Step": "book_hotel",
        "Saga-Kind": "step",
        "Saga-Attempt": "1",  # an observed step runs once
    }
    assert body(booked)["reservation_ref"].startswith("HT")
    [flight_booked] = await on_subject(js, "travel.flight.booked")
    assert flight_booked.headers is not None
    assert flight_booked.headers["Saga-Step"] == "book_flight"
    await settled(js, "hotel")


async def test_hotel_is_full_for_long_stays_even_when_the_flight_comes_first(
    js: JetStreamContext, running: Any
) -> None:
    await running(flight.app, hotel.app)
    trip = trips.new_trip("trip-2", fail="hotel")
    subject, payload, headers = engine_command(TRAVEL, "book_flight", trip, "trip-2")
    await command(js, subject, payload, headers)
    await wait_messages(js, "travel.flight.booked")
    await trips.request_trips(js, [trip])  # the hotel has to wait for it
    [full] = await wait_messages(js, "travel.hotel.full")
    assert body(full) == {"reason": "hotel-full", "nights": 21, "max_nights": 14}
    assert full.headers is not None
    assert full.headers["Saga-Step"] == "book_hotel"


ORDER_ID = "ord-1"
TRIP_ID = "trip-9"
DONE: dict[str, dict[str, Any]] = {
    "reserve_inventory": {"reservation_id": "res-1"},
    "charge_payment": {"payment_id": "pay-1", "amount": 99.5},
    "book_flight": {"booking_ref": "FL1"},
    "book_hotel": {"reservation_ref": "HT1"},
    "rent_car": {"rental_ref": "CAR1"},
}
"""What earlier steps returned, for the templates of later commands and undos."""


def case(step: str, expected: str, reason: str | None = None, **fields: Any) -> Any:
    """One rule: the command of ``step`` for a trigger with ``fields`` gets ``expected``."""
    definition = ORDER if step in {s.name for s in ORDER.steps} else TRAVEL
    trigger = (
        orders.new_order(ORDER_ID, **fields)
        if definition is ORDER
        else trips.new_trip(TRIP_ID, **fields)
    )
    return pytest.param(definition, step, trigger, expected, reason, id=f"{step}-{reason or 'ok'}")


RULES = [
    case("reserve_inventory", "inventory.reserved"),
    case("reserve_inventory", "inventory.rejected", "unknown-sku", fail="inventory"),
    case(
        "reserve_inventory",
        "inventory.rejected",
        "insufficient-stock",
        items=[{"sku": "SKU-1", "qty": 101}],
    ),
    case("reserve_inventory", "inventory.rejected", "no-items", items=[]),
    case("charge_payment", "payment.charged"),
    case("charge_payment", "payment.declined", "limit-exceeded", fail="payment"),
    case("charge_payment", "payment.declined", "invalid-amount", total=0),
    case("schedule_shipping", "shipping.scheduled"),
    case("schedule_shipping", "shipping.failed", "no-delivery-area", fail="shipping"),
    case("book_flight", "travel.flight.booked"),
    case("book_flight", "travel.flight.unavailable", "route-unavailable", fail="flight"),
    case("rent_car", "travel.car.rented"),
    case("rent_car", "travel.car.unavailable", "no-cars", fail="car"),
]
UNDO = [
    (ORDER, "reserve_inventory", "inventory.released"),
    (ORDER, "charge_payment", "payment.refunded"),
    (TRAVEL, "book_flight", "travel.flight.cancelled"),
    (TRAVEL, "book_hotel", "travel.hotel.cancelled"),
    (TRAVEL, "rent_car", "travel.car.returned"),
]
APPS = [inventory.app, payment.app, shipping.app, flight.app, hotel.app, car.app]


@pytest.mark.parametrize(("definition", "step", "trigger", "expected", "reason"), RULES)
async def test_service_business_rules(
    js: JetStreamContext,
    running: Any,
    definition: SagaDefinition,
    step: str,
    trigger: dict[str, Any],
    expected: str,
    reason: str | None,
) -> None:
    await running(*APPS)
    saga_id = trigger.get("order_id") or trigger["trip_id"]
    subject, payload, headers = engine_command(definition, step, trigger, saga_id, DONE)
    await command(js, subject, payload, headers)
    [reply] = await wait_messages(js, expected)
    assert reply.headers is not None
    assert reply.headers["Saga-Step"] == step
    kv = await js.key_value(EFFECTS_BUCKET)
    key = token(f"{definition.name}:{saga_id}:{step}:step")
    effects = [k for k in await kv.keys() if k.endswith(key)] if reason is None else []
    if reason is not None:
        assert body(reply)["reason"] == reason
    else:
        assert len(effects) == 1, effects
        assert all(body(reply).values())


@pytest.mark.parametrize(("definition", "step", "expected"), UNDO, ids=[u[2] for u in UNDO])
async def test_every_undo_succeeds(
    js: JetStreamContext, running: Any, definition: SagaDefinition, step: str, expected: str
) -> None:
    await running(*APPS)
    trigger = orders.new_order(ORDER_ID) if definition is ORDER else trips.new_trip(TRIP_ID)
    saga_id = ORDER_ID if definition is ORDER else TRIP_ID
    subject, payload, headers = engine_command(
        definition, step, trigger, saga_id, DONE, compensation=True
    )
    await command(js, subject, payload, headers)
    [reply] = await wait_messages(js, expected)
    assert reply.headers is not None
    assert reply.headers["Saga-Kind"] == "compensation"
    assert set(DONE[step].items()) <= set(body(reply).items())


async def test_simulated_timeout_and_crash(js: JetStreamContext, running: Any) -> None:
    await running(payment.app)
    silent = {"order_id": "o-t", "amount": 10, "simulate": {"payment": "timeout"}}
    crashing = {"order_id": "o-c", "amount": 10, "simulate": {"charge_payment": "crash-once"}}
    await command(js, "payment.charge", silent, saga_headers("o-t", "charge_payment"))
    await command(js, "payment.charge", crashing, saga_headers("o-c", "charge_payment"))
    [charged] = await wait_messages(js, "payment.charged")
    assert charged.headers is not None
    assert charged.headers["Saga-Id"] == "o-c"
    await settled(js, "payment")
    assert len(await on_subject(js, "payment.charged")) == 1
    info = await js.consumer_info(EVENTS, "payment")
    assert info.delivered is not None
    assert info.delivered.consumer_seq == 3


async def test_a_service_runs_as_a_module_and_stops_on_sigterm(
    nats_server: EmbeddedServer, js: JetStreamContext
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.inventory",
        "--nats",
        nats_server.url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        subject, payload, headers = engine_command(
            ORDER, "reserve_inventory", orders.new_order("ord-m"), "ord-m"
        )
        await command(js, subject, payload, headers)
        await wait_messages(js, "inventory.reserved")
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, output.decode()
        assert "inventory: stopped" in output.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


RAW = ROOT / "docs" / "examples" / "raw_participant.py"


async def raw_copy(url: str, messages: int) -> asyncio.subprocess.Process:
    """The plain nats-py copy of the inventory; it exits after ``messages`` messages."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(RAW),
        "--nats",
        url,
        "--max-messages",
        str(messages),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def finished(process: asyncio.subprocess.Process) -> str:
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    return output.decode()


def reserve(order_id: str, attempt: int = 1) -> tuple[str, dict[str, Any], dict[str, str]]:
    subject, payload, headers = engine_command(
        ORDER, "reserve_inventory", orders.new_order(order_id), order_id
    )
    # A later attempt is the engine's retry after a step timeout: a new message id.
    return (
        subject,
        payload,
        {**headers, **saga_headers(order_id, "reserve_inventory", attempt, saga=ORDER.name)},
    )


async def test_the_raw_nats_example_of_the_protocol_works(
    nats_server: EmbeddedServer, js: JetStreamContext
) -> None:
    process = await raw_copy(nats_server.url, 2)
    good = orders.new_order("ord-r1")
    bad = orders.new_order("ord-r2", fail="inventory")
    for order in (good, bad):
        subject, payload, headers = engine_command(
            ORDER, "reserve_inventory", order, order["order_id"]
        )
        await command(js, subject, payload, headers)
    await finished(process)
    [reserved] = await on_subject(js, "inventory.reserved")
    [rejected] = await on_subject(js, "inventory.rejected")
    assert body(rejected) == {"reason": "unknown-sku", "sku": "UNKNOWN-9"}
    assert reserved.headers is not None
    assert reserved.headers["Saga-Id"] == "ord-r1"
    assert (
        reserved.headers["Nats-Msg-Id"] == "order-fulfilment:ord-r1:reserve_inventory:step:reply:1"
    )


async def test_the_raw_copy_runs_beside_the_sdk_copy_on_one_durable_and_one_ledger(
    nats_server: EmbeddedServer, js: JetStreamContext, nc: Client
) -> None:
    """Each copy replays the reply the other one stored, instead of answering anew."""
    calls: list[tuple[str, int]] = []
    sdk = App("inventory")

    @sdk.step("inventory.reserve", success="inventory.reserved", failure="inventory.rejected")
    async def reserve_here(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((ctx.saga_id, ctx.attempt))
        return {"reservation_id": f"sdk-{ctx.saga_id}"}

    @sdk.compensation("inventory.release", success="inventory.released")
    async def release_here(ctx: Context, payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((f"undo {ctx.saga_id}", ctx.attempt))
        return {}

    # The raw copy alone first: it creates the durable and answers ord-a.
    raw = await raw_copy(nats_server.url, 1)
    await command(js, *reserve("ord-a"))
    assert "ord-a:reserve_inventory:step: answered on inventory.reserved" in await finished(raw)
    [first] = await wait_messages(js, "inventory.reserved")
    assert body(first)["reservation_id"].startswith("res-")
    # The SDK copy joins (widening the filter) and gets the engine's retry of ord-a.
    async with sdk.running(nc, FAST):
        assert await filter_of(js, "inventory") == ["inventory.release", "inventory.reserve"]
        await command(js, *reserve("ord-a", attempt=2))
        await command(js, *reserve("ord-b"))
        await wait_messages(js, "inventory.reserved", 2)
        await settled(js, "inventory")
    assert calls == [("ord-b", 1)]  # ord-a came from the raw copy's stored reply
    # The raw copy again, alone: it replays the SDK's reply to ord-b and leaves the undo.
    raw = await raw_copy(nats_server.url, 2)
    await command(js, *reserve("ord-b", attempt=2))
    undo = engine_command(
        ORDER, "reserve_inventory", orders.new_order("ord-b"), "ord-b", DONE, compensation=True
    )
    await command(js, *undo)
    output = await finished(raw)
    assert "ord-b:reserve_inventory:step: replayed the stored reply" in output
    replies = {
        r.headers["Saga-Id"]: body(r)
        for r in await on_subject(js, "inventory.reserved")
        if r.headers
    }
    assert replies == {"ord-a": body(first), "ord-b": {"reservation_id": "sdk-ord-b"}}
    async with sdk.running(nc, FAST):  # the undo was left for a copy that handles it
        await wait_messages(js, "inventory.released")
        await settled(js, "inventory")
    assert calls[-1] == ("undo ord-b", 1)
    assert await on_subject(js, "saga.dlq.>", DLQ) == []


@pytest.mark.parametrize(
    ("payload", "headers", "code"),
    [
        (b'{"items": [], "total": NaN}', saga_headers(), "non-finite-number"),
        ({"items": []}, {**saga_headers(), "Saga-Attempt": "x"}, "malformed"),
        ({"items": []}, saga_headers(kind="compensation"), "malformed"),
        ({"items": []}, saga_headers(saga_id="x" * 257), "malformed"),
        ({"items": []}, {"Saga-Name": "s", "Saga-Step": "w"}, "no-saga-id"),
    ],
    ids=["nan", "attempt", "kind", "long-id", "no-id"],
)
async def test_the_raw_copy_dead_letters_as_the_sdk_does(
    nats_server: EmbeddedServer,
    js: JetStreamContext,
    payload: Any,
    headers: dict[str, str],
    code: str,
) -> None:
    raw = await raw_copy(nats_server.url, 1)
    await command(js, "inventory.reserve", payload, headers)
    assert f"dead-lettered inventory.reserve ({code})" in await finished(raw)
    [dead] = await on_subject(js, f"saga.dlq.{code}", DLQ)
    assert dead.headers is not None
    assert dead.headers["Saga-Dlq-Consumer"] == "inventory"
    assert await on_subject(js, "inventory.reserved") == []


# -- with the engine --------------------------------------------------------------------


async def test_the_services_drive_both_sagas_through_the_engine(nc: Client) -> None:
    """The whole protocol, engine included: each business rule ends its saga as designed."""
    engine = Engine(nc, {d.name: d for d in (ORDER, TRAVEL)}, EngineSettings(fetch_wait=0.2))
    await engine.start()
    apps = [app.running(nc, FAST) for app in APPS]
    try:
        for context in apps:
            await context.__aenter__()
        js = nc.jetstream()
        fails: list[str | None] = [None, "inventory", "payment", "shipping"]
        await orders.place_orders(js, [orders.new_order(f"o-{f or 'ok'}", fail=f) for f in fails])
        trip_fails: list[str | None] = [None, "flight", "hotel", "car"]
        await trips.request_trips(
            js, [trips.new_trip(f"t-{f or 'ok'}", fail=f) for f in trip_fails]
        )
        store = await instance_store(nc, engine.settings.topology)
        expected = {
            ("order-fulfilment", "o-ok"): ("completed", None),
            ("order-fulfilment", "o-inventory"): ("compensated", "unknown-sku"),
            ("order-fulfilment", "o-payment"): ("compensated", "limit-exceeded"),
            ("order-fulfilment", "o-shipping"): ("compensated", "no-delivery-area"),
            ("travel-booking", "t-ok"): ("completed", None),
            ("travel-booking", "t-flight"): ("compensated", "route-unavailable"),
            ("travel-booking", "t-hotel"): ("compensated", "hotel-full"),
            ("travel-booking", "t-car"): ("compensated", "no-cars"),
        }
        ended: dict[tuple[str, str], tuple[str, str | None]] = {}

        async def all_ended() -> bool:
            for name, saga_id in expected:
                state = await find_instance(store, saga_id, name)
                if state is not None and state.status.value in ("completed", "compensated"):
                    ended[name, saga_id] = (state.status.value, state.failure_reason)
            return len(ended) == len(expected)

        await wait_for(all_ended, timeout=30, message="every saga to end")
        assert ended == expected
    finally:
        await asyncio.gather(*(context.__aexit__(None, None, None) for context in apps))
        await engine.stop()
