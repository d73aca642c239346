"""Structured logs that carry the saga id and the trace id.

``SAGA_LOG_FORMAT=json`` prints one JSON object per line (for log shippers);
the default is readable text. Either way each record handled for an instance
carries ``saga_name``, ``saga_id`` and, when tracing is on, ``trace_id``.
"""

from __future__ import annotations

import json
import logging
import os
from contextvars import ContextVar

from opentelemetry import trace

CURRENT_SAGA: ContextVar[tuple[str, str] | None] = ContextVar("saga", default=None)
"""(saga name, saga id) of the instance being handled in this task."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(saga)s%(message)s"


class SagaContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        current = CURRENT_SAGA.get()
        record.saga_name, record.saga_id = current if current else (None, None)
        record.saga = f"[{current[0]} {current[1]}] " if current else ""
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        record.span_id = format(span.span_id, "016x") if span.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("saga_name", "saga_id", "trace_id", "span_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in self.FIELDS if getattr(record, k, None)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", fmt: str | None = None) -> None:
    """Root logging for the ``saga`` processes (engine, participants, CLI)."""
    handler = logging.StreamHandler()
    handler.addFilter(SagaContextFilter())
    fmt = (fmt or os.environ.get("SAGA_LOG_FORMAT", "text")).lower()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
