"""One JSON error shape for every failure: {"error": {"code", "message", "details"}} (CONVENTIONS 5)."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error to answer with a given status, code and message."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def invalid(field: str, reason: str, value: Any = None) -> APIError:
    """A 400 naming the offending field and why."""
    details: dict[str, Any] = {"field": field, "reason": reason}
    if value is not None:
        plain = isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value))
        details["value"] = value if plain else str(value)[:100]
    return APIError(400, "invalid_parameter", f"{field}: {reason}", details)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error envelope."""
    return {"error": {"code": code, "message": message, "details": details}}


def register_error_handlers(app: Flask) -> None:
    """Answer APIError, HTTP errors and anything unexpected in the one JSON shape, never a stack trace."""

    @app.errorhandler(APIError)
    def _api_error(exc: APIError):  # type: ignore[no-untyped-def]
        return jsonify(error_body(exc.code, exc.message, exc.details)), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        code = (exc.name or "error").lower().replace(" ", "_")
        details = None
        if exc.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            details = {"field": "body", "reason": f"larger than {limit} bytes"}
        response = jsonify(error_body(code, exc.description or exc.name, details))
        # Werkzeug's own headers for the error, such as Allow on a 405, stay; the body is ours.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, exc.code or 500

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error in request")
        return jsonify(error_body("internal_error", "internal error; see the API log")), 500
