"""Terminal rendering of instances: readable tables, no colour codes when piped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from saga.core.state import InstanceState, Status
from saga.index.entry import SagaSummary

STATUS_COLOURS = {
    Status.RUNNING: "cyan",
    Status.COMPENSATING: "yellow",
    Status.COMPLETED: "green",
    Status.COMPENSATED: "yellow",
    Status.PARKED: "red",
    Status.TERMINATED: "magenta",
}


def duration_text(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    ms = (end - start).total_seconds() * 1000
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    ]
    return "\n".join(lines)


def status_text(state: InstanceState) -> str:
    """The whole instance: outcome, steps with attempts and timings, compensation, history."""
    end = state.finished_at or state.updated_at
    out = [
        f"saga      {state.saga_name} v{state.saga_version}",
        f"id        {state.saga_id}",
        f"status    {state.status.value}",
        f"started   {state.started_at.isoformat()}",
        f"duration  {duration_text(state.started_at, end)}",
    ]
    if state.failure_reason:
        failed = f" at {state.failure_step}" if state.failure_step else ""
        out.append(f"failure   {state.failure_reason}{failed}")
    rows = []
    for name, s in state.steps.items():
        comp = s.compensation.value if s.compensation.value != "none" else ""
        if comp and s.compensation_attempt > 1:
            comp += f" ({s.compensation_attempt} attempts)"
        rows.append(
            [
                name,
                s.status.value,
                str(s.attempt or ""),
                duration_text(s.started_at, s.finished_at),
                comp,
            ]
        )
    out += ["", table(rows, ["step", "status", "attempts", "took", "compensation"]), "", "history"]
    for entry in state.history:
        when = (entry.at - state.started_at).total_seconds() * 1000
        parts = [
            entry.event,
            entry.step or "",
            f"#{entry.attempt}" if entry.attempt else "",
            entry.detail or "",
            f"by {entry.actor}" if entry.actor else "",
        ]
        out.append(f"  +{when:8.0f} ms  " + "  ".join(p for p in parts if p))
    return "\n".join(out)


def list_text(states: Sequence[InstanceState | SagaSummary]) -> str:
    if not states:
        return "no instances"
    rows = [
        [
            s.saga_id,
            f"{s.saga_name} v{s.saga_version}",
            s.status.value,
            s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            duration_text(s.started_at, s.finished_at or s.updated_at),
        ]
        for s in states
    ]
    return table(rows, ["id", "saga", "status", "started", "duration"])


BAR_WIDTH = 40


def _bar(start: datetime | None, end: datetime | None, origin: datetime, span: float) -> str:
    if start is None:
        return " " * BAR_WIDTH
    end = end or start
    left = int((start - origin).total_seconds() / span * BAR_WIDTH)
    width = max(1, round((end - start).total_seconds() / span * BAR_WIDTH))
    left = min(left, BAR_WIDTH - 1)
    width = min(width, BAR_WIDTH - left)
    return " " * left + "█" * width + " " * (BAR_WIDTH - left - width)


STEP_ENDS = ("step.abandoned", "step.timed-out", "step.failed", "step.succeeded")
UNDO_ENDS = ("compensation.failed", "saga.parked", "compensation.succeeded", "compensation.sent")


def _ended_at(state: InstanceState, step: str, events: tuple[str, ...]) -> datetime | None:
    """When the history says ``step``'s last try ended (the state keeps no end for an
    abandoned step or an undo that failed and parked the saga)."""
    for entry in reversed(state.history):
        if entry.step == step and entry.event in events:
            return entry.at
    return None


def waterfall_text(state: InstanceState, trace_id: str | None) -> str:
    """Steps and compensations on one time axis, from the instance's own record.

    A step or undo still in progress is drawn up to the last update; an undo queued
    behind one that parked the saga is listed, with an empty bar."""
    end = state.finished_at or state.updated_at
    span = max((end - state.started_at).total_seconds(), 0.001)
    rows: list[list[str]] = []
    for name, s in state.steps.items():
        if s.started_at is None:
            continue
        detail = s.reason or ""
        finished = s.finished_at or _ended_at(state, name, STEP_ENDS)
        if finished is None and s.status.value in ("active", "retry-wait"):
            finished, detail = end, detail or "in progress"
        rows.append(
            [
                name,
                s.status.value,
                str(s.attempt),
                _bar(s.started_at, finished, state.started_at, span),
                duration_text(s.started_at, finished),
                detail,
            ]
        )
    compensated = [(n, s) for n, s in state.steps.items() if s.compensation_started_at]
    for name, s in sorted(compensated, key=lambda item: item[1].compensation_started_at or end):
        finished = s.compensation_finished_at or _ended_at(state, name, UNDO_ENDS)
        if s.compensation.value in ("active", "retry-wait"):
            finished = end
        rows.append(
            [
                f"undo {name}",
                s.compensation.value,
                str(s.compensation_attempt),
                _bar(s.compensation_started_at, finished, state.started_at, span),
                duration_text(s.compensation_started_at, finished),
                s.compensation_reason or "",
            ]
        )
    queue = state.compensation_queue
    for name in queue:
        s = state.steps[name]
        if s.compensation_started_at is None:
            waiting = f"waiting for undo {queue[0]}" if queue[0] != name else "waiting"
            rows.append([f"undo {name}", "queued", "0", " " * BAR_WIDTH, "-", waiting])
    header = [
        f"saga {state.saga_name} v{state.saga_version}  id {state.saga_id}  {state.status.value}"
        f"  {duration_text(state.started_at, end)}",
        f"trace {trace_id}" if trace_id else "trace (none: tracing was off when this saga started)",
        "",
    ]
    scale = [
        "",
        "",
        "",
        "0".ljust(BAR_WIDTH - len(duration_text(state.started_at, end)))
        + duration_text(state.started_at, end),
        "",
        "",
    ]
    body = table([scale, *rows], ["step", "outcome", "tries", "timeline", "took", "detail"])
    return "\n".join(header) + body
