"""`/health` and `/ready`, answered the way the CRM answers them with a healthy PostgreSQL."""

from __future__ import annotations

from flask import Blueprint, Response

from sandbox.state import current_state
from sandbox.wire import json_response

bp = Blueprint("health", __name__)


@bp.get("/health", provide_automatic_options=False)
def health() -> Response:
    """Liveness: no I/O, reports the configured app name."""
    return json_response({"status": "ok", "service": current_state().config.app_name})


@bp.get("/ready", provide_automatic_options=False)
def ready() -> Response:
    """Readiness as observed against PostgreSQL with no OCI integrations configured."""
    return json_response(
        {
            "ready": True,
            "database": "connected",
            "database_target": "postgresql",
            "atp_ocid": None,
            "atp_connection_name": None,
            "apm_configured": False,
            "rum_configured": False,
            "logging_configured": False,
        }
    )
