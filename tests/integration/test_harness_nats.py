"""saga.testing with ``nats=True``: the same scenarios, the same transcript as in memory.

Each scenario runs in both transports and asserts one expectation, so the in-memory
harness cannot drift from what the real engine does on a real nats-server. Timeouts are
short here because on the server they take real time; no scenario races an answer against
a timer, since the server fires timers up to about 250 ms late.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from saga.testing import SagaHarness, SagaResult, UnhandledCommand, fail, no_reply, reply, sequence

SHOP = """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id, sku: trigger.sku}}
    success: stock.reserved
    failure: stock.rejected
    keep: [reservation]
    timeout: 400ms
    retry: {attempts: 2, backoff: 100ms}
    compensate:
      publish: {event: stock.release, data: {reservation: steps.reserve.reservation}}
      success: stock.released
      timeout: 2s
  - name: charge
    publish: {event: pay.charge, data: {id: trigger.id}}
    success: pay.charged
    failure: pay.declined
    compensate: {publish: {event: pay.refund, data: {id: trigger.id}}}
  - name: notify
    success: notify.sent
    failure: notify.failed
    timeout: 400ms
"""

ORDER = {"id": "o1", "sku": "A"}
Commands = list[tuple[str, str | None, str | None, int | None]]


def harness(nats: bool) -> SagaHarness:
    h = SagaHarness.from_text(SHOP, nats=nats, timeout=15)
    h.on("stock.reserve", reply("stock.reserved", reservation="r1"))
    h.on("stock.release", reply("stock.released"))
    h.on("pay.charge", reply("pay.charged"))
    return h


async def happy(h: SagaHarness) -> tuple[str, Commands]:
    h.on("pay.charged", reply("notify.sent"))  # the notifier reacts on its own
    result = await h.run(ORDER)
    return str(result.status), commands(result)


async def retried_then_declined(h: SagaHarness) -> tuple[str, Commands]:
    h.on("stock.reserve", sequence(no_reply(), reply("stock.reserved", reservation="r1")))
    h.on("pay.charge", fail("pay.declined", "limit"))
    result = await h.run(ORDER)
    assert result.failure_reason == "limit"
    return str(result.status), commands(result)


async def observed_step_times_out(h: SagaHarness) -> tuple[str, Commands]:
    result = await h.run(ORDER)
    assert result.failure_step == "notify"
    return str(result.status), commands(result)


async def observed_step_emitted_by_the_test(h: SagaHarness) -> tuple[str, Commands]:
    await h.start(ORDER)
    await h.emit("notify.failed", {"reason": "bounced"})
    result = await h.settle()
    assert result.failure_reason == "bounced"
    return str(result.status), commands(result)


async def slow_answer(h: SagaHarness) -> tuple[str, Commands]:
    h.on("stock.reserve", reply("stock.reserved", reservation="r1").after(0.1))
    h.on("pay.charged", reply("notify.sent"))
    result = await h.run(ORDER)
    return str(result.status), commands(result)


def commands(result: SagaResult) -> Commands:
    return [(c.subject, c.step, c.kind, c.attempt) for c in result.commands]


Scenario = Callable[[SagaHarness], Awaitable[tuple[str, Commands]]]
FORWARD: Commands = [
    ("stock.reserve", "reserve", "step", 1),
    ("pay.charge", "charge", "step", 1),
]
UNDO: Commands = [
    ("pay.refund", "charge", "compensation", 1),
    ("stock.release", "reserve", "compensation", 1),
]
SCENARIOS: dict[str, tuple[Scenario, str, Commands]] = {
    "happy": (happy, "completed", FORWARD),
    "retried-then-declined": (
        retried_then_declined,
        "compensated",
        [
            ("stock.reserve", "reserve", "step", 1),
            ("stock.reserve", "reserve", "step", 2),
            ("pay.charge", "charge", "step", 1),
            ("stock.release", "reserve", "compensation", 1),
        ],
    ),
    "observed-timeout": (observed_step_times_out, "compensated", FORWARD + UNDO),
    "slow-answer": (
        slow_answer,
        "completed",
        FORWARD,
    ),
    "observed-emitted": (observed_step_emitted_by_the_test, "compensated", FORWARD + UNDO),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("nats", [False, True], ids=["memory", "nats"])
async def test_both_transports_publish_the_same_commands(name: str, nats: bool) -> None:
    scenario, status, expected = SCENARIOS[name]
    async with harness(nats) as h:
        assert await scenario(h) == (status, expected)


async def test_on_nats_the_transcript_equals_the_one_in_memory() -> None:
    """Payloads and every header too, message for message, in wire order."""
    transcripts = []
    for nats in (False, True):
        async with harness(nats) as h:
            h.on("pay.charge", fail("pay.declined", "limit"))
            result = await h.run(ORDER)
            transcripts.append([(m.subject, m.payload, m.headers) for m in result.messages])
    memory, real = transcripts
    assert real == memory
    assert [subject for subject, _, _ in real][-1] == "saga.status.shop.compensated"


async def test_on_nats_an_unhandled_command_fails_the_test_too() -> None:
    async with SagaHarness.from_text(SHOP, nats=True, timeout=15) as h:
        h.on("stock.reserve", reply("stock.reserved", reservation="r1"))
        with pytest.raises(UnhandledCommand, match=r"pay\.charge"):
            await h.run(ORDER)


async def test_on_nats_settle_returns_when_nothing_more_can_happen() -> None:
    waiting = SHOP[: SHOP.rindex("    timeout: 400ms")]  # notify waits for ever
    async with SagaHarness.from_text(waiting, nats=True, timeout=15) as h:
        h.on("stock.reserve", reply("stock.reserved", reservation="r1"))
        h.on("pay.charge", reply("pay.charged"))
        result = await h.run(ORDER)  # would raise ScenarioTimeout if it waited for nothing
    assert result.status == "running"
    assert result.step("notify").status == "active"
