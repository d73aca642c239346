from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from saga.logs import CURRENT_SAGA, JsonFormatter, SagaContextFilter


def record(message: str) -> logging.LogRecord:
    entry = logging.LogRecord("saga.engine", logging.INFO, __file__, 1, message, (), None)
    SagaContextFilter().filter(entry)
    return entry


def test_json_lines_carry_saga_and_trace() -> None:
    tracer = TracerProvider().get_tracer("test")
    token = CURRENT_SAGA.set(("order-fulfilment", "o-1"))
    try:
        with tracer.start_as_current_span("work") as span:
            line = json.loads(JsonFormatter().format(record("charged")))
    finally:
        CURRENT_SAGA.reset(token)
    assert line["message"] == "charged"
    assert line["saga_name"] == "order-fulfilment"
    assert line["saga_id"] == "o-1"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


def test_lines_outside_a_saga_have_no_saga_fields() -> None:
    line = json.loads(JsonFormatter().format(record("started")))
    assert "saga_id" not in line
    assert "trace_id" not in line
