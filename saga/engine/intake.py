"""From a consumed message to ``(definition, saga id, event)``, or a reason to dead-letter it."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, NamedTuple

from saga import jsonwire
from saga.core.events import (
    Event,
    SagaTriggered,
    StepSucceeded,
    Timer,
    TimerFired,
    classify,
)
from saga.core.state import ParentLink
from saga.definition.catalog import Catalog
from saga.definition.contracts import (
    success_schema,
    success_violation,
    trigger_schema,
    trigger_violation,
)
from saga.definition.expressions import evaluator
from saga.definition.model import SagaDefinition
from saga.definition.saga_id import saga_id_of
from saga.definition.subjects import Role
from saga.errors import ConfigError
from saga.jsonwire import NonFiniteNumberError
from saga.nats.dlq import DeadLetterCode
from saga.nats.settle import Term
from saga.protocol import (
    HEADER_ATTEMPT,
    HEADER_PARENT_ID,
    HEADER_PARENT_NAME,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    HEADER_STEP,
    HEADER_TIMER,
    MAX_PAYLOAD_BYTES,
    MAX_SAGA_ID_LENGTH,
    TIMER_FIRE_PREFIX,
)

_ID_NAMESPACE = uuid.UUID("6f1b2d0e-6c8a-4f0e-9b1a-5a6e2c3d4b5f")
_TIMER_FIRE = TIMER_FIRE_PREFIX + "."


class Work(NamedTuple):
    """A consumed message read: the event to apply to an instance (a named tuple, not a
    frozen dataclass: made for every message, and a frozen dataclass's ``__init__`` costs
    ~5x a tuple's)."""

    definition: SagaDefinition
    """The newest loaded version that knows the subject; an instance started on another
    version is decided with that one (:meth:`for_version`)."""
    saga_id: str
    event: Event
    subject: str = ""
    payload: dict[str, Any] | None = None
    attempt: int | None = None
    """The reply's ``Saga-Attempt``, when it had one."""
    broken: Term | None = None
    """A success that breaks its step's ``schema``: the copy for the dead letters (the event
    is still used: :func:`saga.core.decide` fails the step)."""

    def for_version(self, definition: SagaDefinition) -> Work | None:
        """The same message read by another version of the saga; None if it means nothing there."""
        if definition is self.definition or self.payload is None:
            event: Event | None = self.event
        else:
            event = classify(definition, self.subject, self.payload, self.saga_id, self.attempt)
        if event is None:
            return None
        return Work(definition, self.saga_id, event, self.subject, self.payload, self.attempt)


class Intake:
    """Routes subjects to definitions; each consumed subject must belong to one saga."""

    def __init__(self, definitions: Catalog | dict[str, SagaDefinition]) -> None:
        self.catalog = Catalog.of(definitions)
        self.by_subject: dict[str, SagaDefinition] = {}
        clashes = []
        for (
            definition
        ) in self.catalog:  # oldest first: the newest version that knows a subject wins
            for subject in definition.subjects.listened:
                other = self.by_subject.setdefault(subject, definition)
                if other.name != definition.name:
                    clashes.append(
                        f"{subject!r} is used by both {other.name!r} and {definition.name!r}"
                    )
                self.by_subject[subject] = definition
        self._routes = {
            subject: _route(definition, subject) for subject, definition in self.by_subject.items()
        }
        if clashes:
            raise ConfigError(
                "a subject the engine consumes must belong to one saga: " + "; ".join(clashes)
            )

    def parse(
        self, subject: str, data: bytes, headers: dict[str, str] | None, stream: str, sequence: int
    ) -> Work | Term:
        headers = headers or {}
        if subject.startswith(_TIMER_FIRE):
            return self._timer(headers)
        route = self._routes.get(subject)
        if route is None:
            return Term(DeadLetterCode.UNKNOWN_EVENT, f"no saga consumes {subject!r}")
        definition, trigger, contract = route
        payload = _payload(data)
        if isinstance(payload, Term):
            return payload
        # a reply's Saga-Id first, as saga_id_of does (without the call for every reply)
        saga_id = headers.get(HEADER_SAGA_ID) or saga_id_of(definition, subject, payload, headers)
        if saga_id is None and trigger and definition.trigger.id.field is not None:
            given = evaluator(definition.trigger.id.field)(payload)
            if given is not None:
                return Term(
                    DeadLetterCode.MALFORMED,
                    f"id field {definition.trigger.id.field!r} must be text or a whole number, "
                    f"got {type(given).__name__}",
                )
        if saga_id is None:
            if not trigger:
                return Term(
                    DeadLetterCode.NO_SAGA_ID, f"no {HEADER_SAGA_ID} header and no id field"
                )
            saga_id = str(uuid.uuid5(_ID_NAMESPACE, f"{stream}:{sequence}"))
        if len(saga_id) > MAX_SAGA_ID_LENGTH:
            return Term(DeadLetterCode.MALFORMED, f"saga id longer than {MAX_SAGA_ID_LENGTH}")
        attempt = None if trigger else attempt_of(headers)
        if isinstance(attempt, Term):
            return attempt
        event = classify(definition, subject, payload, saga_id, attempt)
        if event is None:  # pragma: no cover - by_subject only holds classified subjects
            return Term(
                DeadLetterCode.UNKNOWN_EVENT, f"{subject!r} means nothing in {definition.name}"
            )
        broken = broken_contract(definition, event) if contract else None
        if trigger and broken is not None:
            return broken
        if isinstance(event, SagaTriggered) and (parent := parent_of(headers)) is not None:
            event = replace(event, parent=parent)
        return Work(definition, saga_id, event, subject, payload, attempt, broken)

    def _timer(self, headers: dict[str, str]) -> Work | Term:
        definition = self.catalog.latest(headers.get(HEADER_SAGA_NAME, ""))
        saga_id = headers.get(HEADER_SAGA_ID)
        if definition is None or not saga_id:
            return Term(DeadLetterCode.UNKNOWN_EVENT, "timer for an unknown saga")
        try:
            timer = Timer.from_key(headers.get(HEADER_TIMER, ""))
        except ValueError:
            return Term(DeadLetterCode.MALFORMED, f"bad {HEADER_TIMER} header")
        return Work(definition, saga_id, TimerFired(timer))


def _route(definition: SagaDefinition, subject: str) -> tuple[SagaDefinition, bool, bool]:
    """What :meth:`Intake.parse` needs of a consumed subject, worked out once: its saga,
    whether it is a trigger, whether a ``schema`` may break (:func:`broken_contract`)."""
    use = definition.subjects.consumed[subject]
    if use.role is Role.TRIGGER:
        schema = trigger_schema(definition)
    elif use.role is Role.SUCCESS and use.step is not None:
        schema = success_schema(definition, use.step)
    else:
        schema = None
    return definition, use.role is Role.TRIGGER, schema is not None


def attempt_of(headers: dict[str, str]) -> int | Term | None:
    """A reply's ``Saga-Attempt``: a positive whole number, or absent (None)."""
    text = headers.get(HEADER_ATTEMPT)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        return Term(
            DeadLetterCode.MALFORMED, f"{HEADER_ATTEMPT} must be a positive whole number: {text!r}"
        )
    return int(text)


def parent_of(headers: dict[str, str]) -> ParentLink | None:
    """The parent step attempt a child saga's trigger names (``Saga-Parent-*`` headers)."""
    name, sid, step = (
        headers.get(HEADER_PARENT_NAME),
        headers.get(HEADER_PARENT_ID),
        headers.get(HEADER_STEP),
    )
    if not (name and sid and step):
        return None
    attempt = attempt_of(headers)
    return ParentLink(
        saga=name, saga_id=sid, step=step, attempt=attempt if isinstance(attempt, int) else 1
    )


def _payload(data: bytes) -> dict[str, Any] | Term:
    if len(data) > MAX_PAYLOAD_BYTES:
        return Term(DeadLetterCode.MALFORMED, f"payload larger than {MAX_PAYLOAD_BYTES} bytes")
    if not data or data.isspace():
        return {}
    try:
        payload = jsonwire.loads(data)
    except NonFiniteNumberError as exc:
        return Term(DeadLetterCode.NON_FINITE_NUMBER, f"payload is not valid JSON: {exc}")
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return Term(DeadLetterCode.MALFORMED, f"payload is not JSON: {exc}")
    if not isinstance(payload, dict):
        return Term(
            DeadLetterCode.MALFORMED, f"payload must be a JSON object, got {type(payload).__name__}"
        )
    return payload


def is_trigger(work: Work) -> bool:
    return isinstance(work.event, SagaTriggered)


def broken_contract(definition: SagaDefinition, event: Event) -> Term | None:
    """A trigger or a step's success whose payload breaks its ``schema``: the dead letter to
    write. A trigger starts nothing; a success is still used, as the step failing (see
    :func:`saga.core.decide`), and its copy here tells the operator what was wrong."""
    if isinstance(event, SagaTriggered):
        why = trigger_violation(definition, event.data)
        what = "trigger payload"
    elif isinstance(event, StepSucceeded):
        why = success_violation(definition, event.step, event.data)
        what = f"success payload of step {event.step!r}"
    else:
        return None
    return None if why is None else Term(DeadLetterCode.SCHEMA_VIOLATION, f"{what} {why}")
