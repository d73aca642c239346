"""Duration histograms have buckets that fit seconds (issue 12, defect 9)."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from saga.telemetry.metrics import DURATION_BOUNDARIES, SagaMetrics
from saga.telemetry.setup import new_meter_provider


def recorded(name: str, seconds: float) -> HistogramDataPoint:
    reader = InMemoryMetricReader()
    provider = new_meter_provider(Resource.create({}), [reader])
    metrics = SagaMetrics.create(provider.get_meter("test"))
    histogram = {
        "saga.step.duration": metrics.step_duration,
        "saga.duration": metrics.saga_duration,
    }
    histogram[name].record(seconds, {"saga.name": "shop"})
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]
    provider.shutdown()
    assert len(points) == 1
    point = points[0]
    assert isinstance(point, HistogramDataPoint)
    return point


def test_a_step_of_50_ms_lands_in_a_bucket_of_its_own() -> None:
    point = recorded("saga.step.duration", 0.05)

    assert tuple(point.explicit_bounds) == DURATION_BOUNDARIES
    bucket = list(point.bucket_counts).index(1)
    assert 0 < bucket < len(point.bucket_counts) - 1, "not the first nor the catch-all bucket"
    assert point.explicit_bounds[bucket - 1] < 0.05 <= point.explicit_bounds[bucket]


def test_the_saga_duration_uses_the_same_buckets() -> None:
    point = recorded("saga.duration", 42.0)

    assert tuple(point.explicit_bounds) == DURATION_BOUNDARIES
    bucket = list(point.bucket_counts).index(1)
    assert point.explicit_bounds[bucket - 1] < 42.0 <= point.explicit_bounds[bucket]
