"""What a transition means for metrics (:class:`saga.engine.observe.Observer`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from saga.core.state import InstanceState, Status
from saga.engine.observe import Observer
from saga.telemetry.setup import Telemetry, new_meter_provider

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def counted(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: sum(getattr(p, "value", 0) for p in metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def test_a_meter_counts_what_the_transitions_do() -> None:
    reader = InMemoryMetricReader()
    provider = new_meter_provider(Resource.create({}), [reader])
    observer = Observer(Telemetry(meter=provider.get_meter("test")))
    assert observer.metrics is not None
    state = InstanceState(
        saga_id="o-1", saga_name="shop", saga_version=1, started_at=T0, updated_at=T0
    )
    observer.transition(None, state, T0)
    done = state.model_copy(update={"status": Status.COMPLETED, "finished_at": T0})
    observer.transition(state, done, T0)
    figures = counted(reader)
    provider.shutdown()
    assert figures["saga.started"] == 1
    assert figures["saga.completed"] == 1


def test_the_meter_of_a_disabled_sdk_is_not_observed(monkeypatch: pytest.MonkeyPatch) -> None:
    """``OTEL_SDK_DISABLED`` (the engine with its admin endpoint, metrics off): the meter is a
    no-op one, so the observer skips every transition instead of labelling it for nothing."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider = new_meter_provider(Resource.create({}), [InMemoryMetricReader()])
    observer = Observer(Telemetry(meter=provider.get_meter("test")))
    provider.shutdown()
    assert observer.metrics is None
