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
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

log = logging.getLogger(__name__)

TRACER_NAME = "drone_shop_crm"
SERVICE_NAMESPACE = "drone-shop"
TARGET_SERVICE = "enterprise-crm-portal"
PEER_SERVICE = "enterprise-crm"
# Every integration operation, span `integration.crm.<operation>`: one list for the API, the runs and
# the later catalog and order paths.
OPERATIONS = frozenset(
    {"sync_customers", "sync_order", "customer_enrichment", "ticket_products", "health_check", "catalog_sync"}
)
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
    configure_logging()
    if _truthy("OTEL_SDK_DISABLED"):
        return None
    with _lock:
        if _state["pid"] == os.getpid():
            return _state["provider"]
        if _state["provider"] is not None:
            # A forked child (gunicorn --preload): the provider is inherited and its batch processor
            # restarts its export thread after the fork; a second provider could not become the global.
            _state["pid"] = os.getpid()
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
            provider.add_span_processor(BatchSpanProcessor(RedactingExporter(exporter)))
        if _truthy("OTEL_TRACES_CONSOLE"):
            provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(ConsoleSpanExporter())))
        trace.set_tracer_provider(provider)
        _instrument(provider)
        atexit.register(shutdown_telemetry)
        _state.update(pid=os.getpid(), provider=provider)
        return provider


def _instrument(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    httpx_instrumentor = HTTPXClientInstrumentor()
    if not httpx_instrumentor.is_instrumented_by_opentelemetry:
        httpx_instrumentor.instrument(tracer_provider=provider)


def instrument_engine(engine: Any) -> None:
    """Database spans for one of our engines (not Dagster's own storage, which the global hook would catch)."""
    if _state["provider"] is None or _state["pid"] != os.getpid():
        return
    from opentelemetry import metrics
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # The instrumentor's declared range stops below SQLAlchemy 2.1; the engine events EngineTracer uses
    # are unchanged in 2.1.
    usage = metrics.get_meter(TRACER_NAME).create_up_down_counter("db.client.connections.usage", unit="connections")
    EngineTracer(tracer(), engine, usage, enable_commenter=False)


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
    return trace.get_tracer(TRACER_NAME, _cached_version())


@lru_cache(maxsize=1)
def _cached_version() -> str:
    return _package_version()


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
    if operation not in OPERATIONS:
        raise ValueError(f"unknown integration operation {operation!r}; add it to OPERATIONS")
    base = {"integration.target_service": TARGET_SERVICE, "peer.service": PEER_SERVICE}
    with tracer().start_as_current_span(
        f"integration.crm.{operation}",
        context=context,
        links=links,
        kind=kind,
        attributes=safe_attributes({**base, **attributes}),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            mark_error(span, exc)
            raise


def set_attributes(span: Span, **attributes: Any) -> None:
    """Add attributes to a span through the same secret/email filter."""
    span.set_attributes(safe_attributes(attributes))


def mark_error(span: Span, exc: BaseException) -> None:
    """Mark a span failed with the exception's type and a redacted message (driver errors quote values)."""
    message = redact(str(exc))[:500]
    span.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": message})
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("error.type", type(exc).__name__)


_EMAIL = re.compile(r"[\w.+%'-]+@[\w-]+(?:\.[\w-]+)+")


def redact(text: str) -> str:
    """Text with every email address replaced."""
    # Most strings (SQL, URLs) hold no "@": skip the regex for them, it runs on every exported span.
    return _EMAIL.sub("[email]", text) if "@" in text else text


class RedactingExporter(SpanExporter):
    """Wraps an exporter and removes email addresses from every string a span carries.

    Our own attributes pass `safe_attributes`; this is the net for what instrumentations add (a driver's
    error text in a status, a query string in a URL).
    """

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([_redacted(span) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: redact(v) if isinstance(v, str) else v for k, v in (attributes or {}).items()}


def _redacted(span: ReadableSpan) -> ReadableSpan:
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean(span.attributes),
        events=[Event(e.name, _clean(e.attributes), e.timestamp) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


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
                entry.setdefault(key, value)  # extras never overwrite level, trace_id and the rest
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


_PROJECT_LOGGERS = ("api", "assets", "resources", "domain", "pipelines")


def configure_logging() -> None:
    """One stderr handler on the project's loggers: JSON lines (default) or text (LOG_FORMAT=text)."""
    text = os.environ.get("LOG_FORMAT", "json").lower() == "text"
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s") if text else JsonLogFormatter()
    for name in _PROJECT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(getattr(h, "_crm_integration", False) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler._crm_integration = True  # type: ignore[attr-defined]
            handler.setFormatter(formatter)
            logger.addHandler(handler)
        logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
