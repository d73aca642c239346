"""A participant judges a redelivered undo from the instance record's JSON without the core's
models: the record the engine writes (``InstanceRecord``) must read the same way."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from saga.core.state import CompensationStatus, InstanceState, StepState
from saga.participant.stale import RESOLVED, undo_unwanted
from saga.store.base import InstanceRecord

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _record(compensation: CompensationStatus, attempt: int) -> bytes:
    state = InstanceState(
        saga_id="o-1",
        saga_name="order",
        saga_version=1,
        started_at=NOW,
        updated_at=NOW,
        steps={"charge": StepState(compensation=compensation, compensation_attempt=attempt)},
    )
    return InstanceRecord(state=state).model_dump_json().encode()


def test_the_statuses_that_end_an_undo_are_the_cores() -> None:
    assert {CompensationStatus(value) for value in RESOLVED} == {
        CompensationStatus.DONE,
        CompensationStatus.RESOLVED,
    }


@pytest.mark.parametrize(
    ("compensation", "current", "attempt", "expected"),
    [
        (CompensationStatus.DONE, 1, 1, "the undo of charge is done"),
        (CompensationStatus.RESOLVED, 1, 1, "the undo of charge is resolved"),
        (CompensationStatus.ACTIVE, 2, 1, "attempt 2 replaced attempt 1"),
        (CompensationStatus.ACTIVE, 1, 1, None),
        (CompensationStatus.FAILED, 2, 1, None),  # parked: a late success still unparks it
    ],
)
def test_an_undo_is_unwanted_once_done_resolved_or_replaced(
    compensation: CompensationStatus, current: int, attempt: int, expected: str | None
) -> None:
    assert undo_unwanted(_record(compensation, current), "charge", attempt) == expected


@pytest.mark.parametrize("record", [b"not json", b"[]", b'{"state": {}}', b'{"state": null}'])
def test_a_record_it_cannot_read_lets_the_undo_run(record: bytes) -> None:
    assert undo_unwanted(record, "charge", 1) is None


def test_a_step_missing_from_the_record_lets_the_undo_run() -> None:
    assert undo_unwanted(_record(CompensationStatus.DONE, 1), "refund", 1) is None
