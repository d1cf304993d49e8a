"""CRM health as our callers may see it: status and public URL only (D9)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from opentelemetry.trace import Status, StatusCode

from api.context import integration
from api.schemas import HealthReply
from api.validation import documented
from resources.telemetry import crm_span, set_attributes

bp = Blueprint("health", __name__, url_prefix="/api/integrations/crm")


@bp.get("/health")
@documented({200: HealthReply})
def crm_health():  # type: ignore[no-untyped-def]
    """The CRM's /health through the shared client: healthy | unhealthy | unreachable | not_configured."""
    ctx = integration()
    if not ctx.settings.enterprise_crm_url:
        return jsonify({"status": "not_configured", "crm_url": None, "detail": "ENTERPRISE_CRM_URL is not set"})
    with crm_span("health_check") as span:
        report = ctx.crm.health()
        if report["status"] != "healthy":
            span.set_status(Status(StatusCode.ERROR, f"CRM {report['status']}"))
            span.set_attribute("error.type", f"crm_{report['status']}")
        if report.get("http_status") is not None:
            span.set_attribute("http.response.status_code", report["http_status"])
        set_attributes(
            span,
            **{
                "integration.crm.health": report["status"],
                "integration.circuit_breaker.state": report["circuit_breaker"]["state"],
                "integration.crm.latency_ms": report["latency_ms"],
            },
        )
    report["detail"] = ctx.public(report["detail"])
    report["crm_url"] = ctx.settings.public_crm_url or None
    return jsonify(report)
