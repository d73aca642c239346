"""Turn tracing and metrics on the standard OpenTelemetry way, from environment variables.

Tracing is on when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``OTEL_TRACES_EXPORTER`` names an exporter,
and ``OTEL_SDK_DISABLED`` is not ``true``. Otherwise nothing is created at all, so
tracing off costs nothing. The exporters read their own settings
(``OTEL_EXPORTER_OTLP_PROTOCOL``, headers, timeouts); the resource reads
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``.

Metrics are exported over OTLP only when asked for (``OTEL_METRICS_EXPORTER=otlp`` or
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``): an endpoint alone means traces.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter, MeterProvider
from opentelemetry.trace import Tracer, TracerProvider

from saga.telemetry.metrics import metric_views

log = logging.getLogger("saga.telemetry")
INSTRUMENTATION = "saga"


@dataclass
class Telemetry:
    """What the engine and the SDK use to trace and count; ``enabled`` False means do nothing."""

    tracer: Tracer = field(default_factory=lambda: trace.NoOpTracer())
    meter: Meter | None = None
    enabled: bool = False
    providers: list[Any] = field(default_factory=list)
    owned: bool = True
    """False: the providers belong to the caller (not shut down here)."""
    whole_spans: bool = False
    """True: the SDK's tracer, whose processors act only when a span ends (the SDK's batch
    or simple processor), so spans known whole are handed to them finished
    (:mod:`saga.telemetry.finished`); False: every span is started and ended live."""

    @classmethod
    def disabled(cls) -> Telemetry:
        return cls()

    @classmethod
    def for_providers(
        cls,
        tracer_provider: TracerProvider,
        meter_provider: MeterProvider | None = None,
        whole_spans: bool = False,
    ) -> Telemetry:
        """Explicit providers (tests use an in-memory exporter this way); ``whole_spans``:
        their processors act only when a span ends (see :attr:`whole_spans`)."""
        from saga.telemetry.ids import install  # the SDK: loaded only when tracing is on

        meter = meter_provider.get_meter(INSTRUMENTATION) if meter_provider else None
        install(tracer_provider)
        tracer = tracer_provider.get_tracer(INSTRUMENTATION)
        return cls(tracer, meter, True, [tracer_provider], owned=False, whole_spans=whole_spans)

    @classmethod
    def current(cls) -> Telemetry:
        """The process-wide providers, if something configured them (else disabled)."""
        provider = trace.get_tracer_provider()
        if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
            return cls.disabled()
        from saga.telemetry.ids import install

        install(provider)
        return cls(provider.get_tracer(INSTRUMENTATION), None, True)

    def flush(self) -> bool:
        """Export what the tracer holds now; False if an exporter did not finish."""
        done = True
        for provider in self.providers:
            flush = getattr(provider, "force_flush", None)
            if flush is not None and hasattr(provider, "get_tracer"):
                try:
                    done = bool(flush()) and done
                except Exception:
                    log.warning("telemetry flush failed", exc_info=True)
                    done = False
        return done

    def shutdown(self) -> None:
        """Flush and stop exporters (on process exit)."""
        for provider in self.providers if self.owned else ():
            try:
                provider.shutdown()
            except Exception:  # an exporter's error must never stop the process
                log.warning("telemetry shutdown failed", exc_info=True)


def _wanted() -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return bool(exporter or endpoint)


def _metrics_wanted() -> bool:
    """Only when asked for: a traces-only backend refuses metrics (405), every interval."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_METRICS_EXPORTER", "").strip().lower()
    if exporter:
        return exporter == "otlp"
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


def telemetry_from_env(service_name: str, prometheus: bool = False) -> Telemetry:
    """Configure the SDK from the standard variables; a disabled Telemetry when not asked for.

    ``prometheus`` adds a metrics reader for the admin endpoint's ``/metrics``, even
    when tracing is off (metrics are then the only thing recorded).
    """
    tracing = _wanted()
    if not tracing and not prometheus and not _metrics_wanted():
        return Telemetry.disabled()
    from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    resource = _hashed_once(Resource.create(attributes))
    providers: list[Any] = []
    tracer: Tracer = trace.NoOpTracer()
    if tracing:
        tracer_provider = _tracer_provider(resource)
        providers.append(tracer_provider)
        tracer = tracer_provider.get_tracer(INSTRUMENTATION)
        trace.set_tracer_provider(tracer_provider)
    readers: list[MetricReader] = []
    if _metrics_wanted():
        readers.append(PeriodicExportingMetricReader(_otlp_metrics()))
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader

        readers.append(PrometheusMetricReader())
    meter = None
    if readers:
        meter_provider = new_meter_provider(resource, readers)
        providers.append(meter_provider)
        metrics.set_meter_provider(meter_provider)
        meter = meter_provider.get_meter(INSTRUMENTATION)
    log.info("telemetry: tracing %s, metrics readers %d", "on" if tracing else "off", len(readers))
    return Telemetry(tracer, meter, tracing, providers, whole_spans=tracing)


def new_meter_provider(resource: Any, readers: list[Any]) -> Any:
    """An SDK meter provider with the views the saga metrics need (duration buckets)."""
    from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider

    return SdkMeterProvider(resource=resource, metric_readers=readers, views=metric_views())


def _hashed_once(resource: Any) -> Any:
    """The same resource, hashed once instead of on every use.

    The OTLP span encoder groups every exported span by ``hash(span.resource)``, and the
    SDK's ``Resource.__hash__`` serialises all attributes to JSON each time: a few percent
    of a traced engine's CPU. A resource is immutable, so its hash can be kept.
    """
    from opentelemetry.sdk.resources import Resource

    class HashedOnce(Resource):
        def __init__(self, attributes: Any, schema_url: str | None = None) -> None:
            super().__init__(attributes, schema_url)
            self._hash = super().__hash__()

        def __hash__(self) -> int:
            return self._hash

    return HashedOnce(resource.attributes, resource.schema_url)


def _tracer_provider(resource: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from saga.telemetry.ids import install

    provider = SdkTracerProvider(resource=resource)
    install(provider)
    exporter_name = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    exporter = ConsoleSpanExporter() if exporter_name == "console" else _otlp_spans()
    provider.add_span_processor(BatchSpanProcessor(exporter))  # acts when a span ends only
    return provider


def _grpc() -> bool:
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    return protocol.strip().lower() == "grpc"


def _otlp_spans() -> Any:
    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter()


def _otlp_metrics() -> Any:
    if _grpc():
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter()
