"""Signals (``saga emit``: an operator answers an observed step) and ``wait`` steps (a
durable sleep), in validation, the core, the operator request and saga.testing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from saga.asyncapi import asyncapi_document
from saga.core import decide
from saga.core.commands import ScheduleTimer
from saga.core.events import SagaTriggered, Signal, Timer, TimerFired, TimerKind
from saga.core.state import Status, StepStatus
from saga.definition import parse_definition
from saga.definition.diagram import to_mermaid
from saga.engine.operator import ActionRequest
from saga.errors import DefinitionError
from saga.testing import HarnessError, SagaHarness, reply

T0 = datetime(2026, 1, 1, tzinfo=UTC)

APPROVAL = """
name: approval
trigger: {event: order.placed, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve, data: {id: trigger.id}}
    success: stock.reserved
    compensate: {publish: {event: stock.release, data: {id: trigger.id}}}
  - name: approve
    success: order.approved
    failure: order.rejected
    schema: {type: object, required: [by], properties: {by: {type: string}}}
    timeout: 2d
  - name: cool_off
    wait: 1h
  - name: ship
    publish: {event: ship.book, data: {id: trigger.id, approver: steps.approve.by}}
    success: ship.booked
"""


def harness() -> SagaHarness:
    h = SagaHarness.from_text(APPROVAL)
    h.on("stock.reserve", reply("stock.reserved"))
    h.on("ship.book", reply("ship.booked"))
    return h


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (
            "{name: nap, wait: 1h, success: nap.done}",
            "steps[1](nap).success: a 'wait' step only sleeps and succeeds: it cannot have 'success'",
        ),
        (
            "{name: nap, wait: 1h, compensate: {publish: {event: nap.undo}}}",
            "steps[1](nap).compensate: a 'wait' step only sleeps and succeeds: it cannot have "
            "'compensate'",
        ),
        ("{name: nap, wait: 0s}", "steps[1](nap).wait: "),
        ("{name: nap, timeout: 1h}", "steps[1](nap).success: missing required key 'success'"),
    ],
)
def test_validation_says_what_a_wait_step_cannot_have(step: str, message: str) -> None:
    text = (
        f"name: w\ntrigger: {{event: w.go}}\nsteps:\n  - {{name: a, success: a.ok}}\n  - {step}\n"
    )
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text, "w.yaml")
    assert any(message in str(p) for p in caught.value.problems), caught.value.problems


# -- the core -----------------------------------------------------------------------------------


def test_a_wait_step_sleeps_on_a_timer_and_succeeds_when_it_fires() -> None:
    definition = parse_definition(
        "name: w\ntrigger: {event: w.go}\nsteps:\n  - {name: nap, wait: 2h}\n"
        "  - {name: after, publish: {event: a.do}, success: a.ok}\n"
    )
    started = decide(definition, None, SagaTriggered("s"), T0)
    assert started.state is not None
    assert started.state.steps["nap"].status is StepStatus.ACTIVE
    timer = Timer(TimerKind.WAIT, "nap", 1)
    assert ScheduleTimer(timer, T0 + timedelta(hours=2)) in started.commands
    woke = decide(definition, started.state, TimerFired(timer), T0 + timedelta(hours=2))
    assert woke.state is not None
    assert woke.state.steps["nap"].status is StepStatus.SUCCEEDED
    assert woke.state.steps["after"].status is StepStatus.ACTIVE
    again = decide(definition, woke.state, TimerFired(timer), T0 + timedelta(hours=3))
    assert not again.changed  # a redelivered timer is stale


def test_a_signal_refused_changes_nothing_and_says_why() -> None:
    definition = parse_definition(APPROVAL)
    state = decide(definition, None, SagaTriggered("o1", {"id": "o1"}), T0).state
    cases = {
        "stock.reserved": "which is driven: its participant answers it",
        "nobody.listens": "no observed step of 'approval' answers to 'nobody.listens' "
        "(events: order.approved, order.rejected)",
    }
    for subject, why in cases.items():
        decision = decide(definition, state, Signal(subject), T0)
        assert not decision.changed
        assert decision.note is not None
        assert why in decision.note
    broken = decide(definition, state, Signal("order.approved", {"by": 7}), T0)
    assert broken.note == "cannot emit: schema-violation at $.by: 7 is not of type 'string'"


# -- the operator request -----------------------------------------------------------------------


def test_an_emit_request_needs_a_subject_and_finite_json() -> None:
    ok = ActionRequest(action="emit", saga_id="o1", subject="order.approved", data={"by": "a"})
    assert ok.event("http") == Signal("order.approved", {"by": "a"}, None, "http")
    for bad in (
        {"action": "emit", "saga_id": "o1"},
        {"action": "abort", "saga_id": "o1", "subject": "order.approved"},
        {"action": "retry", "saga_id": "o1", "data": {}},
        {"action": "emit", "saga_id": "o1", "subject": "order.*"},
        {"action": "emit", "saga_id": "o1", "subject": "a.b", "data": {"x": math.nan}},
    ):
        with pytest.raises(ValidationError):
            ActionRequest.model_validate(bad)


# -- saga.testing -------------------------------------------------------------------------------


async def test_an_approval_then_a_wait_in_the_harness() -> None:
    h = harness()
    sid = await h.start({"id": "o1"})
    waiting = await h.result(sid)
    assert waiting.state is not None
    assert waiting.state.steps["approve"].status is StepStatus.ACTIVE

    await h.signal("order.approved", {"by": "ann"}, reason="looks fine")
    sleeping = await h.result(sid)
    assert sleeping.state is not None
    assert sleeping.state.steps["cool_off"].status is StepStatus.ACTIVE
    assert "ship.book" not in sleeping.published_subjects

    await h.advance(3600)
    done = await h.result(sid)
    assert done.status == "completed"
    ship = next(m for m in done.commands if m.subject == "ship.book")
    assert ship.payload == {"id": "o1", "approver": "ann"}
    assert done.state is not None
    entry = next(e for e in done.state.history if e.event == "operator.signal")
    assert (entry.step, entry.detail, entry.actor) == (
        "approve",
        "order.approved: looks fine",
        "saga.testing",
    )


async def test_a_rejection_compensates_and_a_refused_signal_raises() -> None:
    h = harness()
    sid = await h.start({"id": "o2"})
    with pytest.raises(HarnessError, match="schema-violation at \\$: 'by' is a required"):
        await h.signal("order.approved", {})
    await h.signal("order.rejected", {"reason": "out of policy"})
    result = await h.result(sid)
    assert result.status == "compensated"
    assert result.state is not None
    assert result.state.failure_reason == "out of policy"
    assert "stock.release" in result.published_subjects
    with pytest.raises(HarnessError, match="instance is compensated"):
        await h.signal("order.approved", {"by": "late"})


async def test_settle_sleeps_through_a_wait() -> None:
    h = harness()
    sid = await h.start({"id": "o3"})
    await h.signal("order.approved", {"by": "bob"})
    result = await h.settle(sid)
    assert result.status == Status.COMPLETED


# -- the example in docs/examples ---------------------------------------------------------------


async def test_the_refund_approval_example_runs_as_its_description_says() -> None:
    h = SagaHarness.from_file(Path(__file__).parents[2] / "docs/examples/refund-approval.yaml")
    h.on("refunds.order.hold", reply("refunds.order.held"))
    h.on("refunds.pay", reply("refunds.paid", payment_id="p-1"))
    refused = await h.run({"refund_id": "r0", "order_id": "o0"})
    assert [d.code for d in refused.dead_letters] == ["schema-violation"]

    sid = await h.start({"refund_id": "r1", "order_id": "o1", "amount": 250})
    await h.signal("refunds.approved", {"by": "ann"})
    await h.advance(3599)
    assert "refunds.pay" not in (await h.result(sid)).published_subjects
    await h.advance(1)
    done = await h.result(sid)
    assert done.status == "completed"
    pay = next(m for m in done.commands if m.subject == "refunds.pay")
    assert pay.payload == {"order_id": "o1", "amount": 250, "approved_by": "ann"}

    late = await h.start({"refund_id": "r2", "order_id": "o2", "amount": 9})
    undone = await h.settle(late)  # nobody decides within 2d
    assert undone.status == "compensated"
    assert "refunds.order.release" in undone.published_subjects


def test_a_wait_reads_as_a_wait_in_the_diagram_and_asyncapi() -> None:
    definition = parse_definition(APPROVAL)
    diagram = to_mermaid(definition)
    assert 'cool_off(["cool_off<br/><small>waits 1h</small>"])' in diagram
    assert "cool_off -->|after 1h| ship" in diagram
    flow = asyncapi_document(definition)["info"]["description"]
    assert "**cool_off**: waits 1h (a durable timer), then succeeds." in flow
