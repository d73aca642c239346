"""The subject index agrees with what each reader of subjects worked out on its own before.

The ``_was_*`` functions are the five readers as they were before they read
:mod:`saga.definition.subjects` (intake's ``classify``, topology's listened and published
subjects, the checks' consumed subjects, the harness's ``WireReader``); random definitions
whose steps share subjects from a small pool check the index against each of them, clashes
included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from saga.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    Event,
    SagaTriggered,
    StepFailed,
    StepStarted,
    StepSucceeded,
    classify,
)
from saga.definition import SagaDefinition
from saga.definition.checks import check_definition
from saga.definition.subjects import Role
from saga.engine.intake import Intake
from saga.protocol import (
    HEADER_KIND,
    HEADER_STEP,
    KIND_COMPENSATION,
    KIND_STEP,
    STARTED_PREFIX,
    child_start_subject,
    child_undo_subject,
    started_subject,
)
from saga.testing.wire import WireReader

POOL = ("a.one", "a.two", "b.one", "b.two", "c.one")
NAME = "pool"


@st.composite
def definitions(draw: st.DrawFn, distinct: bool = False) -> SagaDefinition:
    """1-4 steps whose subjects come from a pool of five, so they often clash; ``distinct``:
    each answer has a subject of its own (commands still share the pool)."""
    pool = st.sampled_from(POOL)
    fresh = iter(f"answer.n{n}" for n in range(100))
    subjects = st.builds(lambda: next(fresh)) if distinct else pool
    some = st.lists(subjects, max_size=2)
    steps: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 4))):
        step: dict[str, Any] = {
            "name": f"s{i}",
            "success": draw(st.lists(subjects, min_size=1, max_size=2)),
        }
        step["failure"] = draw(some)
        if draw(st.booleans()):
            step["publish"] = {"event": draw(pool)}
            if draw(st.booleans()):
                step["queue_timeout"] = "1s"
        if draw(st.booleans()):
            comp: dict[str, Any] = {"publish": {"event": draw(pool)}}
            if draw(st.booleans()):
                comp["success"] = draw(st.lists(subjects, min_size=1, max_size=2))
                comp["failure"] = draw(some)
            step["compensate"] = comp
        steps.append(step)
    trigger = draw(subjects)
    raw = {"name": NAME, "trigger": {"event": trigger}, "steps": steps}
    return SagaDefinition.model_validate(raw)


def candidates(definition: SagaDefinition) -> list[str]:
    started = [started_subject(NAME, s.name) for s in definition.steps]
    return [
        *POOL,
        *started,
        started_subject(NAME, "nobody"),
        f"saga.status.{NAME}.completed",
        "z.z",
    ]


# -- the readers as they were -----------------------------------------------------------------


def _was_classify(
    definition: SagaDefinition, subject: str, payload: dict[str, Any]
) -> Event | None:
    if subject == definition.trigger.event:
        return SagaTriggered("id", payload)
    if subject.startswith(STARTED_PREFIX + "."):
        step_name = subject.removeprefix(f"{STARTED_PREFIX}.{definition.name}.")
        started = any(s.name == step_name and s.queue_timeout for s in definition.steps)
        return StepStarted(step_name, 2) if started else None
    reason = payload.get("reason")
    reason_text = str(reason) if reason is not None else "failed"
    for step in definition.steps:
        if subject in step.success:
            return StepSucceeded(step.name, payload, 2)
        if subject in step.failure:
            return StepFailed(step.name, reason_text, payload, 2)
        comp = step.compensate
        if comp is not None:
            if subject in (comp.success or ()):
                return CompensationSucceeded(step.name, payload)
            if subject in (comp.failure or ()):
                return CompensationFailed(step.name, reason_text, 2)
    return None


def _was_listened(definition: SagaDefinition) -> list[str]:
    name = definition.name  # and, since child sagas, where any saga is started and undone
    subjects = [definition.trigger.event, child_start_subject(name), child_undo_subject(name)]
    for step in definition.steps:
        subjects += [*step.success, *step.failure]
        if step.queue_timeout is not None:
            subjects.append(started_subject(definition.name, step.name))
        if step.compensate is not None:
            subjects += [*(step.compensate.success or ()), *(step.compensate.failure or ())]
    return subjects


def _was_published(definition: SagaDefinition) -> list[str]:
    subjects = []
    for step in definition.steps:
        if step.publish is not None:
            subjects.append(step.publish.event)
        if step.compensate is not None:
            subjects.append(step.compensate.publish.event)
    return subjects


@dataclass(frozen=True)
class _Role:
    """checks._Role."""

    step: str | None
    key: str = ""
    compensation: bool = False

    def __str__(self) -> str:
        if self.step is None:
            return "the trigger"
        undo = "compensation " if self.compensation else ""
        return f"{undo}{self.key} of step {self.step!r}"


def _was_consumed(definition: SagaDefinition) -> Iterator[tuple[tuple[str | int, ...], str, _Role]]:
    """checks.consumed_subjects."""
    yield ("trigger", "event"), definition.trigger.event, _Role(None)
    for i, step in enumerate(definition.steps):
        for key in ("success", "failure"):
            for j, subject in enumerate(getattr(step, key)):
                yield ("steps", i, key, j), subject, _Role(step.name, key)
        comp = step.compensate
        if comp is not None:
            for key in ("success", "failure"):
                for j, subject in enumerate(getattr(comp, key) or ()):
                    path = ("steps", i, "compensate", key, j)
                    yield path, subject, _Role(step.name, key, compensation=True)


def _was_harness_meaning(
    definition: SagaDefinition, subject: str, headers: dict[str, str]
) -> tuple[str, str | None]:
    """testing/wire.WireReader.meaning: (role, step); later steps overwrite earlier ones."""
    consumed: dict[str, tuple[str, str | None]] = {definition.trigger.event: ("trigger", None)}
    commands: dict[str, list[tuple[str, str | None]]] = {}
    for step in definition.steps:
        consumed.update({s: ("success", step.name) for s in step.success})
        consumed.update({s: ("failure", step.name) for s in step.failure})
        if step.queue_timeout is not None:
            consumed[started_subject(definition.name, step.name)] = ("started", step.name)
        if step.publish is not None:
            commands.setdefault(step.publish.event, []).append(("command", step.name))
        comp = step.compensate
        if comp is not None:
            commands.setdefault(comp.publish.event, []).append(("compensation", step.name))
            for s in comp.success or ():
                consumed[s] = ("compensated", step.name)
            for s in comp.failure or ():
                consumed[s] = ("compensation-failed", step.name)
    if subject in consumed:
        return consumed[subject]
    if subject.startswith(f"saga.status.{definition.name}."):
        return ("status", None)
    found = commands.get(subject, [])
    for role, step_name in found:
        kind = KIND_COMPENSATION if role == "compensation" else KIND_STEP
        if headers.get("Saga-Step") in (None, step_name) and headers.get("Saga-Kind") in (
            None,
            kind,
        ):
            return role, step_name
    return found[0] if found else ("other", None)


# -- the index against them -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(definitions())
def test_listened_and_published_as_topology_had_them(definition: SagaDefinition) -> None:
    assert list(definition.subjects.listened) == _was_listened(definition)
    assert list(definition.subjects.published) == _was_published(definition)


@settings(max_examples=300, deadline=None)
@given(definitions())
def test_consumed_subjects_as_the_checks_had_them(definition: SagaDefinition) -> None:
    was = [(path, subject, str(role)) for path, subject, role in _was_consumed(definition)]
    declared = definition.subjects.declared
    child = [(u.subject, u.role) for u in declared if u.path == ("name",)]
    assert child == [
        (child_start_subject(definition.name), Role.TRIGGER),
        (child_undo_subject(definition.name), Role.CHILD_UNDO),
    ]
    assert [(u.path, u.subject, str(u)) for u in declared if u.path != ("name",)] == was


@settings(max_examples=300, deadline=None)
@given(definitions())
def test_each_subject_means_what_classify_made_of_it(definition: SagaDefinition) -> None:
    payload = {"reason": "no"}
    for subject in candidates(definition):
        was = _was_classify(definition, subject, payload)
        use = definition.subjects.consumed.get(subject)
        if was is None:
            assert use is None, subject
            continue
        assert use is not None, subject
        expected = {
            SagaTriggered: Role.TRIGGER,
            StepStarted: Role.STARTED,
            StepSucceeded: Role.SUCCESS,
            StepFailed: Role.FAILURE,
            CompensationSucceeded: Role.COMPENSATED,
            CompensationFailed: Role.COMPENSATION_FAILED,
        }[type(was)]
        assert (use.role, use.step) == (expected, getattr(was, "step", None)), subject


@settings(max_examples=300, deadline=None)
@given(
    definitions(distinct=True),
    st.sampled_from([None, "s0", "s1", "s2"]),
    st.sampled_from([None, KIND_STEP, KIND_COMPENSATION]),
)
def test_a_valid_definition_means_to_the_harness_what_it_did(
    definition: SagaDefinition, step: str | None, kind: str | None
) -> None:
    """Where subjects clash the harness let the last meaning win; the checks refuse those."""
    if check_definition(definition):
        return
    headers = {k: v for k, v in (("Saga-Step", step), ("Saga-Kind", kind)) if v is not None}
    for subject in candidates(definition):
        use = definition.subjects.meaning(subject, step, kind)
        assert (use.role.value, use.step) == _was_harness_meaning(definition, subject, headers), (
            subject
        )


def test_the_index_is_built_once_per_definition() -> None:
    definition = SagaDefinition.model_validate(
        {"name": NAME, "trigger": {"event": "a.one"}, "steps": [{"name": "s0", "success": "b.one"}]}
    )
    assert definition.subjects is definition.subjects


def _was_subject_role_findings(definition: SagaDefinition) -> list[tuple[Any, str]]:
    """checks._subject_roles."""
    meaning: dict[str, _Role] = {}
    found: list[tuple[Any, str]] = []
    for path, subject, role in _was_consumed(definition):
        first = meaning.setdefault(subject, role)
        if first is role:
            continue
        if (first.step, first.compensation) == (role.step, role.compensation):
            why = "a subject cannot mean both success and failure"
        else:
            why = "the engine tells events apart by subject, so each may have one meaning"
        found.append((path, f"subject {subject!r} already means {first}: {why}"))
    for i, step in enumerate(definition.steps):
        commands: list[tuple[Any, str]] = []
        if step.publish is not None:
            commands.append((("steps", i, "publish", "event"), step.publish.event))
        if step.compensate is not None:
            path = ("steps", i, "compensate", "publish", "event")
            commands.append((path, step.compensate.publish.event))
        for path, subject in commands:
            if subject in meaning:
                found.append(
                    (
                        path,
                        f"the engine publishes {subject!r} but also listens to it as "
                        f"{meaning[subject]}: a command must differ from the events that answer it",
                    )
                )
    return found


# -- the readers, now reading the index, against what they did ---------------------------------


@settings(max_examples=300, deadline=None)
@given(definitions())
def test_classify_makes_the_same_events(definition: SagaDefinition) -> None:
    for subject in candidates(definition):
        for payload in ({"reason": "no"}, {}):
            assert classify(definition, subject, payload, "id", 2) == _was_classify(
                definition, subject, payload
            ), subject


@settings(max_examples=300, deadline=None)
@given(definitions())
def test_the_checks_find_the_same_clashes(definition: SagaDefinition) -> None:
    mine = [
        (path, message)
        for path, message in check_definition(definition)
        if "already means" in message or message.startswith("the engine publishes")
    ]
    assert mine == _was_subject_role_findings(definition)


@settings(max_examples=300, deadline=None)
@given(
    definitions(distinct=True),
    st.sampled_from([None, "s0", "s1", "s2"]),
    st.sampled_from([None, KIND_STEP, KIND_COMPENSATION]),
)
def test_the_harness_means_the_same(
    definition: SagaDefinition, step: str | None, kind: str | None
) -> None:
    if check_definition(definition):
        return
    headers = {k: v for k, v in ((HEADER_STEP, step), (HEADER_KIND, kind)) if v is not None}
    harness = WireReader(definition)
    for subject in candidates(definition):
        meaning = harness.meaning(subject, headers)
        assert (meaning.role.value, meaning.step) == _was_harness_meaning(
            definition, subject, headers
        ), subject


def test_intake_routes_every_listened_subject_to_its_saga() -> None:
    one = SagaDefinition.model_validate(
        {
            "name": "one",
            "trigger": {"event": "a.one"},
            "steps": [
                {
                    "name": "s0",
                    "success": "b.one",
                    "queue_timeout": "1s",
                    "publish": {"event": "c.one"},
                }
            ],
        }
    )
    two = SagaDefinition.model_validate(
        {
            "name": "two",
            "trigger": {"event": "a.two"},
            "steps": [{"name": "s0", "success": "b.two"}],
        }
    )
    intake = Intake({"one": one, "two": two})
    assert intake.by_subject == {
        "a.one": one,
        "b.one": one,
        "saga.started.one.s0": one,
        "saga.child.one.start": one,
        "saga.child.one.undo": one,
        "a.two": two,
        "b.two": two,
        "saga.child.two.start": two,
        "saga.child.two.undo": two,
    }
