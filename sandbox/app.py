"""Flask application factory: CRM-like cross-cutting behaviour (headers, errors) and fault injection."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from sandbox import admin, customers, health
from sandbox.faults import FaultPlan, parse_rules
from sandbox.state import EXTENSION_KEY, SandboxState, current_state
from sandbox.variants import check_envelope, check_field_variant
from sandbox.wire import (
    SECURITY_HEADERS,
    CrmServerError,
    RequestValidationError,
    crm_500_body,
    json_response,
    random_hex,
    trace_id_from_traceparent,
)

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/_sandbox"
DROP_CONNECTION_KEY = "crm_sandbox.drop_connection"
BAD_GATEWAY_HTML = "<html><body><h1>502 Bad Gateway</h1></body></html>"
_INJECTED_500_MESSAGE = (
    "(sqlalchemy.dialects.postgresql.asyncpg.OperationalError) "
    "<class 'asyncpg.exceptions.ConnectionDoesNotExistError'>: "
    "connection was closed in the middle of operation (injected by the CRM sandbox)"
)


@dataclass
class SandboxConfig:
    """Start-up settings of one sandbox instance."""

    customers: int = 1200
    seed: int = 42
    envelope: str = "customers"
    field_variant: str = "canonical"
    faults: list[dict[str, Any]] = field(default_factory=list)
    hang_max_seconds: float = 30.0
    app_name: str = "enterprise-crm-portal"
    request_log_limit: int = 10_000

    def __post_init__(self) -> None:
        if not isinstance(self.customers, int) or self.customers < 0:
            raise ValueError("customers must be an integer >= 0")
        if not isinstance(self.seed, int):
            raise ValueError("seed must be an integer")
        check_envelope(self.envelope)
        check_field_variant(self.field_variant)
        parse_rules(list(self.faults))
        if not self.hang_max_seconds > 0:
            raise ValueError("hang_max_seconds must be > 0")
        if self.request_log_limit < 1:
            raise ValueError("request_log_limit must be >= 1")


class DroppedConnection(ConnectionAbortedError):
    """Raised to the WSGI server so that it closes the socket without writing a response."""


def create_app(config: SandboxConfig | None = None) -> Flask:
    """Build the sandbox Flask app with fresh state seeded from `config`."""
    config = config or SandboxConfig()
    app = Flask("sandbox")
    app.extensions[EXTENSION_KEY] = SandboxState(config)
    app.register_blueprint(health.bp)
    app.register_blueprint(customers.bp)
    app.register_blueprint(admin.bp)
    app.before_request(_begin_request)
    app.after_request(_finish_response)
    app.register_error_handler(RequestValidationError, _validation_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unhandled_error)
    app.wsgi_app = _ConnectionDropper(app.wsgi_app)  # type: ignore[method-assign]
    return app


class _ConnectionDropper:
    """WSGI wrapper that turns a fault's drop request into an exception before anything is written."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self._wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        result = self._wsgi_app(environ, start_response)
        if environ.get(DROP_CONNECTION_KEY):
            close = getattr(result, "close", None)
            if close is not None:
                close()
            raise DroppedConnection("connection dropped by a sandbox fault rule")
        return result


def _begin_request() -> Response | None:
    g.trace_id = trace_id_from_traceparent(request.headers.get("traceparent")) or random_hex(16)
    g.span_id = random_hex(8)
    inbound_request_id = request.headers.get("X-Request-Id")
    g.request_id = inbound_request_id if inbound_request_id and len(inbound_request_id) <= 128 else random_hex(16)
    if request.path.startswith(ADMIN_PREFIX):
        g.plain_response = True
        return None
    state = current_state()
    plan = state.faults.plan(request.method, request.path)
    # Recorded after planning, so a test that sees the entry knows its faults are already decided.
    state.requests.record(_describe_request(plan))
    return _apply_faults(state, plan) if plan else None


def _describe_request(plan: FaultPlan | None) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    body: Any = None
    body_is_json = False
    if raw:
        text = raw.decode("utf-8", errors="replace")
        try:
            body, body_is_json = json.loads(text), True
        except ValueError:
            body = text
    return {
        "timestamp": datetime.now(UTC).isoformat(),
        "method": request.method,
        "path": request.path,
        "query_string": request.query_string.decode("utf-8", errors="replace"),
        "query": {key: values[-1] for key, values in request.args.lists()},
        "headers": {key.lower(): value for key, value in request.headers.items()},
        "body": body,
        "body_is_json": body_is_json,
        "faults": plan.applied if plan else [],
    }


def _apply_faults(state: SandboxState, plan: FaultPlan) -> Response | None:
    if plan.latency_seconds:
        plan.release.wait(plan.latency_seconds)
    rule = plan.action
    if rule is None:
        return None
    if rule.mode == "truncated":
        g.truncate_body = True
        return None
    if rule.mode == "hang":
        plan.release.wait(state.faults.hang_seconds(rule))
        # A stalled CRM that recovers answers normally; only a sandbox that is stopping drops the request.
        if not state.faults.closed:
            return None
    # Injected failures stand for a broken database or an upstream proxy, neither of which adds the
    # CRM middleware's headers.
    g.plain_response = True
    if rule.mode in ("http_500", "error"):
        return json_response(crm_500_body("OperationalError", _INJECTED_500_MESSAGE, request.path, g.trace_id), 500)
    if rule.mode == "http_502_html":
        return Response(BAD_GATEWAY_HTML, status=502, mimetype="text/html")
    if rule.mode == "http_429":
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
        return json_response({"detail": "Too Many Requests"}, 429, headers)
    # reset, or a hang cut short by stop(): _ConnectionDropper discards this placeholder response.
    request.environ[DROP_CONNECTION_KEY] = True
    return Response(status=204)


def _finish_response(response: Response) -> Response:
    if g.get("truncate_body"):
        body = response.get_data()
        response.set_data(body[: len(body) // 2])
    # The CRM's catch-all 500 handler sits outside its header middleware.
    if g.get("plain_response") or response.status_code >= 500:
        return response
    workflow = "crm-lead-capture" if request.path.startswith("/api/customers") else "other"
    response.headers["X-Request-Id"] = g.request_id
    response.headers["X-Correlation-Id"] = g.trace_id
    response.headers["X-Trace-Id"] = g.trace_id
    response.headers["X-Span-Id"] = g.span_id
    response.headers["X-Workflow-Id"] = workflow
    response.headers.update(SECURITY_HEADERS)
    return response


def _validation_error(error: RequestValidationError) -> Response:
    return json_response({"detail": [issue.as_dict() for issue in error.issues]}, 422)


def _http_error(error: HTTPException) -> Response:
    headers = None
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        allowed = [method for method in error.valid_methods if method not in ("HEAD", "OPTIONS")]
        headers = {"Allow": ", ".join(allowed)}
    return json_response({"detail": error.name}, error.code or 500, headers)


def _unhandled_error(error: Exception) -> Response:
    if isinstance(error, CrmServerError):
        type_name, message = error.type_name, error.message
    else:
        type_name, message = type(error).__name__, str(error)
    first_line = message.splitlines()[0] if message else ""
    logger.info("answering 500 %s on %s %s: %s", type_name, request.method, request.path, first_line)
    return json_response(crm_500_body(type_name, message, request.path, g.get("trace_id", "")), 500)
