"""OpenTelemetry in one place (DESIGN D8): provider, exporters, instrumentation, propagation, JSON logs.

Every process calls `setup_telemetry` once (the API after gunicorn forks, each Dagster run on start);
spans are always created so `traceparent` reaches the CRM, and exported only when
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_CONSOLE=true) says where.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

TRACER_NAME = "drone_shop_crm"
SERVICE_NAMESPACE = "drone-shop"
TARGET_SERVICE = "enterprise-crm-portal"
PEER_SERVICE = "enterprise-crm"
# Dagster run tags that carry the caller's W3C trace context into a run (DESIGN D8).
TRACEPARENT_TAG = "otel/traceparent"
TRACESTATE_TAG = "otel/tracestate"
# Attribute keys that must never carry values (D12, and no raw emails in spans).
_FORBIDDEN_ATTRIBUTE_PARTS = ("email", "key", "secret", "password", "token")

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None, "provider": None}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _package_version() -> str:
    try:
        return version("drone-shop-crm-integration")
    except PackageNotFoundError:
        return "0.0.0"


def _exporter() -> Any:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "http/protobuf"
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def setup_telemetry(component: str) -> TracerProvider | None:
    """Install the tracer provider, exporters, instrumentation and JSON logs, once per process.

    `component` names the process kind (api, dagster-run) in `service.name` unless OTEL_SERVICE_NAME is
    set. OTEL_SDK_DISABLED=true turns all of it off.
    """
    if _truthy("OTEL_SDK_DISABLED"):
        return None
    with _lock:
        if _state["pid"] == os.getpid():
            return _state["provider"]
        defaults = {
            "service.name": f"drone-shop-crm-{component}",
            "service.version": _package_version(),
            "service.namespace": SERVICE_NAMESPACE,
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
        }
        # Standard OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our defaults.
        resource = Resource.create(defaults).merge(OTELResourceDetector().detect())
        provider = TracerProvider(resource=resource)
        exporter = _exporter()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        if _truthy("OTEL_TRACES_CONSOLE"):
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        _instrument(provider)
        configure_logging()
        atexit.register(shutdown_telemetry)
        _state.update(pid=os.getpid(), provider=provider)
        return provider


def _instrument(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    httpx_instrumentor = HTTPXClientInstrumentor()
    if not httpx_instrumentor.is_instrumented_by_opentelemetry:
        httpx_instrumentor.instrument(tracer_provider=provider)
    # Wraps sqlalchemy.create_engine, which resources.db looks up at call time: engines made from now on
    # in this process get database spans.
    sqlalchemy_instrumentor = SQLAlchemyInstrumentor()
    if not sqlalchemy_instrumentor.is_instrumented_by_opentelemetry:
        # Its declared range stops below SQLAlchemy 2.1; the engine events it uses are unchanged in 2.1.
        sqlalchemy_instrumentor.instrument(tracer_provider=provider, enable_commenter=False, skip_dep_check=True)


def instrument_flask(app: Any) -> None:
    """Server spans for every request, continuing an inbound `traceparent`."""
    if _state["provider"] is None:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app, tracer_provider=_state["provider"], enable_commenter=False)


def flush_telemetry(timeout_ms: int = 10_000) -> None:
    """Export what is buffered now (end of a Dagster run, end of a test)."""
    provider = _state["provider"]
    if provider is not None and _state["pid"] == os.getpid():
        provider.force_flush(timeout_ms)


def shutdown_telemetry() -> None:
    """Flush and stop the exporters (process exit)."""
    provider = _state["provider"]
    if provider is not None and _state["pid"] == os.getpid():
        provider.shutdown()


def tracer() -> trace.Tracer:
    """The integration's tracer."""
    return trace.get_tracer(TRACER_NAME, _package_version())


def safe_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None values and anything whose key suggests a secret or an email (D12)."""
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None or any(part in key.lower() for part in _FORBIDDEN_ATTRIBUTE_PARTS):
            continue
        clean[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return clean


@contextmanager
def crm_span(
    operation: str,
    *,
    context: otel_context.Context | None = None,
    links: list[Link] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    **attributes: Any,
) -> Iterator[Span]:
    """A current span `integration.crm.<operation>` with the integration's standard attributes."""
    base = {"integration.target_service": TARGET_SERVICE, "peer.service": PEER_SERVICE}
    with tracer().start_as_current_span(
        f"integration.crm.{operation}",
        context=context,
        links=links,
        kind=kind,
        attributes=safe_attributes({**base, **attributes}),
    ) as span:
        yield span


def set_attributes(span: Span, **attributes: Any) -> None:
    """Add attributes to a span through the same secret/email filter."""
    span.set_attributes(safe_attributes(attributes))


def mark_error(span: Span, exc: BaseException) -> None:
    """Record an exception on a span that is not the one it was raised in."""
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))


# -- propagation across process boundaries ----------------------------------------------------------


def current_carrier() -> dict[str, str]:
    """The current context as W3C headers (`traceparent`, maybe `tracestate`); empty without a span."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def run_tags_for_current_trace() -> dict[str, str]:
    """Dagster run tags that make the run's spans children of the current span."""
    carrier = current_carrier()
    tags = {}
    if "traceparent" in carrier:
        tags[TRACEPARENT_TAG] = carrier["traceparent"]
    if carrier.get("tracestate"):
        tags[TRACESTATE_TAG] = carrier["tracestate"]
    return tags


def context_from_traceparent(traceparent: str | None, tracestate: str | None = None) -> otel_context.Context | None:
    """A parent context from a stored `traceparent` (a run tag, an inbox row); None when absent or invalid."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    ctx = propagate.extract(carrier)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def context_from_run_tags(tags: Mapping[str, str]) -> otel_context.Context | None:
    """The caller's context carried in a run's tags, if any."""
    return context_from_traceparent(tags.get(TRACEPARENT_TAG), tags.get(TRACESTATE_TAG))


def link_from_traceparent(traceparent: str | None, **attributes: Any) -> Link | None:
    """A span link to a stored `traceparent`, for work that batches many inbound requests (CRM push → run)."""
    ctx = context_from_traceparent(traceparent)
    if ctx is None:
        return None
    return Link(trace.get_current_span(ctx).get_span_context(), safe_attributes(attributes))


# -- structured logs ---------------------------------------------------------------------------------

_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = format(span_context.trace_id, "032x")
            entry["span_id"] = format(span_context.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging() -> None:
    """JSON lines on stderr for the integration's loggers, unless LOG_FORMAT=text."""
    if os.environ.get("LOG_FORMAT", "json").lower() == "text":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    for name in ("api", "assets", "resources", "domain", "pipelines"):
        logger = logging.getLogger(name)
        if not any(isinstance(h.formatter, JsonLogFormatter) for h in logger.handlers):
            logger.addHandler(handler)
        logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
