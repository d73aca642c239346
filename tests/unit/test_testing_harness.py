"""saga.testing in memory: scripted answers, the controllable clock, emitted events, mistakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

import saga.testing
from saga.testing import (
    HarnessError,
    Message,
    Reply,
    SagaHarness,
    UnhandledCommand,
    fail,
    no_reply,
    reply,
    sequence,
)

SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    failure: stock.rejected
    keep: [reservation]
    timeout: 1s
    compensate:
      publish: {event: stock.release, data: {reservation: steps.reserve.reservation}}
      success: stock.released
      failure: stock.release-failed
      timeout: 1s
      retry: {attempts: 2, backoff: 100ms, on_failure: true}
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id, amount: trigger.amount}}
    success: pay.charged
    failure: pay.declined
    timeout: 1s
    retry: {attempts: 3, backoff: 100ms}
    compensate:
      publish: {event: pay.refund, data: {id: trigger.id}}
  - name: ship
    publish: {event: ship.book, data: {id: trigger.id}}
    success: ship.booked
    failure: ship.failed
    timeout: 1s
"""

WATCH = """
name: watch
trigger: {event: watch.start}
{deadline}
steps:
  - name: first
    publish: {event: first.do}
    success: first.done
    compensate: {publish: {event: first.undo}}
  - name: second
    success: second.done
    failure: second.failed
"""


def shop() -> SagaHarness:
    h = SagaHarness.from_text(SHOP)
    h.on("stock.reserve", reply("stock.reserved", reservation="r1"))
    h.on("stock.release", reply("stock.released"))
    h.on("pay.charge", reply("pay.charged"))
    h.on("ship.book", reply("ship.booked"))
    return h


def watch(deadline: str = "deadline: 1m") -> SagaHarness:
    h = SagaHarness.from_text(WATCH.replace("{deadline}", deadline))
    return h.on("first.do", reply("first.done"))


def test_the_public_api_is_pinned() -> None:
    assert sorted(saga.testing.__all__) == [
        "Answer",
        "Behaviour",
        "DeadLettered",
        "HarnessError",
        "Message",
        "NoAnswer",
        "Reply",
        "Responder",
        "Role",
        "SagaHarness",
        "SagaResult",
        "ScenarioTimeout",
        "UnhandledCommand",
        "fail",
        "no_reply",
        "reply",
        "sequence",
    ]
    assert all(hasattr(saga.testing, name) for name in saga.testing.__all__)


# -- answers ----------------------------------------------------------------------------------


async def test_a_callable_handler_sees_the_command_and_decides() -> None:
    seen: list[Message] = []

    def charge(command: Message) -> Reply:
        seen.append(command)
        if command.payload["amount"] > 100:
            return fail("pay.declined", "limit", limit=100)
        return reply("pay.charged")

    h = shop().on("pay.charge", charge)

    small = await h.run({"id": "a", "amount": 5})
    large = await h.run({"id": "b", "amount": 500})

    assert (small.status, large.status) == ("completed", "compensated")
    assert [(m.saga_id, m.step, m.attempt) for m in seen] == [
        ("a", "charge", 1),
        ("b", "charge", 1),
    ]
    declined = next(m for m in large.answers if m.subject == "pay.declined")
    assert declined.payload == {"reason": "limit", "limit": 100}


async def test_an_async_handler_is_awaited() -> None:
    async def reserve(command: Message) -> Reply:
        return reply("stock.reserved", {"reservation": f"r-{command.payload['id']}"})

    result = await shop().on("stock.reserve", reserve).run({"id": "a", "amount": 1})

    assert result.context["steps"]["reserve"] == {"reservation": "r-a"}


async def test_a_handler_returning_something_else_is_a_type_error() -> None:
    h = shop().on("pay.charge", lambda command: "pay.charged")  # type: ignore[arg-type, return-value]

    with pytest.raises(TypeError, match="reply"):
        await h.run({"id": "a", "amount": 1})


async def test_sequence_answers_in_turn_per_saga_and_repeats_the_last() -> None:
    h = shop().on("pay.charge", sequence(no_reply(), no_reply(), reply("pay.charged")))

    first = await h.run({"id": "a", "amount": 1})
    second = await h.run({"id": "b", "amount": 1})

    for result in (first, second):
        assert [c.attempt for c in result.commands if c.subject == "pay.charge"] == [1, 2, 3]
        assert result.status == "completed"


def test_answer_helpers_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="negative"):
        reply("x").after(-1)
    with pytest.raises(ValueError, match="at least one"):
        sequence()


async def test_a_fire_and_forget_undo_needs_no_handler() -> None:
    h = shop().on("ship.book", fail("ship.failed", "no-courier"))

    result = await h.run({"id": "a", "amount": 1})

    assert result.status == "compensated"
    assert result.published_subjects[-2:] == ["pay.refund", "stock.release"]


async def test_a_command_without_handler_fails_the_test_with_a_hint() -> None:
    h = SagaHarness.from_text(SHOP).on("stock.reserve", reply("stock.reserved", reservation="r"))

    with pytest.raises(UnhandledCommand, match=r"no handler for 'pay.charge'.*harness.on"):
        await h.run({"id": "a", "amount": 1})


def test_scripting_a_subject_the_saga_does_not_know_is_refused() -> None:
    h = SagaHarness.from_text(SHOP)
    with pytest.raises(HarnessError, match="not a subject of saga 'shop'"):
        h.on("stock.reserv", reply("stock.reserved"))
    with pytest.raises(HarnessError, match=r"does not consume 'stock\.reserve'"):
        h.on("stock.reserve", reply("stock.reserve"))


async def test_a_handler_answering_on_a_subject_the_saga_ignores_is_refused() -> None:
    h = shop().on("pay.charge", lambda command: reply("pay.charge-ok"))

    with pytest.raises(HarnessError, match=r"does not consume 'pay\.charge-ok'"):
        await h.run({"id": "a", "amount": 1})


# -- the clock --------------------------------------------------------------------------------


async def test_run_until_idle_handles_messages_without_moving_the_clock() -> None:
    h = shop().on("stock.reserve", no_reply())
    t0 = h.now

    await h.start({"id": "a", "amount": 1})
    await h.run_until_idle()

    assert h.now == t0
    assert (await h.result()).status == "running"


async def test_advance_fires_due_timers_in_order_across_sagas() -> None:
    h = shop().on("stock.reserve", no_reply())
    await h.start({"id": "a", "amount": 1})
    await h.advance(0.5)
    await h.start({"id": "b", "amount": 1})

    await h.advance(0.6)  # a's timeout (at 1.0s) fired, b's (at 1.5s) not yet

    a, b = await h.result("a"), await h.result("b")
    assert (a.status, b.status) == ("compensated", "running")
    await h.advance(0.4)
    assert (await h.result("b")).status == "compensated"


async def test_an_answer_to_an_earlier_attempt_counts_while_the_retry_waits() -> None:
    h = shop().on("pay.charge", reply("pay.charged").after(1.5))

    result = await h.run({"id": "a", "amount": 1})

    assert result.status == "completed"
    charges = [c for c in result.commands if c.subject == "pay.charge"]
    assert [c.attempt for c in charges] == [1, 2]
    assert [m.msg_id for m in result.answers if m.subject == "pay.charged"] == [
        "shop:a:charge:step:reply:1"
    ]
    await h.advance(2)  # the answer to attempt 2 arrives too, and changes nothing
    later = await h.result()
    assert [m.msg_id for m in later.answers if m.subject == "pay.charged"][-1] == (
        "shop:a:charge:step:reply:2"
    )
    assert (later.status, later.commands) == ("completed", result.commands)


async def test_a_failed_undo_is_retried_on_failure_then_parks() -> None:
    h = shop().on("ship.book", fail("ship.failed", "x"))
    h.on("stock.release", fail("stock.release-failed", "locked"))

    result = await h.run({"id": "a", "amount": 1})

    assert result.status == "parked"
    releases = [c for c in result.commands if c.subject == "stock.release"]
    assert [(c.kind, c.attempt) for c in releases] == [("compensation", 1), ("compensation", 2)]


async def test_the_deadline_compensates_a_saga_waiting_on_an_observed_step() -> None:
    h = watch()
    t0 = h.now

    result = await h.run()

    assert result.saga_id == "watch-1"
    assert result.status == "compensated"
    assert result.failure_reason == "deadline exceeded"
    assert result.published_subjects == ["first.do", "first.undo"]
    assert h.now - t0 == timedelta(minutes=1)


async def test_settle_returns_when_nothing_more_can_happen() -> None:
    h = watch(deadline="")

    result = await h.run()

    assert result.status == "running"
    assert result.step("second").status == "active"


# -- emitting events ----------------------------------------------------------------------------


async def test_an_emitted_outcome_carries_the_observed_steps_headers() -> None:
    h = watch()
    await h.start()

    await h.emit("second.done", {"ok": True})

    result = await h.result()
    assert result.status == "completed"
    emitted = result.answers[-1]
    assert emitted.headers == {
        "Saga-Id": "watch-1",
        "Saga-Name": "watch",
        "Saga-Step": "second",
        "Saga-Kind": "step",
        "Nats-Msg-Id": "watch:watch-1:second:step:emit:2",
    }


async def test_a_repeated_msg_id_is_dropped_like_the_server_would() -> None:
    h = watch()
    await h.start()

    await h.emit("second.failed", {"reason": "x"}, headers={"Nats-Msg-Id": "once"})
    await h.emit("second.failed", {"reason": "y"}, headers={"Nats-Msg-Id": "once"})

    result = await h.result()
    assert [m.payload for m in result.answers if m.subject == "second.failed"] == [{"reason": "x"}]


async def test_an_event_for_an_unknown_instance_is_dead_lettered() -> None:
    h = watch()
    await h.start()

    await h.emit("second.done", saga_id="nobody")

    assert [(d.code, d.message.subject) for d in h.dead_letters] == [
        ("unknown-instance", "second.done")
    ]
    assert (await h.result("nobody")).dead_letters == tuple(h.dead_letters)


async def test_emit_refuses_what_it_cannot_send() -> None:
    h = watch()
    with pytest.raises(HarnessError, match="no saga started yet"):
        await h.emit("second.done")
    await h.start()
    with pytest.raises(HarnessError, match=r"does not consume 'first\.do'"):
        await h.emit("first.do")


async def test_the_trigger_keeps_its_id_rule_and_an_explicit_id_becomes_a_header() -> None:
    h = shop()

    derived = await h.run({"id": "a", "amount": 1})
    explicit = await h.run({"id": "a", "amount": 1}, saga_id="other")

    assert "Saga-Id" not in derived.messages[0].headers
    assert explicit.saga_id == "other"
    assert explicit.messages[0].headers["Saga-Id"] == "other"
    assert explicit.status == "completed"


async def test_the_result_prints_a_transcript_with_times() -> None:
    result = await shop().on("stock.reserve", no_reply()).run({"id": "a", "amount": 1})

    text = str(result)

    assert text.splitlines()[0] == "saga a: compensated (reserve: timed out after 1 attempt(s))"
    assert "    1.000s  status              saga.status.shop.compensated" in text


async def test_nats_mode_must_be_opened_explicitly() -> None:
    h = SagaHarness.from_text(SHOP, nats=True)

    with pytest.raises(HarnessError, match="async with"):
        await h.run({"id": "a"})
