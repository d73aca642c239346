"""The working copy ``decide`` makes of its input shares nothing a transition may change."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from saga.core.commands import PublishEvent, ReleaseSlot
from saga.core.decide import (
    Decision,
    changed_decision,
    decide,
    history_entry,
    new_instance,
    working_copy,
)
from saga.core.events import SagaTriggered, StepSucceeded
from saga.core.state import (
    CompensationStatus,
    HistoryEntry,
    InstanceState,
    Outcome,
    ParentLink,
    Status,
    StepState,
    StepStatus,
)
from saga.definition.loader import load_definition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def full_state() -> InstanceState:
    """Every field set to something other than its default, nested data included."""
    early = Outcome(succeeded=True, data={"items": [{"sku": "a"}], "n": 1}, reason="why")
    step = StepState(
        status=StepStatus.ACTIVE,
        attempt=2,
        started_at=T0,
        running_since=T0,
        slot="$JS.ACK.SAGA_EVENTS.c.1.9.9.1.0",
        finished_at=T0,
        reason="slow",
        early=early,
        compensation=CompensationStatus.QUEUED,
        compensation_attempt=1,
        compensation_started_at=T0,
        compensation_finished_at=T0,
        compensation_reason="nope",
    )
    return InstanceState(
        saga_id="o-1",
        saga_name="shop",
        saga_version=2,
        status=Status.COMPENSATING,
        started_at=T0,
        updated_at=T0,
        finished_at=T0,
        context={"trigger": {"items": [{"sku": "a", "qty": [1, 2]}]}, "steps": {"a": {"x": 1}}},
        steps={"a": step, "b": StepState(attempt=1)},
        completed=["a"],
        compensation_queue=["a"],
        failure_step="a",
        failure_reason="declined",
        run=1,
        history=[HistoryEntry(at=T0, event="saga.started")],
        timers={"step-timeout.a.2": T0},
        wake_at=T0,
        parent=ParentLink(saga="order", saga_id="o-0", step="pay", attempt=1),
    )


def test_the_sample_sets_every_field() -> None:
    """A new field fails here first: set it below, and make sure working_copy copies it."""
    for model, sample in ((InstanceState, full_state()), (StepState, full_state().steps["a"])):
        for name, info in model.model_fields.items():
            default = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]
            assert getattr(sample, name) != default, f"{model.__name__}.{name} is not in the sample"


def shared_mutables(a: Any, b: Any, path: str = "state") -> list[str]:
    """Paths where ``a`` and ``b`` are the same mutable object."""
    frozen_model = isinstance(a, BaseModel) and a.model_config.get("frozen", False)
    mutable = isinstance(a, dict | list | set | bytearray) or (
        isinstance(a, BaseModel) and not frozen_model
    )
    found = [path] if mutable and a is b else []
    if isinstance(a, BaseModel):
        for name in type(a).model_fields:
            found += shared_mutables(getattr(a, name), getattr(b, name), f"{path}.{name}")
    elif isinstance(a, dict):
        for key in a:
            found += shared_mutables(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found += shared_mutables(x, y, f"{path}[{i}]")
    return found


SHARED = ("state.steps['", "state.context['trigger']", "state.context['steps']['", "state.timers")
"""What the working copy shares with its input: the step states (a transition copies one
before changing it), the context's JSON values (a transition replaces them, never changes
one in place) and the armed timers (``settle`` sets new ones)."""


def test_working_copy_is_equal_and_shares_only_what_a_transition_replaces() -> None:
    state = full_state()
    copy = working_copy(state)
    assert copy == state
    shared = shared_mutables(state, copy)
    assert [path for path in shared if not path.startswith(SHARED)] == []
    assert "state.context['trigger']" in shared  # the test would pass with nothing shared


def test_changing_the_copy_as_a_transition_does_leaves_the_original_as_it_was() -> None:
    state = full_state()
    before = state.model_dump()
    copy = working_copy(state)
    copy.status = Status.RUNNING
    copy.steps["a"] = copy.steps["a"].model_copy(update={"attempt": 9})
    copy.context["trigger"] = {}
    copy.context["steps"]["b"] = {}
    copy.context["steps"].pop("a")
    copy.completed.append("b")
    copy.compensation_queue.pop()
    copy.history.append(HistoryEntry(at=T0, event="x"))
    assert copy.timers is not None
    copy.timers = {**copy.timers, "deadline._.1": T0}
    assert state.model_dump() == before


def test_no_transition_changes_a_value_of_the_context_in_place() -> None:
    """What lets the working copy share the context's values: every transition of the
    golden walks (every kind of event, every feature) leaves its input's context as it was."""
    from tests.unit.test_core_golden import WALKS, definitions, walk

    for definition in definitions().values():
        for seed in range(WALKS):
            seen: list[tuple[InstanceState, Any]] = []
            for decision in walk(definition, seed):
                if decision.state is not None:
                    seen.append((decision.state, decision.state.model_dump(mode="json")))
            for state, dumped in seen:  # all decided: later ones changed none of them
                assert state.model_dump(mode="json") == dumped


def test_a_transition_copies_the_steps_it_changes_and_shares_the_others() -> None:
    """``decide`` leaves its input as it was: the step it changes is a copy, a step it does
    not touch is the input's own (never changed, so safe to share)."""
    definition = load_definition(Path(__file__).parents[2] / "bench/definitions/bench-order.yaml")
    first, second, third = (s.name for s in definition.steps)
    started = decide(definition, None, SagaTriggered("o-1", {"order_id": "o-1"}), T0).state
    assert started is not None
    before = started.model_dump()
    after = decide(definition, started, StepSucceeded(first, {}, attempt=1), T0).state
    assert after is not None
    assert started.model_dump() == before
    assert after.steps[first].status is StepStatus.SUCCEEDED
    assert after.steps[second].status is StepStatus.ACTIVE
    assert after.steps[first] is not started.steps[first]
    assert after.steps[second] is not started.steps[second]
    assert after.steps[third] is started.steps[third]
    assert after.steps is not started.steps


def test_the_copied_models_have_no_extra_fields_or_private_attributes() -> None:
    """``decide``'s fast copy (``_model_copy``) copies declared fields only."""
    for model in (InstanceState, StepState, Outcome):
        assert model.model_config.get("extra") in (None, "ignore", "forbid")
        assert not model.__private_attributes__


def test_the_fast_copy_equals_pydantics_own() -> None:
    state = full_state()
    copied = working_copy(state)
    assert copied == state.model_copy(deep=True)
    assert copied.model_fields_set == state.model_fields_set
    assert copied.steps["a"].model_fields_set == state.steps["a"].model_fields_set
    assert copied.steps["a"].early == state.steps["a"].early


def test_the_fast_history_entry_equals_the_validated_one() -> None:
    for args in (
        (T0, "saga.started", None, None, None, None),
        (T0, "operator.retry", "a", 2, "why", "cli:alice via nats"),
    ):
        fast = history_entry(*args)
        names = ("at", "event", "step", "attempt", "detail", "actor")
        checked = HistoryEntry(**dict(zip(names, args, strict=True)))
        assert fast == checked
        assert fast.model_fields_set == checked.model_fields_set
        assert fast.model_dump_json() == checked.model_dump_json()
        assert repr(fast) == repr(checked)
        assert hash(fast) == hash(checked)


def test_the_fast_decision_equals_the_dataclasss_own() -> None:
    state, commands = full_state(), [ReleaseSlot("s")]
    fast = changed_decision(state, commands)
    plain = Decision(state, commands, changed=True)
    assert fast == plain
    assert repr(fast) == repr(plain)
    assert vars(fast) == vars(plain)
    assert fast.state is state
    assert fast.commands is commands
    assert dataclasses.replace(fast, commands=[]) == dataclasses.replace(plain, commands=[])
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.changed = False  # type: ignore[misc]


def test_a_fast_command_equals_the_dataclasss_own() -> None:
    """A step's command (``_made``), as a transition of the bench saga makes it."""
    definition = load_definition(Path(__file__).parents[2] / "bench/definitions/bench-order.yaml")
    decision = decide(definition, None, SagaTriggered("o-1", {"order_id": "o-1"}), T0)
    command = next(c for c in decision.commands if isinstance(c, PublishEvent))
    plain = PublishEvent(command.subject, command.data, command.headers, command.msg_id)
    assert command == plain
    assert repr(command) == repr(plain)
    assert vars(command) == vars(plain)
    assert list(vars(command)) == [f.name for f in dataclasses.fields(PublishEvent)]


def test_a_new_instances_step_states_equal_validated_ones() -> None:
    definition = load_definition(Path(__file__).parents[2] / "bench/definitions/bench-order.yaml")
    state = decide(definition, None, SagaTriggered("o-1", {"order_id": "o-1"}), T0).state
    assert state is not None
    last = state.steps[definition.steps[-1].name]
    assert last == StepState()
    assert last.model_fields_set == StepState().model_fields_set
    assert len({id(s) for s in state.steps.values()}) == len(definition.steps)


def test_assigning_a_state_field_does_what_pydantic_does() -> None:
    """The state models' fast ``__setattr__`` (``saga.core.state._Changed``)."""
    fast, plain = StepState(), StepState.model_construct()
    fast.attempt = 2
    BaseModel.__setattr__(plain, "attempt", 2)
    assert fast == plain
    assert fast.model_fields_set == plain.model_fields_set == {"attempt"}
    state = full_state()
    state.failure_reason = None
    assert "failure_reason" in state.model_fields_set
    assert state.model_dump()["failure_reason"] is None
    with pytest.raises(ValueError, match="no field"):
        fast.no_such_field = 1  # type: ignore[attr-defined]


def test_a_new_instance_equals_the_validated_construction() -> None:
    definition = load_definition(Path(__file__).parents[2] / "bench/definitions/bench-order.yaml")
    parent = ParentLink(saga="order", saga_id="o-0", step="pay", attempt=2)
    for link in (None, parent):
        fast = new_instance("o-1", definition, T0, {"a": [1]}, link)
        checked = InstanceState(
            saga_id="o-1",
            saga_name=definition.name,
            saga_version=definition.version,
            started_at=T0,
            updated_at=T0,
            steps={s.name: StepState() for s in definition.steps},
        )
        checked.context["trigger"] = {"a": [1]}
        checked.parent = link
        assert fast == checked
        assert fast.model_fields_set == checked.model_fields_set
        assert fast.model_dump_json() == checked.model_dump_json()
        again = new_instance("o-1", definition, T0, {"a": [1]}, link)
        assert [p for p in shared_mutables(fast, again) if "trigger" not in p] == []
