"""An AsyncAPI 3.0 document of one saga, for event catalogues and documentation tools.

The document describes the engine as the application: it *receives* the trigger, the
answers and the undo confirmations, and *sends* the commands, the undos and the
lifecycle events. Each subject is a channel; each kind of message on it (a step's
command, its success, ...) is a message with the saga headers as its header schema and
what the definition tells about its payload (kept fields, the command's data template).
Descriptions give the order of the flow, which AsyncAPI has no field for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from saga.asyncapi.schemas import (
    FAILURE,
    SAGA_ID,
    TRACE,
    answer_headers,
    command_headers,
    headers_schema,
    object_schema,
    template_reads,
    template_schema,
    text,
)
from saga.definition.duration import format_duration
from saga.definition.model import RetryPolicy, SagaDefinition, Step
from saga.definition.subjects import Role
from saga.protocol import (
    HEADER_MSG_ID,
    HEADER_PARENT_ID,
    HEADER_PARENT_NAME,
    HEADER_SAGA_ID,
    HEADER_SAGA_NAME,
    KIND_COMPENSATION,
    KIND_STEP,
    child_start_subject,
    child_undo_subject,
    status_subject,
)

ASYNCAPI_VERSION = "3.0.0"
STATUSES = ("completed", "compensated", "parked", "reopened", "terminated")
ANNOUNCED = {
    "all": STATUSES,
    "final": ("completed", "compensated", "terminated"),
    "none": (),
}
"""The statuses each ``status_events`` level announces (``saga.core.announce``)."""
DEFAULT_SERVER = "localhost:4222"

Action = Literal["send", "receive"]


@dataclass(frozen=True)
class _Exchange:
    """One kind of message on one subject, sent or received by the engine: an operation."""

    id: str
    """Operation and message id, e.g. ``charge_payment.command``."""
    subject: str
    action: Action
    summary: str
    description: str
    headers: dict[str, Any]
    payload: dict[str, Any]
    tags: tuple[str, ...] = field(default=())


def asyncapi_document(definition: SagaDefinition, server: str = DEFAULT_SERVER) -> dict[str, Any]:
    """The document as plain data, ready for YAML or JSON."""
    exchanges = list(_exchanges(definition))
    channels: dict[str, Any] = {}
    for ex in exchanges:
        channel = channels.setdefault(ex.subject, {"address": ex.subject, "messages": {}})
        channel["messages"][ex.id] = {"$ref": f"#/components/messages/{ex.id}"}
    for subject, channel in channels.items():
        ids = ", ".join(f"`{m}`" for m in channel["messages"])
        channel["description"] = f"NATS subject `{subject}`: {ids}."
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"{definition.name} saga",
            "version": str(definition.version),
            "description": _flow(definition),
        },
        "servers": {
            "nats": {
                "host": _host(server),
                "protocol": "nats",
                "description": "A NATS server with JetStream: the stream SAGA_EVENTS captures "
                "every channel of this document; see docs/protocol.md.",
            }
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": {ex.id: _operation(ex) for ex in exchanges},
        "components": {"messages": {ex.id: _message(ex) for ex in exchanges}},
    }


def to_yaml(document: dict[str, Any]) -> str:
    """YAML with multi-line descriptions kept readable (block style)."""
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # the same dict used twice is written out twice, not as an anchor


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _contract(schema: dict[str, Any], effect: str) -> dict[str, Any]:
    """The definition's own ``schema`` as the message payload, with what breaking it does."""
    said = schema.get("description")
    note = f"The definition's schema. {effect}"
    return {**schema, "description": f"{said} ({note})" if said else note}


def _host(server: str) -> str:
    return server.split("://", 1)[-1].rstrip("/")


def _operation(ex: _Exchange) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": ex.action,
        "channel": {"$ref": f"#/channels/{ex.subject}"},
        "summary": ex.summary,
        "description": ex.description,
        "messages": [{"$ref": f"#/channels/{ex.subject}/messages/{ex.id}"}],
    }
    if ex.tags:
        op["tags"] = [{"name": t} for t in ex.tags]
    return op


def _message(ex: _Exchange) -> dict[str, Any]:
    return {
        "name": ex.id,
        "summary": ex.summary,
        "contentType": "application/json",
        "headers": ex.headers,
        "payload": ex.payload,
    }


# -- the flow, in the order it runs ---------------------------------------------------------


def _exchanges(definition: SagaDefinition) -> list[_Exchange]:
    found = [_trigger(definition)]
    total = len(definition.steps)
    for number, step in enumerate(definition.steps, 1):
        found += _step(definition, step, number, total)
    undone = [s for s in reversed(definition.steps) if s.compensate is not None]
    for step in undone:
        found += _compensation(definition, step)
    found += [_status(definition, status) for status in ANNOUNCED[definition.status_events]]
    return found + _as_child(definition)


def _trigger(definition: SagaDefinition) -> _Exchange:
    trigger = definition.trigger
    source = trigger.id
    if source.field is not None:
        where = f"the payload's `{source.field}`"
    else:
        where = f"the `{source.header_name}` header"
    headers = headers_schema(
        {
            HEADER_SAGA_ID: SAGA_ID,
            HEADER_MSG_ID: text("Deduplicates a resent trigger: `<saga>:<saga id>:trigger`."),
            **({source.header: text("The saga id.")} if source.header else {}),
            **TRACE,
        },
        required=(),
    )
    fields = {*(trigger.keep or ()), *template_reads(definition, ("trigger",))}
    if source.field is not None and source.field.isidentifier():
        fields.add(source.field)
    payload = object_schema(
        {f: {"description": f"Read as `trigger.{f}`."} for f in sorted(fields)},
        "Any JSON object. "
        + (
            "Only the listed fields are kept."
            if trigger.keep is not None
            else "All fields are kept."
        ),
    )
    if isinstance(trigger.payload_schema, dict):
        payload = _contract(trigger.payload_schema, "A trigger that breaks it is dead-lettered.")
    return _Exchange(
        "trigger",
        trigger.event,
        "receive",
        "Starts an instance.",
        f"A message here starts an instance; its saga id is the `Saga-Id` header, else {where}, "
        "else one derived from the message. A trigger whose id names an existing instance starts nothing.",
        headers,
        payload,
        ("trigger",),
    )


def _as_child(definition: SagaDefinition) -> list[_Exchange]:
    """Any saga may be a child of another saga's step (``saga:``): started and undone there."""
    trigger = _trigger(definition)
    parent = headers_schema(
        {
            HEADER_SAGA_ID: text("The child's id: `<parent id>-<parent step>`."),
            HEADER_PARENT_NAME: text("The parent saga."),
            HEADER_PARENT_ID: text("The parent instance's id."),
            **TRACE,
        },
        required=(HEADER_SAGA_ID, HEADER_PARENT_NAME, HEADER_PARENT_ID),
    )
    return [
        _Exchange(
            "child.start",
            child_start_subject(definition.name),
            "receive",
            "Starts an instance as the child of a parent saga's step.",
            "Published by the engine for a parent's `saga:` step; read like the trigger. "
            "The instance reports its end to the parent's step.",
            parent,
            trigger.payload,
            ("trigger", "child"),
        ),
        _Exchange(
            "child.undo",
            child_undo_subject(definition.name),
            "receive",
            "A compensating parent undoes its completed child.",
            "The child runs its compensations and reports `undone` (or `undo-failed`).",
            parent,
            object_schema({}, "Empty."),
            ("child",),
        ),
    ]


def _step(definition: SagaDefinition, step: Step, number: int, total: int) -> list[_Exchange]:
    position = f"Step {number} of {total} (`{step.name}`)"
    after = _after(definition, number)
    found: list[_Exchange] = []
    if step.publish is not None:
        found.append(
            _Exchange(
                f"{step.name}.command",
                step.publish.event,
                "send",
                f"{position}: the command.",
                f"{position}, sent {after}. {_answers(step)} {_policy(step.timeout, step.retry)}",
                command_headers(definition, step.name, KIND_STEP, step.retry),
                template_schema(step.publish.data),
                (step.name, "step"),
            )
        )
    observed = (
        ""
        if step.driven
        else f" The step is observed: no command is sent; a service publishes this on its own, usually {after}."
    )
    for started in definition.subjects.of_step(step.name, Role.STARTED):
        assert step.queue_timeout is not None  # a step has a started report for its queue_timeout
        found.append(
            _Exchange(
                f"{step.name}.started",
                started.subject,
                "receive",
                f"{position}: the participant started the work.",
                f"{position}: the participant reports, just before it works on the command, "
                f"that it took it from its queue (empty body). The command may wait "
                f"{format_duration(step.queue_timeout)} for this (`queue_timeout`); the step's "
                "`timeout` counts from here.",
                answer_headers(definition, step.name, KIND_STEP),
                object_schema({}, "Empty."),
                (step.name, "step"),
            )
        )
    kept = {*(step.keep or ()), *template_reads(definition, ("steps", step.name))}
    success = object_schema(
        {f: {"description": f"Kept as `steps.{step.name}.{f}`."} for f in sorted(kept)},
        "The step's results. "
        + ("Only the listed fields are kept." if step.keep is not None else "All fields are kept."),
    )
    if isinstance(step.payload_schema, dict):
        success = _contract(
            step.payload_schema,
            "A success that breaks it is dead-lettered and counts as the step failing.",
        )
    for i, use in enumerate(definition.subjects.of_step(step.name, Role.SUCCESS)):
        found.append(
            _Exchange(
                _numbered(f"{step.name}.success", i),
                use.subject,
                "receive",
                f"{position} succeeded.",
                f"{position} succeeded; the steps after it start (when none is left, the saga "
                f"is completed).{observed}",
                answer_headers(definition, step.name, KIND_STEP),
                success,
                (step.name, "step"),
            )
        )
    for i, use in enumerate(definition.subjects.of_step(step.name, Role.FAILURE)):
        found.append(
            _Exchange(
                _numbered(f"{step.name}.failure", i),
                use.subject,
                "receive",
                f"{position} failed.",
                f"{position} failed: {_on_failure(step.retry)}{observed}",
                answer_headers(definition, step.name, KIND_STEP),
                FAILURE,
                (step.name, "step"),
            )
        )
    return found


def _compensation(definition: SagaDefinition, step: Step) -> list[_Exchange]:
    comp = step.compensate
    assert comp is not None
    undo = f"Undo of `{step.name}`"
    confirm = (
        f"Answered on {_subjects(comp.success)}"
        + (f" or, if it cannot be undone, {_subjects(comp.failure)}." if comp.failure else ".")
        if comp.success
        else "Fire-and-forget: published once and taken as done."
    )
    found = [
        _Exchange(
            f"{step.name}.compensation",
            comp.publish.event,
            "send",
            f"{undo}: the command.",
            f"{undo}, sent during compensation, which undoes the steps that succeeded newest "
            f"first, once a later step fails or times out or the deadline passes. {confirm} "
            f"{_policy(comp.timeout, comp.retry)}",
            command_headers(definition, step.name, KIND_COMPENSATION, comp.retry),
            template_schema(comp.publish.data),
            (step.name, "compensation"),
        )
    ]
    for i, use in enumerate(definition.subjects.of_step(step.name, Role.COMPENSATED)):
        found.append(
            _Exchange(
                _numbered(f"{step.name}.compensated", i),
                use.subject,
                "receive",
                f"{undo} done.",
                f"{undo} done; compensation goes on with the next older step, then the saga is compensated.",
                answer_headers(definition, step.name, KIND_COMPENSATION),
                object_schema({}, "Any JSON object."),
                (step.name, "compensation"),
            )
        )
    for i, use in enumerate(definition.subjects.of_step(step.name, Role.COMPENSATION_FAILED)):
        found.append(
            _Exchange(
                _numbered(f"{step.name}.compensation_failed", i),
                use.subject,
                "receive",
                f"{undo} failed.",
                f"{undo} failed: {_on_failure(comp.retry, parks=True)}",
                answer_headers(definition, step.name, KIND_COMPENSATION),
                FAILURE,
                (step.name, "compensation"),
            )
        )
    return found


def _status(definition: SagaDefinition, status: str) -> _Exchange:
    meaning = {
        "completed": "every step succeeded",
        "compensated": "a step failed and every succeeded step was undone",
        "parked": "an undo could not succeed; the instance waits for an operator",
        "reopened": (
            "a compensated instance heard that a step it gave up on succeeded after all, "
            "and undoes it (no second `compensated` follows)"
        ),
        "terminated": "an operator ended the instance without compensating (`saga terminate`)",
    }[status]
    payload = {
        "type": "object",
        "required": ["saga_id", "saga_name", "status", "reason"],
        "properties": {
            "saga_id": {"type": "string"},
            "saga_name": {"const": definition.name},
            "status": {"const": status},
            "reason": {"type": ["string", "null"], "description": "Why; null when completed."},
        },
    }
    headers = headers_schema(
        {
            HEADER_SAGA_ID: SAGA_ID,
            HEADER_SAGA_NAME: {"const": definition.name},
            HEADER_MSG_ID: text("Deduplicates a re-announcement."),
        },
        required=(HEADER_SAGA_ID, HEADER_SAGA_NAME),
    )
    return _Exchange(
        f"status.{status}",
        status_subject(definition.name, status),
        "send",
        f"The saga is {status}.",
        f"Announced when an instance is {status}: {meaning}.",
        headers,
        payload,
        ("lifecycle",),
    )


# -- descriptions ----------------------------------------------------------------------------


def _flow(definition: SagaDefinition) -> str:
    lines = [definition.description.strip(), ""] if definition.description.strip() else []
    lines.append("How an instance runs, in order:")
    lines.append("")
    lines.append(f"1. `{definition.trigger.event}` starts an instance.")
    for number, step in enumerate(definition.steps, 2):
        if step.publish is not None:
            what = f"the engine sends `{step.publish.event}`"
        elif step.wait is not None:
            what = f"waits {format_duration(step.wait)} (a durable timer), then succeeds"
        else:
            what = "observed: a service acts on its own"
        when = "" if definition.linear else f" Starts {_after(definition, number - 1)}."
        lines.append(f"{number}. **{step.name}**: {what}.{when} {_answers(step)}")
    deadline = (
        f", or the {format_duration(definition.deadline)} deadline passes"
        if definition.deadline
        else ""
    )
    undone = [s for s in reversed(definition.steps) if s.compensate is not None]
    if undone:
        undos = ", then ".join(
            f"`{s.compensate.publish.event}`" for s in undone if s.compensate is not None
        )
        lines.append("")
        lines.append(
            f"When a step fails or times out{deadline}, the steps that succeeded are undone "
            f"newest first: {undos}."
        )
    lines.append("")
    lines.append(
        "The outcome is announced on "
        + ", ".join(f"`{status_subject(definition.name, s)}`" for s in STATUSES)
        + ". Every message is a JSON object; the saga headers are described in docs/protocol.md."
    )
    return "\n".join(lines) + "\n"


def _after(definition: SagaDefinition, number: int) -> str:
    step = definition.steps[number - 1]
    deps = definition.dependencies(step.name)
    condition = f", if `{step.when}` holds" if step.when is not None else ""
    if not deps:
        return f"when `{definition.trigger.event}` starts an instance{condition}"
    done = " and ".join(f"`{d}` succeeded{_how(definition.step(d))}" for d in deps)
    return f"after {done}{condition}"


def _how(step: Step) -> str:
    if step.wait is not None:
        return f" (waited {format_duration(step.wait)})"
    return f" ({_subjects(step.success)})"


def _answers(step: Step) -> str:
    if step.wait is not None:
        return ""
    text = f"Success: {_subjects(step.success)}"
    if step.failure:
        text += f"; failure: {_subjects(step.failure)}"
    return text + "."


def _policy(timeout: Any, retry: RetryPolicy | None) -> str:
    parts = []
    if timeout is not None:
        parts.append(f"Each attempt waits {format_duration(timeout)}")
    if retry is not None:
        parts.append(
            f"up to {retry.attempts} attempts (backoff {format_duration(retry.backoff)}, "
            f"times {retry.multiplier:g}, at most {format_duration(retry.max_backoff)}), "
            "each with a higher `Saga-Attempt`"
        )
    return (", ".join(parts) + ".") if parts else ""


def _on_failure(retry: RetryPolicy | None, parks: bool = False) -> str:
    then = "the instance is parked for an operator." if parks else "compensation begins."
    if retry is not None and retry.on_failure:
        return f"retried while attempts remain, then {then}"
    return then[0].upper() + then[1:]


def _subjects(subjects: tuple[str, ...] | None) -> str:
    return " or ".join(f"`{s}`" for s in subjects or ())


def _numbered(base: str, index: int) -> str:
    return base if index == 0 else f"{base}.{index + 1}"
