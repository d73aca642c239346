"""What a transition means for traces and metrics: compare the state before and after."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from saga.core.state import CompensationStatus, InstanceState, Status, StepStatus
from saga.telemetry.metrics import SagaMetrics
from saga.telemetry.setup import Telemetry
from saga.telemetry.spans import outcome_span

STEP_ENDED = {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.ABANDONED}
COMPENSATION_ENDED = {
    CompensationStatus.DONE,
    CompensationStatus.FAILED,
    CompensationStatus.RESOLVED,
}


class Observer:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.metrics = SagaMetrics.create(telemetry.meter) if telemetry.meter else None

    def transition(
        self,
        before: InstanceState | None,
        after: InstanceState,
        saga_trace: Mapping[str, str],
        now: datetime,
    ) -> None:
        if not self.telemetry.enabled and self.metrics is None:
            return
        name = after.saga_name
        labels = {"saga.name": name}
        if before is None and self.metrics:
            self.metrics.add(self.metrics.started, labels)
        for step, s in after.steps.items():
            old = before.steps.get(step) if before else None
            if s.status in STEP_ENDED and (old is None or old.status not in STEP_ENDED):
                self._step(after, step, saga_trace, now)
            if s.compensation in COMPENSATION_ENDED and (
                old is None or old.compensation not in COMPENSATION_ENDED
            ):
                self._compensation(after, step, saga_trace, now)
        if before is not None and before.status == after.status:
            return
        if after.status is Status.COMPENSATED and after.reopened:
            return  # counted when it was first compensated
        if self.metrics is None:
            return
        counters = {
            Status.COMPLETED: self.metrics.completed,
            Status.COMPENSATED: self.metrics.compensated,
            Status.PARKED: self.metrics.parked,
        }
        counter = counters.get(after.status)
        if counter is not None:
            self.metrics.add(counter, labels)
        if after.status.terminal:
            seconds = ((after.finished_at or now) - after.started_at).total_seconds()
            self.metrics.saga_duration.record(
                seconds, {**labels, "saga.outcome": after.status.value}
            )

    def _step(
        self, state: InstanceState, step: str, saga_trace: Mapping[str, str], now: datetime
    ) -> None:
        s = state.steps[step]
        start, end = s.started_at or now, s.finished_at or now
        failed = s.status is not StepStatus.SUCCEEDED
        outcome_span(
            self.telemetry,
            f"saga.step {step}",
            saga_trace,
            start,
            end,
            lambda: {
                "saga.id": state.saga_id,
                "saga.name": state.saga_name,
                "saga.step": step,
                "saga.step.outcome": s.status.value,
                "saga.step.attempts": s.attempt,
            },
            error=(s.reason or s.status.value) if failed else None,
        )
        if self.metrics:
            self.metrics.step_duration.record(
                (end - start).total_seconds(),
                {
                    "saga.name": state.saga_name,
                    "saga.step": step,
                    "saga.step.outcome": s.status.value,
                },
            )

    def _compensation(
        self, state: InstanceState, step: str, saga_trace: Mapping[str, str], now: datetime
    ) -> None:
        s = state.steps[step]
        failed = s.compensation is CompensationStatus.FAILED
        outcome_span(
            self.telemetry,
            f"saga.compensate {step}",
            saga_trace,
            s.compensation_started_at or now,
            s.compensation_finished_at or now,
            lambda: {
                "saga.id": state.saga_id,
                "saga.name": state.saga_name,
                "saga.step": step,
                "saga.compensation.outcome": s.compensation.value,
                "saga.compensation.attempts": s.compensation_attempt,
            },
            error=(s.compensation_reason or "compensation failed") if failed else None,
        )

    def dead_letter(self, code: str) -> None:
        if self.metrics:
            self.metrics.add(self.metrics.dead_letters, {"saga.dead_letter.code": code})
