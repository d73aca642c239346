"""The business view of a saga, derived from its instance record.

The tree a viewer shows (at most 4 levels for any saga)::

    saga <name>                         root of the saga's trace; outcome, failure, counts
    ├─ saga.step <step>                 one span per attempt, opened by step.started/retried
    │  ├─ process <command>    (participant) CONSUMER, its parent named by the command
    │  │  └─ send <reply>      (participant) PRODUCER
    │  └─ process <reply>      (engine) only for a reply that changed nothing (late, duplicate)
    ├─ saga.compensate <step>           one span per undo attempt, same shape
    └─ saga.operator <action>           an operator's retry, resume or abort

The engine writes no span of its own for a message that changed the record (see
:mod:`saga.telemetry.engine_spans`): what it did is this tree.

Every span here is written from the record alone, when its closing history entry is
stored: start and end come from the history, the ids from :mod:`saga.telemetry.ids`
(the root's from the ``traceparent`` kept with the instance). So an engine that died
before its exporter flushed can write them again after a restart, and a viewer keeps
one copy of each id. The root is written when the saga ends or parks (again with the
same id if a parked saga later ends). The caller that triggered the saga (a front end)
is *linked* from the root, not its parent: the saga is a trace of its own, so a
viewer's trace list shows ``saga <name>`` for it, and the caller's trace links to it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode

from saga.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    Event,
    StepFailed,
    StepSucceeded,
    Timer,
    TimerFired,
    TimerKind,
)
from saga.core.state import CompensationStatus, HistoryEntry, InstanceState, StepStatus
from saga.protocol import HEADER_PARENT_ID, HEADER_TRACEPARENT
from saga.telemetry.finished import new_root_ids, write_finished
from saga.telemetry.ids import derived_span_id, forced_ids
from saga.telemetry.propagation import extract, inject
from saga.telemetry.setup import Telemetry

TRIGGER_KEY = "saga-trigger"
"""Key, in the record's trace context, of the caller's ``traceparent`` (linked from the root)."""

PARENT_KEY = "saga-parent"
"""Key, in a child saga's trace context, of its parent's step attempt ``traceparent``: the
child's root is that attempt's child, in the parent's trace (not a link)."""

STEP, COMPENSATION = "step", "compensation"
OPENERS = {
    "step.started": STEP,
    "step.retried": STEP,
    "compensation.started": COMPENSATION,
    "compensation.retried": COMPENSATION,
}
STEP_CLOSERS = {
    "step.succeeded": "succeeded",
    "step.failed": "failed",
    "step.timed-out": "timed-out",
    "step.abandoned": "abandoned",
    "step.retry-scheduled": "failed",
    "operator.retry": "abandoned",
}
COMPENSATION_CLOSERS = {
    "compensation.succeeded": "done",
    "compensation.sent": "sent",
    "compensation.failed": "failed",
    "compensation.retry-scheduled": "failed",
    "saga.parked": "timed-out",
}
SAGA_CLOSERS = {
    "saga.completed": "completed",
    "saga.compensated": "compensated",
    "saga.parked": "parked",
}
OPERATOR_ACTIONS = {
    "operator.abort",
    "operator.retry",
    "operator.resume",
    "operator.signal",
    "operator.terminate",
    "operator.redrive",
}
FAILED_STEPS = {StepStatus.FAILED, StepStatus.TIMED_OUT}
UNDONE = {CompensationStatus.DONE, CompensationStatus.RESOLVED}


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def saga_span_context(saga_trace: Mapping[str, str]) -> SpanContext | None:
    """The root's span context kept with the instance (None without tracing)."""
    if not saga_trace:
        return None
    return _root_of(id(propagate.get_global_textmap()), tuple(saga_trace.items()))


@functools.lru_cache(maxsize=8192)
def _root_of(textmap: int, saga_trace: tuple[tuple[str, str], ...]) -> SpanContext | None:
    """Remembered apart from :func:`extract`'s cache, which every message's new headers
    go through: a saga's context is read at each of its transitions (a span context is
    immutable, and depends only on the propagators, named by ``textmap``)."""
    span = trace.get_current_span(extract(dict(saga_trace))).get_span_context()
    return span if span.is_valid else None


def new_saga_trace(
    telemetry: Telemetry, name: str, trigger_headers: Mapping[str, str] | None
) -> dict[str, str]:
    """Ids for a new saga's trace, to keep with the instance; nothing is written yet.

    The sampling decision is the caller's when the trigger carries one (a sampled front
    end gets its sagas traced), else the sampler's, taken once here for the whole saga:
    :func:`emit_closed` writes the root with these ids and this decision when it ends.
    """
    if not telemetry.enabled:
        return {}
    caller = trace.get_current_span(extract(trigger_headers)).get_span_context()
    ids = new_root_ids(telemetry, f"saga {name}")
    if ids is None:  # not the SDK's tracer: a span's ids (it is never ended)
        ids = telemetry.tracer.start_span(f"saga {name}", context=Context()).get_span_context()
    flags = caller.trace_flags if caller.is_valid else ids.trace_flags
    child = caller.is_valid and bool(trigger_headers and trigger_headers.get(HEADER_PARENT_ID))
    trace_id = caller.trace_id if child else ids.trace_id  # a child saga joins its parent's
    root = SpanContext(trace_id, ids.span_id, False, flags)
    carrier: dict[str, str] = {}
    inject(carrier, trace.set_span_in_context(NonRecordingSpan(root)))
    if caller.is_valid and trigger_headers:
        key = PARENT_KEY if child else TRIGGER_KEY
        carrier[key] = next(
            v for k, v in trigger_headers.items() if k.lower() == HEADER_TRACEPARENT
        )
    return carrier


def _context(root: SpanContext, span_id: int) -> Context:
    span = NonRecordingSpan(
        SpanContext(root.trace_id, span_id, True, root.trace_flags, root.trace_state)
    )
    return trace.set_span_in_context(span)


def opener_index(state: InstanceState, kind: str, step: str, attempt: int) -> int | None:
    """History index of the entry that opened ``step``'s ``attempt`` (latest first)."""
    history = state.history
    for index in range(len(history) - 1, -1, -1):
        entry = history[index]
        if entry.step == step and entry.attempt == attempt and OPENERS.get(entry.event) == kind:
            return index
    return None


def attempt_context(
    saga_trace: Mapping[str, str], state: InstanceState, kind: str, step: str, attempt: int
) -> Context:
    """The context of an attempt's span (the saga's root when the attempt is unknown)."""
    root = saga_span_context(saga_trace)
    if root is None:
        return Context()
    index = opener_index(state, kind, step, attempt)
    if index is None:
        return trace.set_span_in_context(NonRecordingSpan(root))
    return _context(root, derived_span_id(root.trace_id, state.saga_id, index))


def root_context(saga_trace: Mapping[str, str]) -> Context:
    root = saga_span_context(saga_trace)
    return trace.set_span_in_context(NonRecordingSpan(root)) if root else Context()


@dataclass(frozen=True)
class MessageRole:
    """Where an engine ``process`` span belongs, and what to call it."""

    name: str
    parent: Context
    attributes: dict[str, Any]


def message_role(
    saga_trace: Mapping[str, str], state: InstanceState, event: Event | None, subject: str
) -> MessageRole:
    """A reply or timer sits under the attempt it concerns; anything else under the root.

    Only a timer's span names its step and attempt: a reply's parent, the attempt, does."""
    attributes: dict[str, Any] = {}
    name = f"process {subject}"
    kind, step, attempt = None, None, 0
    if isinstance(event, StepSucceeded | StepFailed) and event.step in state.steps:
        kind, step, attempt = STEP, event.step, state.steps[event.step].attempt
    elif (
        isinstance(event, CompensationSucceeded | CompensationFailed) and event.step in state.steps
    ):
        kind, step = COMPENSATION, event.step
        attempt = state.steps[event.step].compensation_attempt
    elif isinstance(event, TimerFired):
        timer = due_timer(state, event.timer)
        name = "process saga.timer"
        attributes["saga.timer.kind"] = timer.kind.value
        if timer.step is not None:
            step, attempt = timer.step, timer.attempt
            kind = (
                STEP
                if timer.kind in (TimerKind.STEP_TIMEOUT, TimerKind.STEP_RETRY, TimerKind.WAIT)
                else COMPENSATION
            )
            attributes["saga.step"] = step
            attributes["saga.attempt"] = attempt
    if kind is None or step is None:
        return MessageRole(name, root_context(saga_trace), attributes)
    return MessageRole(name, attempt_context(saga_trace, state, kind, step, attempt), attributes)


def due_timer(state: InstanceState, timer: Timer) -> Timer:
    """The timer a fire is about: for the instance's slot, the earliest one armed."""
    if timer.kind is not TimerKind.WAKE or not state.timers:
        return timer
    return Timer.from_key(min(state.timers.items(), key=lambda kv: (kv[1], kv[0]))[0])


@dataclass(frozen=True)
class DerivedSpan:
    name: str
    span_id: int | None
    """None: the saga's root (its id is the one kept with the instance)."""
    start: datetime
    end: datetime
    attributes: Callable[[], dict[str, Any]]
    error: tuple[str, str] | None = None
    """``error.type`` and the status description, for an ERROR span."""


def closed_spans(state: InstanceState, trace_id: int, lo: int, hi: int) -> list[DerivedSpan]:
    """The spans whose closing history entry has an index in ``[lo, hi)``."""
    history = state.history
    found: list[DerivedSpan] = []
    base = {"saga.id": state.saga_id, "saga.name": state.saga_name}
    for index in range(lo, min(hi, len(history))):
        entry = history[index]
        event = entry.event
        if entry.step is not None:
            for kind, outcomes in ((STEP, STEP_CLOSERS), (COMPENSATION, COMPENSATION_CLOSERS)):
                outcome = outcomes.get(event)
                if outcome is None:
                    continue
                start = _open_attempt(history, index, kind, entry.step)
                if start is not None:
                    found.append(_attempt_span(state, trace_id, base, kind, start, index, outcome))
        if event in OPERATOR_ACTIONS:
            found.append(_operator_span(state, trace_id, base, index, entry))
        outcome = SAGA_CLOSERS.get(event)
        if outcome is not None:
            found.append(_saga_span(state, entry, outcome))
    return found


def _open_attempt(history: list[HistoryEntry], index: int, kind: str, step: str) -> int | None:
    """The opener of ``step``'s attempt that entry ``index`` closes (None: none is open)."""
    closers = STEP_CLOSERS if kind == STEP else COMPENSATION_CLOSERS
    for back in range(index - 1, -1, -1):
        entry = history[back]
        if entry.step != step:
            continue
        if OPENERS.get(entry.event) == kind:
            return back
        if entry.event in closers:
            return None  # closed already
    return None


def _attempt_span(
    state: InstanceState,
    trace_id: int,
    base: dict[str, Any],
    kind: str,
    start: int,
    end: int,
    outcome: str,
) -> DerivedSpan:
    opener, closer = state.history[start], state.history[end]
    step = opener.step or ""
    attributes = {**base, "saga.step": step, "saga.attempt": opener.attempt or 1}
    reason = closer.detail
    if kind == STEP:
        name = f"saga.step {step}"
        attributes["saga.step.outcome"] = outcome
        if outcome == "failed" and reason and reason.startswith("failed: "):
            reason = reason.removeprefix("failed: ")
        elif closer.event == "step.retry-scheduled":
            outcome = attributes["saga.step.outcome"] = "timed-out"
        if closer.event == "step.retry-scheduled":
            attributes["saga.step.retried"] = True
        failed = outcome != "succeeded"
    else:
        name = f"saga.compensate {step}"
        if closer.event == "compensation.retry-scheduled":
            if reason and reason.startswith("failed: "):
                reason = reason.removeprefix("failed: ")
            else:
                outcome = "timed-out"
            attributes["saga.compensation.retried"] = True
        attributes["saga.compensation.outcome"] = outcome
        failed = outcome not in ("done", "sent")
    error = None
    if failed:
        reason = reason or outcome
        attributes["saga.failure.reason"] = reason
        error = (reason, reason)
    return DerivedSpan(
        name,
        derived_span_id(trace_id, state.saga_id, start),
        opener.at,
        closer.at,
        lambda: attributes,
        error,
    )


def _operator_span(
    state: InstanceState, trace_id: int, base: dict[str, Any], index: int, entry: HistoryEntry
) -> DerivedSpan:
    action = entry.event.removeprefix("operator.")
    attributes: dict[str, Any] = {**base, "saga.operator.action": action}
    attributes["saga.operator.result"] = "applied"
    if entry.step:
        attributes["saga.step"] = entry.step
    for field in ("actor", "reason"):  # added to history entries by the operator API
        value = getattr(entry, field, None) or (entry.detail if field == "reason" else None)
        if value:
            attributes[f"saga.operator.{field}"] = value
    return DerivedSpan(
        f"saga.operator {action}",
        derived_span_id(trace_id, state.saga_id, index),
        entry.at,
        entry.at,
        lambda: attributes,
    )


def _saga_span(state: InstanceState, entry: HistoryEntry, outcome: str) -> DerivedSpan:
    def attributes() -> dict[str, Any]:
        steps = state.steps.values()
        found: dict[str, Any] = {
            "saga.id": state.saga_id,
            "saga.name": state.saga_name,
            "saga.version": state.saga_version,
            "saga.outcome": outcome,
            "saga.steps.total": len(state.steps),
            "saga.steps.failed": sum(s.status in FAILED_STEPS for s in steps),
            "saga.steps.compensated": sum(s.compensation in UNDONE for s in steps),
        }
        if state.failure_step:
            found["saga.failure.step"] = state.failure_step
        if state.failure_reason:
            found["saga.failure.reason"] = state.failure_reason
        return found

    error = None
    if outcome != "completed":
        error = (f"saga.{outcome}", state.failure_reason or entry.detail or outcome)
    return DerivedSpan(
        f"saga {state.saga_name}", None, state.started_at, entry.at, attributes, error
    )


def emit_closed(
    telemetry: Telemetry, state: InstanceState, saga_trace: Mapping[str, str], lo: int, hi: int
) -> int:
    """Write the spans closed by history entries ``[lo, hi)``; returns how many."""
    if not telemetry.enabled:
        return 0
    root = saga_span_context(saga_trace)
    if root is None:
        return 0
    spans = closed_spans(state, root.trace_id, lo, hi)
    if spans:
        _write(telemetry, spans, root, saga_trace)
    return len(spans)


def _write(
    telemetry: Telemetry,
    spans: Iterable[DerivedSpan],
    root: SpanContext,
    saga_trace: Mapping[str, str],
) -> None:
    if not root.trace_flags.sampled:
        return  # the saga was sampled out when it started: none of its spans is recorded
    context = trace.set_span_in_context(NonRecordingSpan(root))
    for derived in spans:
        links: list[Link] = []
        parent: SpanContext | None = root
        if derived.span_id is None:
            parent, span_id = None, root.span_id
            trigger = saga_trace.get(TRIGGER_KEY)
            if PARENT_KEY in saga_trace:  # a child saga: under its parent's step attempt
                parent = saga_span_context({HEADER_TRACEPARENT: saga_trace[PARENT_KEY]})
            elif trigger:
                caller = trace.get_current_span(extract({HEADER_TRACEPARENT: trigger}))
                links.append(Link(caller.get_span_context()))
        else:
            span_id = derived.span_id
        attributes = derived.attributes()
        status = Status(StatusCode.UNSET)
        if derived.error is not None:
            attributes = {**attributes, "error.type": derived.error[0]}
            status = Status(StatusCode.ERROR, derived.error[1])
        start = _ns(derived.start)
        end = max(_ns(derived.end), start)
        if write_finished(
            telemetry,
            derived.name,
            root.trace_id,
            span_id,
            parent,
            start,
            end,
            attributes,
            status,
            links,
        ):
            continue
        with forced_ids(root.trace_id, span_id, root.trace_flags.sampled):
            span = telemetry.tracer.start_span(
                derived.name,
                context=context if parent is root else _parent_context(parent),
                links=links,
                start_time=start,
            )
        if not span.is_recording():
            continue
        span.set_attributes(attributes)
        if derived.error is not None:
            span.set_status(status)
        span.end(end_time=end)


def _parent_context(parent: SpanContext | None) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(parent)) if parent else Context()
