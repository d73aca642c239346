"""What a transition means for metrics: compare the state before and after."""

from __future__ import annotations

from datetime import datetime

from opentelemetry.metrics import NoOpMeter

from saga.core.state import InstanceState, Status, StepStatus
from saga.telemetry.metrics import SagaMetrics
from saga.telemetry.setup import Telemetry

STEP_ENDED = {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.TIMED_OUT, StepStatus.ABANDONED}


class Observer:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        meter = telemetry.meter
        self.metrics = (
            SagaMetrics.create(meter)
            if meter is not None and not isinstance(meter, NoOpMeter)
            else None
        )
        """None: nothing to count. A meter of a disabled SDK (``OTEL_SDK_DISABLED``, as the
        bench runs the engine with its admin endpoint on) is a no-op one: its instruments
        record nothing, so the labels and step scans of every transition are skipped."""

    def transition(
        self,
        before: InstanceState | None,
        after: InstanceState,
        now: datetime,
    ) -> None:
        if self.metrics is None:
            return  # spans: saga.telemetry.recovery.SpanMarks
        name = after.saga_name
        labels = {"saga.name": name}
        if before is None:
            self.metrics.add(self.metrics.started, labels)
        for step, s in after.steps.items():
            old = before.steps.get(step) if before else None
            if s.status in STEP_ENDED and (old is None or old.status not in STEP_ENDED):
                self._step(after, step, now)
        if before is not None and before.status == after.status:
            return
        if after.status is Status.COMPENSATED and after.reopened:
            return  # counted when it was first compensated
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

    def _step(self, state: InstanceState, step: str, now: datetime) -> None:
        if self.metrics is None:
            return
        s = state.steps[step]
        start, end = s.started_at or now, s.finished_at or now
        self.metrics.step_duration.record(
            (end - start).total_seconds(),
            {"saga.name": state.saga_name, "saga.step": step, "saga.step.outcome": s.status.value},
        )

    def dead_letter(self, code: str) -> None:
        if self.metrics:
            self.metrics.add(self.metrics.dead_letters, {"saga.dead_letter.code": code})
