"""Saga metrics through OpenTelemetry (exported by OTLP, scraped via the admin endpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Counter, Histogram, Meter


@dataclass
class SagaMetrics:
    started: Counter
    completed: Counter
    compensated: Counter
    parked: Counter
    dead_letters: Counter
    step_duration: Histogram
    saga_duration: Histogram

    @classmethod
    def create(cls, meter: Meter) -> SagaMetrics:
        def counter(name: str, text: str) -> Counter:
            return meter.create_counter(name, unit="{saga}", description=text)

        return cls(
            started=counter("saga.started", "Sagas started"),
            completed=counter("saga.completed", "Sagas completed"),
            compensated=counter("saga.compensated", "Sagas compensated"),
            parked=counter("saga.parked", "Sagas parked for an operator"),
            dead_letters=meter.create_counter(
                "saga.dead_letters", unit="{message}", description="Messages dead-lettered"
            ),
            step_duration=meter.create_histogram(
                "saga.step.duration", unit="s", description="Step duration, start to outcome"
            ),
            saga_duration=meter.create_histogram(
                "saga.duration", unit="s", description="Saga duration, start to end"
            ),
        )

    def add(self, counter: Counter, attributes: dict[str, Any]) -> None:
        counter.add(1, attributes)
