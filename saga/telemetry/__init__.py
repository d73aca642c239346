"""OpenTelemetry for sagas: one trace per saga across the engine and every service.

Context travels in NATS headers (W3C ``traceparent``/``tracestate``, baggage). No span
stays open across a wait: the saga's root context is stored with the instance, and
step and compensation spans are written when their outcome is known, with the
step's real start time.

Each name loads its module on first use (PEP 562): a participant that only needs
``Telemetry`` does not load the propagators (``opentelemetry.propagate`` reads its entry
points at import).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from saga.telemetry.propagation import extract, inject, trace_id_of
    from saga.telemetry.setup import Telemetry, telemetry_from_env

__all__ = ["Telemetry", "extract", "inject", "telemetry_from_env", "trace_id_of"]

_MODULE_OF = {
    "Telemetry": "setup",
    "telemetry_from_env": "setup",
    "extract": "propagation",
    "inject": "propagation",
    "trace_id_of": "propagation",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"saga.telemetry.{module}"), name)
    globals()[name] = value
    return value
