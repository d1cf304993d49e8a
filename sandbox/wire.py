"""Wire-level helpers that reproduce how the real CRM (FastAPI on uvicorn) shapes its responses."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Response

JSON_MIMETYPE = "application/json"

SECURITY_HEADERS: dict[str, str] = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

# Background-link codes SQLAlchemy appends to its error messages, per exception class.
_SQLALCHEMY_ERROR_CODES = {
    "IntegrityError": "gkpj",
    "ProgrammingError": "f405",
    "DBAPIError": "dbapi",
    "InterfaceError": "rvf5",
    "OperationalError": "e3q8",
}

# SQLAlchemy reports plain PostgreSQL errors under the dialect's generic `Error` class.
_DIALECT_CLASS = {"DBAPIError": "Error"}

_TRACEPARENT_RE = re.compile(r"^\s*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?\s*$")


def dumps(payload: Any) -> str:
    """Serialize like Starlette's JSONResponse: compact, UTF-8, and refusing NaN/Infinity."""
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Build a JSON response, serializing the payload exactly once."""
    return Response(dumps(payload), status=status, mimetype=JSON_MIMETYPE, headers=headers)


def random_hex(n_bytes: int) -> str:
    """Return a random lowercase hex string of 2*n_bytes characters."""
    return secrets.token_hex(n_bytes)


def trace_id_from_traceparent(value: str | None) -> str | None:
    """Return the trace id of a valid W3C traceparent header, else None."""
    if not value:
        return None
    match = _TRACEPARENT_RE.match(value)
    if match is None:
        return None
    version, trace_id, span_id, _flags, extra = match.groups()
    if version == "ff" or (version == "00" and extra) or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return trace_id


class CrmServerError(Exception):
    """An error the real CRM reports as HTTP 500 with its generic exception body."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.message = message


def sql_error(type_name: str, asyncpg_class: str, detail: str, sql: str, params: tuple | None = None) -> CrmServerError:
    """Build the error SQLAlchemy (asyncpg dialect) raises for a failed statement, text included."""
    dialect_class = _DIALECT_CLASS.get(type_name, type_name)
    parts = [
        f"(sqlalchemy.dialects.postgresql.asyncpg.{dialect_class}) "
        f"<class 'asyncpg.exceptions.{asyncpg_class}'>: {detail}",
        f"[SQL: {sql}]",
    ]
    if params is not None:
        parts.append(f"[parameters: {params!r}]")
    parts.append(f"(Background on this error at: https://sqlalche.me/e/20/{_SQLALCHEMY_ERROR_CODES[type_name]})")
    return CrmServerError(type_name, "\n".join(parts))


def crm_500_body(type_name: str, message: str, path: str, correlation_id: str) -> dict[str, str]:
    """Return the body of the CRM's catch-all exception handler."""
    return {"error": message, "type": type_name, "path": path, "correlation_id": correlation_id}


@dataclass
class ValidationIssue:
    """One entry of a FastAPI 422 `detail` list."""

    type: str
    loc: tuple[str, str]
    msg: str
    input: str
    ctx: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return the FastAPI JSON form (ctx omitted when empty)."""
        out: dict[str, Any] = {"type": self.type, "loc": list(self.loc), "msg": self.msg, "input": self.input}
        if self.ctx:
            out["ctx"] = self.ctx
        return out


class RequestValidationError(Exception):
    """Raised to answer 422 with FastAPI's `{"detail": [...]}` body."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        super().__init__(f"{len(issues)} validation error(s)")
        self.issues = issues


_INT_RE = re.compile(r"^[+-]?\d+(?:_\d+)*$")
_ZERO_FRACTION_RE = re.compile(r"^([+-]?\d+(?:_\d+)*)\.0*$")
_FRACTION_RE = re.compile(r"^[+-]?(?:\d+\.\d*|\.\d+)$")


def parse_int(raw: str, loc: tuple[str, str], ge: int | None = None, le: int | None = None) -> int | ValidationIssue:
    """Parse a string the way pydantic v2 does in lax mode, returning an issue instead of raising."""
    text = raw.strip()
    if _INT_RE.match(text):
        value = int(text)
    elif zero_fraction := _ZERO_FRACTION_RE.match(text):
        value = int(zero_fraction.group(1))
    elif _FRACTION_RE.match(text):
        return ValidationIssue(
            "int_from_float", loc, "Input should be a valid integer, got a number with a fractional part", raw
        )
    else:
        return ValidationIssue(
            "int_parsing", loc, "Input should be a valid integer, unable to parse string as an integer", raw
        )
    if ge is not None and value < ge:
        return ValidationIssue(
            "greater_than_equal", loc, f"Input should be greater than or equal to {ge}", raw, {"ge": ge}
        )
    if le is not None and value > le:
        return ValidationIssue("less_than_equal", loc, f"Input should be less than or equal to {le}", raw, {"le": le})
    return value
