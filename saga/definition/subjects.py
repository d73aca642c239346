"""What each subject means to one saga, worked out once: ``{subject: (role, step)}``.

The engine tells events apart by subject only, so everything that reads subjects (the
engine's intake and ``classify``, stream provisioning, the definition checks, the test
harness and the AsyncAPI document) reads this index instead of walking the steps again.
Built once per definition (:attr:`saga.definition.model.SagaDefinition.subjects`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from saga.definition.yaml_source import Path
from saga.protocol import (
    KIND_COMPENSATION,
    KIND_STEP,
    child_start_subject,
    child_undo_subject,
    started_subject,
    status_subject,
)

if TYPE_CHECKING:
    from saga.definition.model import SagaDefinition


class Role(StrEnum):
    """What a message is to the saga, from its subject (and ``Saga-Kind`` for commands)."""

    TRIGGER = "trigger"
    COMMAND = "command"
    """A step's command, published by the engine."""
    SUCCESS = "success"
    FAILURE = "failure"
    COMPENSATION = "compensation"
    """An undo command, published by the engine."""
    COMPENSATED = "compensated"
    """An undo's confirmation."""
    COMPENSATION_FAILED = "compensation-failed"
    STATUS = "status"
    """A lifecycle event on ``saga.status.<saga>.<status>``."""
    CHILD_UNDO = "child-undo"
    """A compensating parent asks this saga's completed instance (its child) to undo itself."""
    STARTED = "started"
    """A participant's report that it started a step's command (steps with ``queue_timeout``)."""
    OTHER = "other"


SENT = (Role.COMMAND, Role.COMPENSATION)
"""Roles of the commands the engine publishes."""
_UNDO = (Role.COMPENSATION, Role.COMPENSATED, Role.COMPENSATION_FAILED)
_FIRST = {Role.TRIGGER: 0, Role.STARTED: 1}
"""Which meaning a subject named twice keeps: the trigger, then a started report, then the
first answer in file order (as the engine has always classified them)."""


@dataclass(frozen=True)
class Use:
    """One place the definition names a subject, and what the subject means there."""

    subject: str
    role: Role
    step: str | None = None
    """``None`` for the trigger (and status or unknown subjects)."""
    path: Path = ()
    """Where the file names it, e.g. ``("steps", 0, "success", 1)``."""

    @property
    def compensating(self) -> bool:
        """An undo command or its answer."""
        return self.role in _UNDO

    @property
    def kind(self) -> str | None:
        """The ``Saga-Kind`` of the step's messages: ``step``, ``compensation``; None without a step."""
        if self.step is None:
            return None
        return KIND_COMPENSATION if self.compensating else KIND_STEP

    def __str__(self) -> str:
        if self.step is None:
            return "the trigger" if self.role is Role.TRIGGER else self.role.value
        undo = "compensation " if self.compensating else ""
        what = {Role.COMPENSATED: "success", Role.COMPENSATION_FAILED: "failure"}.get(
            self.role, self.role.value
        )
        return f"{undo}{what} of step {self.step!r}"


class SubjectIndex:
    """Every subject of one definition and what it means, worked out when built."""

    def __init__(self, saga: str, uses: Iterable[Use]) -> None:
        self.saga = saga
        self.uses = tuple(uses)
        """Every subject the definition names (and the started reports of steps with a
        ``queue_timeout``), in file order; a subject named twice appears twice."""
        consumed: dict[str, Use] = {}
        commands: dict[str, tuple[Use, ...]] = {}
        for use in sorted(self.uses, key=lambda u: _FIRST.get(u.role, 2)):
            if use.role in SENT:
                commands[use.subject] = (*commands.get(use.subject, ()), use)
            else:
                consumed.setdefault(use.subject, use)
        self.consumed: Mapping[str, Use] = MappingProxyType(consumed)
        """What the engine makes of a subject it consumes (the first meaning, see ``_FIRST``)."""
        self.commands: Mapping[str, tuple[Use, ...]] = MappingProxyType(commands)
        """The steps and undos whose command is published on a subject."""
        self.listened = tuple(u.subject for u in self.uses if u.role not in SENT)
        """Subjects the engine consumes for this saga: trigger, answers, confirmations and
        started reports, in file order."""
        self.published = tuple(u.subject for u in self.uses if u.role in SENT)
        """Commands the engine publishes for this saga (steps and undos), in file order."""
        self.declared = tuple(u for u in self.uses if u.role not in (*SENT, Role.STARTED))
        """The subjects the file says the engine consumes (trigger, answers, confirmations),
        in file order; the started reports, named after the saga, are left out."""

    @classmethod
    def of(cls, definition: SagaDefinition) -> SubjectIndex:
        return cls(definition.name, _uses(definition))

    @property
    def status_prefix(self) -> str:
        return status_subject(self.saga, "")

    def of_step(self, step: str, *roles: Role) -> list[Use]:
        """The subjects of one step with these roles (all when none is given), in file order."""
        return [u for u in self.uses if u.step == step and (not roles or u.role in roles)]

    def known(self, subject: str) -> bool:
        return subject in self.consumed or subject in self.commands

    def meaning(self, subject: str, step: str | None = None, kind: str | None = None) -> Use:
        """What a message on ``subject`` is; a command subject shared by several steps is
        told apart by its ``Saga-Step`` and ``Saga-Kind`` headers (``step``, ``kind``)."""
        if subject in self.consumed:
            return self.consumed[subject]
        if subject.startswith(self.status_prefix):
            return Use(subject, Role.STATUS)
        candidates = self.commands.get(subject, ())
        for use in candidates:
            if step in (None, use.step) and kind in (None, use.kind):
                return use
        return candidates[0] if candidates else Use(subject, Role.OTHER)


def _uses(definition: SagaDefinition) -> list[Use]:
    found = [
        Use(definition.trigger.event, Role.TRIGGER, None, ("trigger", "event")),
        # any saga may be started as a child of another's step, and undone by it
        Use(child_start_subject(definition.name), Role.TRIGGER, None, ("name",)),
        Use(child_undo_subject(definition.name), Role.CHILD_UNDO, None, ("name",)),
    ]
    for i, step in enumerate(definition.steps):
        here: Path = ("steps", i)
        if step.publish is not None:
            found.append(
                Use(step.publish.event, Role.COMMAND, step.name, (*here, "publish", "event"))
            )
        found += [
            Use(s, Role.SUCCESS, step.name, (*here, "success", j))
            for j, s in enumerate(step.success)
        ]
        found += [
            Use(s, Role.FAILURE, step.name, (*here, "failure", j))
            for j, s in enumerate(step.failure)
        ]
        if step.queue_timeout is not None:
            started = started_subject(definition.name, step.name)
            found.append(Use(started, Role.STARTED, step.name, (*here, "queue_timeout")))
        comp = step.compensate
        if comp is not None:
            undo: Path = (*here, "compensate")
            found.append(
                Use(comp.publish.event, Role.COMPENSATION, step.name, (*undo, "publish", "event"))
            )
            for key, role in (("success", Role.COMPENSATED), ("failure", Role.COMPENSATION_FAILED)):
                subjects = getattr(comp, key) or ()
                found += [Use(s, role, step.name, (*undo, key, j)) for j, s in enumerate(subjects)]
    return found
