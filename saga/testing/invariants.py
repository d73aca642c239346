"""What must hold after any run, however many processes died: checked from what really happened.

Inputs are facts, not the engine's opinion of them:

- the instance states (KV ``saga_instances``);
- the side effects the participants recorded (KV ``saga_effects``, one record per
  effect and idempotency key), each with its KV revision, which is a stream
  sequence and so the global order in which effects were recorded;
- optionally, the commands stored on the events stream, with their ``Nats-Msg-Id``.

Rules, by the name a :class:`Violation` carries:

    missing               an expected saga has no instance
    stuck                 an instance is still running or compensating
    duplicate-effect      one effect recorded more than once for one idempotency key
    duplicate-command     one command message id stored more than once
    undo-without-success  an undo ran for a step that did not succeed, or before its effect
    undo-order            the undos of steps that succeeded in time did not run newest first
    forward-after-undo    a forward step was driven or took effect after compensation began
    undo-in-completed     a completed saga has undo effects
    not-undone            a compensated saga kept the effect of a step it should have undone

A late success (a step given up on, whose success arrived during compensation) is
undone after the undo in progress, so it is exempt from the order and timing rules;
its undo must still follow its effect.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.js import JetStreamContext

from saga.core.state import InstanceState, Status, StepStatus
from saga.definition.model import SagaDefinition
from saga.nats.reader import read_stream
from saga.nats.topology import Topology, published_subjects
from saga.protocol import HEADER_MSG_ID, KIND_COMPENSATION, KIND_STEP
from saga.store import InstanceRecord

EFFECTS_BUCKET = "saga_effects"
FORWARD_EVENTS = ("step.started", "step.retried")

SagaKey = tuple[str, str]
"""``(saga name, saga id)``."""


@dataclass(frozen=True)
class EffectRecord:
    """One side effect a participant recorded (``ctx.once``)."""

    sequence: int
    """KV revision of the record: effects are ordered by it."""
    service: str
    effect: str
    saga_name: str
    saga_id: str
    step: str
    kind: str
    """``step`` (forward) or ``compensation`` (undo)."""

    @property
    def saga(self) -> SagaKey:
        return (self.saga_name, self.saga_id)

    @property
    def undo(self) -> bool:
        return self.kind == KIND_COMPENSATION

    @classmethod
    def from_record(cls, sequence: int, value: bytes) -> EffectRecord | None:
        """From a ``saga_effects`` value; ``None`` for an effect that belongs to no saga step."""
        try:
            doc = json.loads(value)
            name, rest = str(doc["idempotency_key"]).split(":", 1)
            saga_id, step, kind = rest.rsplit(":", 2)
        except (ValueError, KeyError, TypeError):
            return None
        if kind not in (KIND_STEP, KIND_COMPENSATION):
            return None
        return cls(sequence, str(doc["service"]), str(doc["effect"]), name, saga_id, step, kind)


@dataclass(frozen=True)
class CommandRecord:
    """A command as stored on the events stream."""

    sequence: int
    subject: str
    msg_id: str


@dataclass(frozen=True)
class Violation:
    rule: str
    saga: str
    """``name/id`` of the instance, or ``-`` for a rule about no single instance."""
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.saga}: {self.detail}"


@dataclass
class Report:
    sagas: int
    statuses: dict[str, int]
    effects: int
    undos: int
    commands: int
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        states = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        return (
            f"{self.sagas} sagas ({states}); {self.effects} effects, {self.undos} undos, "
            f"{self.commands} commands; {len(self.violations)} violation(s)"
        )


def check(
    states: Iterable[InstanceState],
    effects: Iterable[EffectRecord],
    definitions: Mapping[str, SagaDefinition],
    commands: Iterable[CommandRecord] = (),
    expected: Iterable[SagaKey] | None = None,
) -> Report:
    """Check every rule; never raises on odd input, it reports it."""
    by_saga = {(s.saga_name, s.saga_id): s for s in states}
    effects = sorted(effects, key=lambda e: e.sequence)
    commands = list(commands)
    effects_of: dict[SagaKey, list[EffectRecord]] = defaultdict(list)
    for effect in effects:
        effects_of[effect.saga].append(effect)
    violations = [*_duplicates(effects, commands)]
    for key in expected or ():
        if key not in by_saga:
            violations.append(Violation("missing", _label(key), "no instance was ever stored"))
    for key, state in sorted(by_saga.items()):
        violations += _check_saga(state, effects_of.get(key, []), definitions.get(key[0]))
    return Report(
        sagas=len(by_saga),
        statuses=dict(Counter(s.status.value for s in by_saga.values())),
        effects=len(effects),
        undos=sum(1 for e in effects if e.undo),
        commands=len(commands),
        violations=violations,
    )


def _label(key: SagaKey) -> str:
    return f"{key[0]}/{key[1]}"


def _duplicates(effects: list[EffectRecord], commands: list[CommandRecord]) -> Iterable[Violation]:
    seen = Counter((e.service, e.effect, e.saga, e.step, e.kind) for e in effects)
    for (service, effect, saga, step, kind), count in seen.items():
        if count > 1:
            yield Violation(
                "duplicate-effect", _label(saga), f"{service}.{effect} of {step}/{kind} x{count}"
            )
    ids = Counter(c.msg_id for c in commands)
    for msg_id, count in ids.items():
        if count > 1:
            yield Violation("duplicate-command", "-", f"{msg_id} stored {count} times")


def _check_saga(
    state: InstanceState, effects: list[EffectRecord], definition: SagaDefinition | None
) -> list[Violation]:
    label = _label((state.saga_name, state.saga_id))
    found: list[Violation] = []
    if state.status in (Status.RUNNING, Status.COMPENSATING):
        found.append(Violation("stuck", label, f"still {state.status.value}"))
    late = {h.step for h in state.history if h.event == "step.late-success" and h.step}
    forward = [e for e in effects if not e.undo]
    undos = [e for e in effects if e.undo]
    first_effect: dict[str, int] = {}
    for effect in forward:
        first_effect.setdefault(effect.step, effect.sequence)
    for rule, detail in [
        *_undo_rules(state, undos, first_effect, late),
        *_forward_after_undo(state, forward, undos, late),
        *_outcome_rules(state, undos, first_effect, definition),
    ]:
        found.append(Violation(rule, label, detail))
    return found


def _undo_rules(
    state: InstanceState,
    undos: list[EffectRecord],
    first_effect: dict[str, int],
    late: set[str],
) -> Iterable[tuple[str, str]]:
    for undo in undos:
        step = state.steps.get(undo.step)
        if step is None or step.status is not StepStatus.SUCCEEDED:
            status = step.status.value if step else "unknown"
            yield "undo-without-success", f"{undo.step} was undone but is {status}"
        elif undo.step not in first_effect:
            yield "undo-without-success", f"{undo.step} was undone but has no recorded effect"
        elif first_effect[undo.step] > undo.sequence:
            yield "undo-without-success", f"{undo.step} was undone before its effect"
    on_time = [s for s in state.completed if s not in late]
    undone_order = list(dict.fromkeys(u.step for u in undos if u.step in on_time))
    wanted = [s for s in reversed(on_time) if s in undone_order]
    if undone_order != wanted:
        yield "undo-order", f"undone {undone_order}, succeeded {on_time}"


def _forward_after_undo(
    state: InstanceState, forward: list[EffectRecord], undos: list[EffectRecord], late: set[str]
) -> Iterable[tuple[str, str]]:
    if undos:
        first_undo = undos[0].sequence
        for effect in forward:
            if effect.sequence > first_undo and effect.step not in late:
                yield "forward-after-undo", f"{effect.service}.{effect.effect} of {effect.step}"
    began = next((i for i, h in enumerate(state.history) if h.event == "saga.compensating"), None)
    if began is not None:
        for entry in state.history[began:]:
            if entry.event in FORWARD_EVENTS:
                yield "forward-after-undo", f"engine: {entry.event} {entry.step} at {entry.at}"


def _outcome_rules(
    state: InstanceState,
    undos: list[EffectRecord],
    first_effect: dict[str, int],
    definition: SagaDefinition | None,
) -> Iterable[tuple[str, str]]:
    if state.status is Status.COMPLETED and undos:
        yield "undo-in-completed", f"undone: {sorted({u.step for u in undos})}"
    if state.status is not Status.COMPENSATED or definition is None:
        return
    undone = {u.step for u in undos}
    for step in definition.steps:
        if step.compensate is not None and step.name in first_effect and step.name not in undone:
            status = state.steps[step.name].status.value if step.name in state.steps else "?"
            yield "not-undone", f"{step.name} took effect ({status}) and was never undone"


# -- reading the facts from NATS ------------------------------------------------------


@dataclass
class Observed:
    states: list[InstanceState]
    effects: list[EffectRecord]
    commands: list[CommandRecord]


async def observe(
    js: JetStreamContext,
    definitions: Mapping[str, SagaDefinition],
    topology: Topology | None = None,
    effects_bucket: str = EFFECTS_BUCKET,
) -> Observed:
    """Read instance states, recorded effects and stored commands from the server."""
    topology = topology or Topology()
    states = [
        _state(m.data)
        for m in await read_stream(js, f"KV_{topology.instances_bucket}")
        if m.data and not _deleted(m.headers)
    ]
    effects = [
        e
        for m in await read_stream(js, f"KV_{effects_bucket}")
        if m.data and not _deleted(m.headers)
        for e in [EffectRecord.from_record(m.sequence, m.data)]
        if e is not None
    ]
    subjects = sorted({s for d in definitions.values() for s in published_subjects(d)})
    commands = [
        CommandRecord(m.sequence, m.subject, m.headers.get(HEADER_MSG_ID, ""))
        for m in await read_stream(js, topology.events_stream, subjects)
    ]
    return Observed([s for s in states if s is not None], effects, commands)


async def check_live(
    js: JetStreamContext,
    definitions: Mapping[str, SagaDefinition],
    expected: Iterable[SagaKey] | None = None,
    topology: Topology | None = None,
) -> Report:
    seen = await observe(js, definitions, topology)
    return check(seen.states, seen.effects, definitions, seen.commands, expected)


def _deleted(headers: dict[str, str]) -> bool:
    return headers.get("KV-Operation") in ("DEL", "PURGE")


def _state(data: bytes) -> InstanceState | None:
    try:
        return InstanceRecord.model_validate_json(data).state
    except ValueError:
        return None


def as_dict(report: Report) -> dict[str, Any]:
    """JSON-ready form of a report (for tools and the chaos run's figures)."""
    return {
        "sagas": report.sagas,
        "statuses": report.statuses,
        "effects": report.effects,
        "undos": report.undos,
        "commands": report.commands,
        "violations": [str(v) for v in report.violations],
    }
