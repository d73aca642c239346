"""Saga metrics through OpenTelemetry (exported by OTLP, scraped via the admin endpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import Counter, Histogram, Meter

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.view import View

STEP_DURATION = "saga.step.duration"
SAGA_DURATION = "saga.duration"
DURATION_BOUNDARIES = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
"""Seconds, 5 ms to 10 min: a step takes milliseconds to minutes. The SDK's default
boundaries (0, 5, 10 ... 10000) were made for milliseconds and put every step in one bucket."""


def metric_views() -> list[View]:
    """The views a meter provider needs for these metrics (explicit duration buckets)."""
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    buckets = ExplicitBucketHistogramAggregation(list(DURATION_BOUNDARIES))
    return [
        View(instrument_name=name, aggregation=buckets) for name in (STEP_DURATION, SAGA_DURATION)
    ]


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
                STEP_DURATION, unit="s", description="Step duration, start to outcome"
            ),
            saga_duration=meter.create_histogram(
                SAGA_DURATION, unit="s", description="Saga duration, start to end"
            ),
        )

    def add(self, counter: Counter, attributes: dict[str, Any]) -> None:
        counter.add(1, attributes)
