"""The invariants checker: clean runs pass, and every rule can fail on crafted facts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from saga.core import (
    CompensationSucceeded,
    Event,
    HistoryEntry,
    InstanceState,
    SagaTriggered,
    Status,
    StepFailed,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
    decide,
)
from saga.definition import SagaDefinition, parse_definition
from saga.testing.invariants import CommandRecord, EffectRecord, Report, as_dict, check

SHOP = parse_definition(
    """
name: shop
trigger: {event: shop.ordered, id: {field: id}}
steps:
  - name: reserve
    publish: {event: stock.reserve}
    success: stock.reserved
    failure: stock.rejected
    timeout: 1s
    compensate: {publish: {event: stock.release}, success: stock.released}
  - name: charge
    publish: {event: pay.charge}
    success: pay.charged
    failure: pay.declined
    timeout: 1s
    compensate: {publish: {event: pay.refund}, success: pay.refunded}
  - name: ship
    publish: {event: ship.book}
    success: ship.booked
    failure: ship.failed
    timeout: 1s
"""
)
DEFS = {"shop": SHOP}
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(*events: Event, definition: SagaDefinition = SHOP) -> InstanceState:
    """The state the pure core reaches after ``events`` (a trigger first)."""
    state = None
    for i, event in enumerate((SagaTriggered("s-1", {"id": "s-1"}), *events)):
        decision = decide(definition, state, event, T0 + timedelta(seconds=i))
        assert decision.error is None
        state = decision.state
    assert state is not None
    return state


class EffectLog:
    """EffectLog in the order given: each gets the next KV revision."""

    def __init__(self) -> None:
        self.records: list[EffectRecord] = []

    def add(self, step: str, kind: str = "step", saga_id: str = "s-1") -> EffectLog:
        seq = len(self.records) + 1
        self.records.append(EffectRecord(seq, "svc", f"{step}-{kind}", "shop", saga_id, step, kind))
        return self

    def undo(self, step: str) -> EffectLog:
        return self.add(step, "compensation")


def rules(report: Report) -> list[str]:
    return sorted(v.rule for v in report.violations)


COMPLETED = (StepSucceeded("reserve"), StepSucceeded("charge"), StepSucceeded("ship"))
SHIP_FAILS = (StepSucceeded("reserve"), StepSucceeded("charge"), StepFailed("ship", "no"))
UNDONE = (CompensationSucceeded("charge"), CompensationSucceeded("reserve"))


def test_a_completed_run_passes() -> None:
    fx = EffectLog().add("reserve").add("charge").add("ship")
    report = check([run(*COMPLETED)], fx.records, DEFS, expected=[("shop", "s-1")])
    assert report.ok, report.violations
    assert (report.sagas, report.effects, report.undos) == (1, 3, 0)
    assert report.statuses == {"completed": 1}


def test_a_compensated_run_undoes_newest_first_and_passes() -> None:
    fx = EffectLog().add("reserve").add("charge").undo("charge").undo("reserve")
    report = check([run(*SHIP_FAILS, *UNDONE)], fx.records, DEFS)
    assert report.ok, report.violations
    assert report.undos == 2
    assert "0 violation(s)" in report.summary()


def test_running_or_compensating_instances_are_stuck() -> None:
    running = run(StepSucceeded("reserve"))
    compensating = run(*SHIP_FAILS).model_copy(update={"saga_id": "s-2"})
    report = check([running, compensating], EffectLog().add("reserve").records, DEFS)
    assert [v.detail for v in report.violations if v.rule == "stuck"] == [
        "still running",
        "still compensating",
    ]


def test_parked_is_an_allowed_end() -> None:
    parked = run(*SHIP_FAILS).model_copy(update={"status": Status.PARKED})
    fx = EffectLog().add("reserve").add("charge").undo("charge")
    assert check([parked], fx.records, DEFS).ok


def test_an_expected_saga_without_instance_is_missing() -> None:
    report = check([run(*COMPLETED)], [], DEFS, expected=[("shop", "s-1"), ("shop", "lost")])
    assert [(v.rule, v.saga) for v in report.violations] == [("missing", "shop/lost")]


def test_an_effect_recorded_twice_is_a_duplicate() -> None:
    fx = EffectLog().add("reserve").add("reserve").add("charge").add("ship")
    assert rules(check([run(*COMPLETED)], fx.records, DEFS)) == ["duplicate-effect"]


def test_a_command_stored_twice_is_a_duplicate() -> None:
    commands = [
        CommandRecord(1, "stock.reserve", "shop:s-1:reserve:step:1"),
        CommandRecord(2, "pay.charge", "shop:s-1:charge:step:1"),
        CommandRecord(3, "stock.reserve", "shop:s-1:reserve:step:1"),
    ]
    report = check([run(*COMPLETED)], [], DEFS, commands)
    assert rules(report) == ["duplicate-command"]
    assert report.commands == 3


def test_undoing_a_step_that_failed_is_caught() -> None:
    state = run(StepSucceeded("reserve"), StepFailed("charge", "declined"), *UNDONE[1:])
    fx = EffectLog().add("reserve").undo("charge").undo("reserve")
    report = check([state], fx.records, DEFS)
    assert rules(report) == ["undo-without-success"]
    assert "charge was undone but is failed" in report.violations[0].detail


def test_an_undo_before_its_effect_or_without_one_is_caught() -> None:
    state = run(*SHIP_FAILS, *UNDONE)
    early = EffectLog().add("reserve").undo("charge").add("charge").undo("reserve")
    assert "undo-without-success" in rules(check([state], early.records, DEFS))
    absent = EffectLog().add("reserve").undo("charge").undo("reserve")
    report = check([state], absent.records, DEFS)
    assert any("no recorded effect" in v.detail for v in report.violations)


def test_undos_out_of_order_are_caught() -> None:
    fx = EffectLog().add("reserve").add("charge").undo("reserve").undo("charge")
    report = check([run(*SHIP_FAILS, *UNDONE)], fx.records, DEFS)
    assert rules(report) == ["undo-order"]


def test_a_forward_effect_after_the_first_undo_is_caught() -> None:
    fx = EffectLog().add("reserve").add("charge").undo("charge").add("ship").undo("reserve")
    report = check([run(*SHIP_FAILS, *UNDONE)], fx.records, DEFS)
    assert rules(report) == ["forward-after-undo"]


def test_the_engine_driving_a_step_after_compensation_began_is_caught() -> None:
    state = run(*SHIP_FAILS, *UNDONE)
    forged = HistoryEntry(at=T0, event="step.started", step="ship", attempt=2)
    state = state.model_copy(update={"history": [*state.history, forged]})
    fx = EffectLog().add("reserve").add("charge").undo("charge").undo("reserve")
    report = check([state], fx.records, DEFS)
    assert rules(report) == ["forward-after-undo"]
    assert report.violations[0].detail.startswith("engine: step.started ship")


def test_undo_effects_in_a_completed_saga_are_caught() -> None:
    fx = EffectLog().add("reserve").add("charge").add("ship").undo("reserve")
    assert rules(check([run(*COMPLETED)], fx.records, DEFS)) == ["undo-in-completed"]


def test_a_compensated_saga_that_kept_an_effect_is_caught() -> None:
    fx = EffectLog().add("reserve").add("charge").undo("charge")
    report = check([run(*SHIP_FAILS, *UNDONE)], fx.records, DEFS)
    assert rules(report) == ["not-undone"]
    assert report.violations[0].detail.startswith("reserve took effect")


def test_a_late_success_is_undone_after_the_undo_in_progress() -> None:
    """charge times out, reserve's undo starts, then charge's success arrives late."""
    state = run(
        StepSucceeded("reserve"),
        TimerFired(Timer(TimerKind.STEP_TIMEOUT, "charge", 1)),
        StepSucceeded("charge"),
        CompensationSucceeded("reserve"),
        CompensationSucceeded("charge"),
    )
    assert state.status.value == "compensated"
    assert state.completed == ["reserve", "charge"]
    fx = EffectLog().add("reserve").undo("reserve").add("charge").undo("charge")
    assert check([state], fx.records, DEFS).ok
    never_undone = EffectLog().add("reserve").undo("reserve").add("charge")
    assert rules(check([state], never_undone.records, DEFS)) == ["not-undone"]


def test_effects_of_other_sagas_do_not_mix() -> None:
    fx = (
        EffectLog().add("reserve").add("charge").add("ship").add("reserve", "compensation", "other")
    )
    report = check([run(*COMPLETED)], fx.records, DEFS)
    assert report.ok  # an undo of an unknown instance is not this saga's problem


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("order-fulfilment:o-1:reserve_inventory:step", ("o-1", "reserve_inventory", "step")),
        ("travel-booking:a:b:c:book_hotel:compensation", ("a:b:c", "book_hotel", "compensation")),
        ("SAGA_EVENTS:42", None),
        ("shop:s-1:x:other", None),
    ],
)
def test_effect_records_are_read_from_their_idempotency_key(
    key: str, parsed: tuple[str, str, str] | None
) -> None:
    value = json.dumps({"service": "svc", "effect": "e", "idempotency_key": key, "result": {}})
    record = EffectRecord.from_record(7, value.encode())
    if parsed is None:
        assert record is None
    else:
        assert record is not None
        assert (record.saga_id, record.step, record.kind) == parsed
        assert record.sequence == 7


def test_unreadable_effect_records_are_skipped() -> None:
    assert EffectRecord.from_record(1, b"not json") is None
    assert EffectRecord.from_record(1, b'{"effect": "x"}') is None


def test_a_report_is_json_ready() -> None:
    fx = EffectLog().add("reserve").add("reserve")
    doc = as_dict(check([run(*COMPLETED)], fx.records, DEFS))
    json.dumps(doc)
    assert doc["violations"] == ["duplicate-effect: shop/s-1: svc.reserve-step of reserve/step x2"]
