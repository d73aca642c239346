"""OpenTelemetry for sagas: one trace per saga across the engine and every service.

Context travels in NATS headers (W3C ``traceparent``/``tracestate``, baggage). No span
stays open across a wait: the saga's root context is stored with the instance, and
step and compensation spans are written when their outcome is known, with the
step's real start time.
"""

from saga.telemetry.propagation import extract, inject, trace_id_of
from saga.telemetry.setup import Telemetry, telemetry_from_env

__all__ = ["Telemetry", "extract", "inject", "telemetry_from_env", "trace_id_of"]
