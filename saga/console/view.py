"""What the instance page shows, worked out from the state alone (no I/O, no HTML).

The timeline groups the history's events into kinds a reader scans for (attempts, timers,
replies, compensations, late replies, operator actions); the diagram is the definition's
Mermaid flowchart (:func:`saga.definition.diagram.to_mermaid`) with each step's node
coloured by its state and each undo node by its compensation's state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from saga.core.state import CompensationStatus, InstanceState, Status, StepStatus
from saga.definition.diagram import to_mermaid
from saga.definition.model import SagaDefinition

KINDS: dict[str, str] = {
    "saga.started": "lifecycle",
    "saga.completed": "lifecycle",
    "saga.compensated": "compensation",
    "saga.compensating": "compensation",
    "saga.failing": "compensation",
    "saga.parked": "failure",
    "saga.terminated": "failure",
    "saga.reopened": "late",
    "saga.undo-requested": "compensation",
    "saga.deadline-exceeded": "timer",
    "step.started": "attempt",
    "step.retried": "attempt",
    "step.running": "attempt",
    "step.sent": "attempt",
    "step.retry-scheduled": "timer",
    "step.timed-out": "timer",
    "step.succeeded": "reply",
    "step.failed": "failure",
    "step.skipped": "lifecycle",
    "step.abandoned": "compensation",
    "step.early-reply": "reply",
    "step.early-reply-applied": "reply",
    "step.late-success": "late",
    "step.late-failure": "late",
    "compensation.started": "compensation",
    "compensation.retried": "compensation",
    "compensation.sent": "compensation",
    "compensation.retry-scheduled": "timer",
    "compensation.succeeded": "compensation",
    "compensation.failed": "failure",
}
"""History event -> the kind the timeline colours it as; ``operator.*`` are ``operator``."""


def kind_of(event: str) -> str:
    if event.startswith("operator."):
        return "operator"
    return KINDS.get(event, "other")


@dataclass(frozen=True)
class TimelineRow:
    at: datetime
    since_start: timedelta
    event: str
    kind: str
    step: str | None
    attempt: int | None
    detail: str | None


def timeline(state: InstanceState) -> list[TimelineRow]:
    return [
        TimelineRow(
            at=entry.at,
            since_start=entry.at - state.started_at,
            event=entry.event,
            kind=kind_of(entry.event),
            step=entry.step,
            attempt=entry.attempt,
            detail=entry.detail,
        )
        for entry in state.history
    ]


STEP_CLASSES: dict[StepStatus, str] = {
    StepStatus.PENDING: "pending",
    StepStatus.ACTIVE: "active",
    StepStatus.RETRY_WAIT: "active",
    StepStatus.SUCCEEDED: "succeeded",
    StepStatus.FAILED: "failed",
    StepStatus.TIMED_OUT: "failed",
    StepStatus.ABANDONED: "failed",
    StepStatus.SKIPPED: "skipped",
}
UNDO_CLASSES: dict[CompensationStatus, str] = {
    CompensationStatus.QUEUED: "pending",
    CompensationStatus.ACTIVE: "active",
    CompensationStatus.RETRY_WAIT: "active",
    CompensationStatus.DONE: "compensated",
    CompensationStatus.RESOLVED: "compensated",
    CompensationStatus.FAILED: "failed",
}
CLASS_STYLES = {
    "pending": "fill:#f3f4f6,stroke:#9ca3af,color:#374151",
    "active": "fill:#dbeafe,stroke:#2563eb,color:#1e3a8a,stroke-width:2px",
    "succeeded": "fill:#dcfce7,stroke:#16a34a,color:#14532d",
    "failed": "fill:#fee2e2,stroke:#dc2626,color:#7f1d1d,stroke-width:2px",
    "compensated": "fill:#fef3c7,stroke:#d97706,color:#78350f",
    "skipped": "fill:#ffffff,stroke:#d1d5db,color:#9ca3af,stroke-dasharray: 3 3",
    "reached": "fill:#1f2937,stroke:#1f2937,color:#ffffff",
}
"""Mermaid ``classDef`` styles; the console's stylesheet uses the same colours."""


def step_classes(definition: SagaDefinition, state: InstanceState) -> dict[str, str]:
    """Diagram node id -> colour class, for every node whose state is known."""
    classes: dict[str, str] = {}
    for step in definition.steps:
        s = state.steps.get(step.name)
        classes[step.name] = STEP_CLASSES[s.status] if s is not None else "pending"
        if step.compensate is not None and s is not None and s.compensation in UNDO_CLASSES:
            classes[f"undo_{step.name}"] = UNDO_CLASSES[s.compensation]
    if state.status in (Status.COMPLETED, Status.COMPENSATED):
        classes[state.status.value] = "reached"
    return classes


def coloured_diagram(definition: SagaDefinition, state: InstanceState | None = None) -> str:
    """The definition's flowchart; with ``state``, every node coloured by its state."""
    source = to_mermaid(definition)
    if state is None:
        return source
    classes = step_classes(definition, state)
    lines = [f"  classDef {name} {style}" for name, style in CLASS_STYLES.items()]
    by_class: dict[str, list[str]] = {}
    for node, cls in classes.items():
        by_class.setdefault(cls, []).append(node)
    lines += [f"  class {','.join(nodes)} {cls}" for cls, nodes in by_class.items()]
    return source + "\n".join(lines) + "\n"


def format_offset(value: timedelta) -> str:
    """``+1.234s`` / ``+2m05s``: time since the saga started, short enough for a column."""
    seconds = value.total_seconds()
    if seconds < 60:
        return f"+{seconds:.3f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"+{minutes}m{rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"+{hours}h{minutes:02d}m"
