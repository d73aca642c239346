"""The record's bytes in the store (``record_json``): smaller, and read as the full encoding.

A record written before (every field, nulls included) and one written now load to equal
models; a field left out loads as what it was, because every field that may be None has
None as its default; the nulls of user data (context, outbox, early replies) stay; the
readers of the raw JSON (the stranded-version scan, the SDK's stale-undo check) read it.
"""

from __future__ import annotations

import json
import types
import typing
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from saga.core.state import InstanceState, Outcome, StepState, StepStatus
from saga.definition import SagaDefinition
from saga.engine.versions import _parse
from saga.participant.stale import undo_unwanted
from saga.store.base import InstanceRecord, record_json
from tests.unit.test_core_properties import QUIET, definitions, play, trigger_payloads

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
FULL = InstanceRecord.__pydantic_serializer__.to_json
"""The encoding the store wrote before ``record_json`` (and still the core golden test's)."""


def _models(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[type[BaseModel]]:
    """``model`` and every model its fields hold, however nested in lists, dicts, unions."""
    seen.add(model)
    for info in model.model_fields.values():
        stack: list[Any] = [info.annotation]
        while stack:
            kind = stack.pop()
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                if kind not in seen:
                    _models(kind, seen)
            else:
                stack += typing.get_args(kind)
    return seen


def _admits_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return type(None) in typing.get_args(annotation)
    return annotation in (None, type(None), Any)


def test_every_field_that_may_be_none_defaults_to_none() -> None:
    """Else leaving a None field out would load it as its default: another value."""
    models = _models(InstanceRecord, set())
    assert {InstanceState, StepState, Outcome} <= models
    wrong = [
        f"{model.__name__}.{name}"
        for model in models
        for name, info in model.model_fields.items()
        if _admits_none(info.annotation) and (info.is_required() or info.default is not None)
    ]
    assert not wrong


def _record() -> InstanceRecord:
    nulls = {"a": None, "b": [None, {"c": None}]}
    state = InstanceState(
        saga_id="o-1",
        saga_name="shop",
        saga_version=2,
        started_at=T0,
        updated_at=T0,
        context={"trigger": {"x": None, "nested": nulls}, "steps": {"pay": {"id": None}}},
        steps={
            "pay": StepState(status=StepStatus.SUCCEEDED, attempt=1, started_at=T0),
            "ship": StepState(early=Outcome(succeeded=True, data={"late": None})),
        },
        timers={},
    )
    outbox = [{"type": "step", "data": {"v": None}, "headers": {"k": None}}]
    return InstanceRecord(state=state, outbox=outbox, origin="SAGA_EVENTS:7", trace={"t": "x"})


def test_model_fields_that_are_none_are_left_out_and_user_nulls_kept() -> None:
    record = _record()
    data = record_json(record)

    assert len(data) < len(FULL(record))
    loaded = json.loads(data)
    assert "admitted" not in loaded
    assert "finished_at" not in loaded["state"]
    assert "parent" not in loaded["state"]
    assert "running_since" not in loaded["state"]["steps"]["pay"]
    assert loaded["state"]["timers"] == {}  # an empty slot is not the None of old instances
    assert loaded["state"]["context"] == record.state.context
    assert loaded["state"]["steps"]["ship"]["early"]["data"] == {"late": None}
    assert loaded["outbox"] == record.outbox


def test_old_and_new_bytes_load_to_the_same_record() -> None:
    record = _record()
    assert InstanceRecord.model_validate_json(record_json(record)) == record
    assert InstanceRecord.model_validate_json(FULL(record)) == record


def test_the_raw_json_readers_read_the_new_bytes() -> None:
    """The stranded-version scan finds the state's own status by pattern; the SDK reads a
    step's undo status and attempt from the JSON (it does not import the models)."""
    record = _record()
    found = _parse(record_json(record))
    assert found is not None
    assert (found.saga_name, found.saga_version, found.status) == ("shop", 2, "running")
    record.state.steps["pay"].compensation_attempt = 3
    assert undo_unwanted(record_json(record), "pay", 1) == "attempt 3 replaced attempt 1"
    assert undo_unwanted(record_json(record), "pay", 3) is None


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(definition=definitions(), data=st.data(), trigger=trigger_payloads)
def test_any_state_loads_the_same_from_old_and_new_bytes(
    definition: SagaDefinition, data: st.DataObject, trigger: dict[str, Any]
) -> None:
    sim = play(definition, data, trigger)
    assert sim.state is not None
    record = InstanceRecord(state=sim.state, outbox=[{"data": trigger}], origin="S:1")

    new = InstanceRecord.model_validate_json(record_json(record))

    assert new == record
    assert InstanceRecord.model_validate_json(FULL(record)) == new
    assert json.loads(record_json(record))["outbox"] == [{"data": trigger}]
