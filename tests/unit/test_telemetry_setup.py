"""Metrics go over OTLP only when asked for: a traces-only backend refuses them every interval."""

from __future__ import annotations

import pytest

from saga.telemetry import setup
from saga.telemetry.setup import Telemetry, _metrics_wanted, telemetry_from_env

OTEL = (
    "OTEL_SDK_DISABLED",
    "OTEL_METRICS_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_METRICS_EXPORTER": "otlp"}, True),
        (
            {"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://x"},
            False,
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, True),
        ({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({}, False),
    ],
)
def test_metrics_are_exported_only_when_asked_for(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], wanted: bool
) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _metrics_wanted() is wanted


def test_telemetry_from_env_writes_spans_whole_with_its_batch_processor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its only processor acts when a span ends: spans known whole are handed to it finished."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setattr(setup.trace, "set_tracer_provider", lambda provider: None)  # no global
    telemetry = telemetry_from_env("test")
    try:
        assert telemetry.whole_spans
    finally:
        telemetry.shutdown()
    assert not Telemetry.disabled().whole_spans
