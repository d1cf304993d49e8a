"""`/_sandbox/*`: the sandbox's own control API (never faulted, never recorded)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from sandbox.data import COLUMNS
from sandbox.faults import FaultRuleError, parse_rules
from sandbox.state import UniqueViolation, current_state
from sandbox.wire import json_response

bp = Blueprint("sandbox_admin", __name__, url_prefix="/_sandbox")

_NULLABLE_TEXT = ("phone", "company", "industry", "notes")
_TIMESTAMPS = ("created_at", "updated_at")
_BULK_UPDATE_KEYS = ("ids", "fields", "touch_updated_at")


class _BadRequest(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@bp.errorhandler(_BadRequest)
def _bad_request(error: _BadRequest) -> Response:
    return json_response({"error": error.message, "field": error.field}, 400)


@bp.get("/faults")
def get_faults() -> Response:
    """List the active fault rules (with remaining `times`)."""
    faults = current_state().faults
    return json_response({"rules": faults.snapshot(), "hang_max_seconds": faults.hang_max_seconds})


@bp.put("/faults")
def put_faults() -> Response:
    """Replace the fault rules; body is a list of rules or `{"rules": [...]}`."""
    body = _json_body()
    raw_rules = body.get("rules") if isinstance(body, dict) else body
    try:
        rules = parse_rules(raw_rules)
    except FaultRuleError as error:
        raise _BadRequest(error.field, error.message) from None
    state = current_state()
    state.faults.replace(rules)
    return json_response({"rules": state.faults.snapshot()})


@bp.delete("/faults")
def delete_faults() -> Response:
    """Remove every fault rule and release hung requests."""
    current_state().faults.clear()
    return json_response({"rules": []})


@bp.get("/requests")
def get_requests() -> Response:
    """Return recorded requests, optionally filtered by `?path_prefix=`."""
    prefix = request.args.get("path_prefix")
    return json_response({"requests": current_state().requests.snapshot(prefix)})


@bp.delete("/requests")
def delete_requests() -> Response:
    """Forget recorded requests."""
    return json_response({"cleared": current_state().requests.clear()})


@bp.post("/reset")
def reset() -> Response:
    """Reseed customers, clear faults and the request log, restore configured variants."""
    state = current_state()
    state.reset()
    return json_response({"status": "reset", "customers": len(state.customers), **state.variants})


@bp.get("/variants")
def get_variants() -> Response:
    """Return the active envelope and field variant."""
    return json_response(current_state().variants)


@bp.put("/variants")
def put_variants() -> Response:
    """Switch `envelope` and/or `field_variant`."""
    body = _json_body()
    if not isinstance(body, dict):
        raise _BadRequest("body", "expected a JSON object with envelope and/or field_variant")
    for key in body:
        if key not in ("envelope", "field_variant"):
            raise _BadRequest(key, "unknown field; expected envelope and/or field_variant")
    state = current_state()
    for key in ("envelope", "field_variant"):
        if key in body:
            try:
                state.set_variants(**{key: body[key]})
            except ValueError as error:
                raise _BadRequest(key, str(error)) from None
    return json_response(state.variants)


@bp.post("/customers/bulk-update")
def bulk_update_customers() -> Response:
    """Change fields of several customers; `touch_updated_at` sets updated_at to now."""
    body = _json_body()
    if not isinstance(body, dict):
        raise _BadRequest("body", "expected a JSON object with ids, fields and touch_updated_at")
    for key in body:
        if key not in _BULK_UPDATE_KEYS:
            raise _BadRequest(key, f"unknown field; expected one of {', '.join(_BULK_UPDATE_KEYS)}")
    ids = _validate_ids(body.get("ids"))
    fields = _validate_fields(body.get("fields", {}))
    touch = body.get("touch_updated_at", False)
    if not isinstance(touch, bool):
        raise _BadRequest("touch_updated_at", "touch_updated_at must be a boolean")
    if touch and "updated_at" in fields:
        raise _BadRequest("touch_updated_at", "give either touch_updated_at or fields.updated_at, not both")
    if not fields and not touch:
        raise _BadRequest("fields", "nothing to change: give fields and/or touch_updated_at")
    if "email" in fields and len(set(ids)) > 1:
        raise _BadRequest("fields.email", "emails are unique; set an email on one customer at a time")
    if touch:
        fields["updated_at"] = datetime.now(UTC).replace(tzinfo=None).isoformat()

    store = current_state().customers
    updated: list[int] = []
    missing: list[int] = []
    for customer_id in ids:
        try:
            found = store.update(customer_id, fields)
        except UniqueViolation as clash:
            return json_response({"error": f"email {clash.email!r} is already used", "field": "fields.email"}, 409)
        (updated if found else missing).append(customer_id)
    return json_response({"updated": updated, "missing": missing})


def _json_body() -> Any:
    try:
        return json.loads(request.get_data() or b"null")
    except ValueError as error:
        raise _BadRequest("body", f"request body is not valid JSON: {error}") from None


def _validate_ids(ids: object) -> list[int]:
    if not isinstance(ids, list) or not ids:
        raise _BadRequest("ids", "ids must be a non-empty list of customer ids")
    for position, value in enumerate(ids):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _BadRequest(f"ids[{position}]", "customer ids must be integers")
    return ids


def _validate_fields(fields: object) -> dict[str, Any]:
    if not isinstance(fields, dict):
        raise _BadRequest("fields", "fields must be a JSON object")
    clean: dict[str, Any] = {}
    for column, value in fields.items():
        where = f"fields.{column}"
        if column not in COLUMNS or column == "id":
            raise _BadRequest(where, f"unknown column; expected one of {', '.join(COLUMNS[1:])}")
        if column in ("name", "email"):
            if not isinstance(value, str):
                raise _BadRequest(where, f"{column} must be a string")
        elif column in _NULLABLE_TEXT:
            if value is not None and not isinstance(value, str):
                raise _BadRequest(where, f"{column} must be a string or null")
        elif column == "revenue":
            if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
                raise _BadRequest(where, "revenue must be a number or null")
            value = None if value is None else float(value)
        elif column in _TIMESTAMPS:
            value = _validate_timestamp(where, value)
        clean[column] = value
    return clean


def _validate_timestamp(where: str, value: object) -> str:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is not None:
        raise _BadRequest(where, "timestamps must be naive ISO-8601 strings such as 2026-12-03T15:39:22.430075")
    return parsed.isoformat()
