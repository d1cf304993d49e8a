"""`/api/customers`: the CRM's customer endpoints, including its SQL-interpolation quirks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from sandbox.data import COLUMNS
from sandbox.state import Record, UniqueViolation, current_state
from sandbox.variants import render_customer, wrap_list
from sandbox.wire import (
    CrmServerError,
    RequestValidationError,
    ValidationIssue,
    json_response,
    parse_int,
    sql_error,
)

bp = Blueprint("customers", __name__)

_INSERT_SQL = (
    "INSERT INTO customers (name, email, phone, company, industry, revenue, notes) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
_SELECT_ONE_SQL = "SELECT * FROM customers WHERE id = $1"
_UPDATABLE = ("name", "email", "phone", "company", "industry", "revenue", "notes")
_VARCHAR_LENGTHS = {"name": 200, "email": 200, "phone": 50, "company": 200, "industry": 100}
_NOT_NULL = ("name", "email")
_INT4_RANGE = range(-(2**31), 2**31)

_SORT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(ASC|DESC))?\s*$", re.IGNORECASE)
_SQL_TOKEN_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*|\d+|\S")
_FLOAT8_RE = re.compile(
    r"^\s*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)\s*$",
    re.IGNORECASE,
)
_FLOAT8_WORDS = ("inf", "infinity", "nan")


@bp.get("/api/customers", provide_automatic_options=False)
def list_customers() -> Response:
    """List customers: LIKE search on name/email, SQL-interpolated sort, FastAPI-validated paging."""
    issues: list[ValidationIssue] = []
    limit = _query_int("limit", 100, issues, ge=1, le=500)
    offset = _query_int("offset", 0, issues, ge=0)
    if issues:
        raise RequestValidationError(issues)
    search = _query_str("search", "")
    sort_by = _query_str("sort_by", "name")
    sql = _list_sql(search, sort_by, limit, offset)
    predicate = _search_predicate(search, sql) if search else None
    column, descending = _parse_sort(sort_by, sql)

    state = current_state()
    variants = state.variants
    records = state.customers.page(column, descending, offset, limit, predicate)
    rendered = [render_customer(record, variants["field_variant"]) for record in records]
    return json_response(wrap_list(rendered, variants["envelope"], limit, offset))


@bp.get("/api/customers/<customer_id>", provide_automatic_options=False)
def get_customer(customer_id: str) -> Response:
    """Return one customer; unknown ids answer 200 with an error body, as the CRM does."""
    cid = _path_int(customer_id)
    if cid not in _INT4_RANGE:
        # asyncpg refuses to bind a Python int that does not fit the int4 id column.
        raise _bind_error(1, cid, "value out of int32 range", _SELECT_ONE_SQL)
    state = current_state()
    record = state.customers.get(cid)
    if record is None:
        return json_response({"error": "Customer not found"})
    return json_response({"customer": render_customer(record, state.variants["field_variant"])})


@bp.post("/api/customers", provide_automatic_options=False)
def create_customer() -> Response:
    """Insert a customer without validation; the response carries no id."""
    # Python errors (JSONDecodeError, AttributeError on a non-object body) propagate on purpose: the
    # CRM's catch-all handler turns the same errors into its 500 bodies.
    body = json.loads(request.get_data())
    name = body.get("name", "")
    email = body.get("email", "")
    notes = body.get("notes", "")
    _looks_like_stored_xss(notes)
    params = (
        name,
        email,
        body.get("phone", ""),
        body.get("company", ""),
        body.get("industry", ""),
        body.get("revenue", 0),
        notes,
    )
    values = dict(zip(_UPDATABLE, params, strict=True))
    _check_bind_types(values)

    state = current_state()
    violation = _column_violation(values, params)
    if violation is not None:
        state.customers.burn_id()
        raise violation
    now = datetime.now(UTC).replace(tzinfo=None).isoformat()
    revenue = values["revenue"]
    record = {
        **values,
        "revenue": None if revenue is None else float(revenue),
        "created_at": now,
        "updated_at": now,
    }
    try:
        state.customers.insert(record)
    except UniqueViolation as clash:
        raise _unique_violation(clash.email, _INSERT_SQL, params) from None
    return json_response({"status": "created", "name": name})


@bp.put("/api/customers/<customer_id>", provide_automatic_options=False)
def update_customer(customer_id: str) -> Response:
    """Update any subset of fields by string interpolation; reports success even for unknown ids."""
    cid = _path_int(customer_id)
    # As in create_customer, Python errors on odd bodies (TypeError for lists, strings, numbers) propagate.
    body = json.loads(request.get_data())
    literals: dict[str, str] = {}
    for column in _UPDATABLE:
        if column in body:
            literals[column] = f"{body[column]}"
    if literals:
        assignments = ", ".join(f"{column} = '{text}'" for column, text in literals.items())
        # Only ever quoted in error messages; the sandbox has no database to run it against.
        sql = f"UPDATE customers SET {assignments} WHERE id = {cid}"  # noqa: S608
        changes = _coerce_update(literals, sql)
        try:
            current_state().customers.update(cid, changes)
        except UniqueViolation as clash:
            raise _unique_violation(clash.email, sql) from None
    return json_response({"status": "updated", "customer_id": cid})


def _query_str(name: str, default: str) -> str:
    # Starlette keeps the last of repeated query parameters.
    values = request.args.getlist(name)
    return values[-1] if values else default


def _query_int(
    name: str, default: int, issues: list[ValidationIssue], ge: int | None = None, le: int | None = None
) -> int:
    values = request.args.getlist(name)
    if not values:
        return default
    parsed = parse_int(values[-1], ("query", name), ge=ge, le=le)
    if isinstance(parsed, ValidationIssue):
        issues.append(parsed)
        return default
    return parsed


def _path_int(raw: str) -> int:
    parsed = parse_int(raw, ("path", "customer_id"))
    if isinstance(parsed, ValidationIssue):
        raise RequestValidationError([parsed])
    return parsed


def _list_sql(search: str, sort_by: str, limit: int, offset: int) -> str:
    where = f" WHERE name LIKE '%{search}%' OR email LIKE '%{search}%'" if search else ""
    # Only ever quoted in error messages, like the UPDATE text in update_customer.
    return f"SELECT * FROM customers{where} ORDER BY {sort_by} OFFSET {offset} ROWS FETCH NEXT {limit} ROWS ONLY"  # noqa: S608


def _unquote_literal(text: str, sql: str) -> str:
    """Return the value of `'text'` as a PostgreSQL string literal; a lone quote ends it: syntax error."""
    position = 0
    while True:
        position = text.find("'", position)
        if position < 0:
            return text.replace("''", "'")
        if text.startswith("''", position):
            position += 2
            continue
        rest = _SQL_TOKEN_RE.findall(text[position + 1 :])
        near = rest[0] if rest else "'"
        raise sql_error("ProgrammingError", "PostgresSyntaxError", f'syntax error at or near "{near}"', sql)


def _search_predicate(search: str, sql: str) -> Callable[[Record], bool]:
    literal = _unquote_literal(search, sql)
    if not any(char in literal for char in "%_\\"):
        return lambda record: literal in record["name"] or literal in record["email"]
    matcher = _like_regex(f"%{literal}%").fullmatch
    return lambda record: matcher(record["name"]) is not None or matcher(record["email"]) is not None


def _like_regex(pattern: str) -> re.Pattern[str]:
    """Translate a PostgreSQL LIKE pattern (default escape character backslash) to a regex."""
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            parts.append(re.escape(next(chars, "\\")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _parse_sort(sort_by: str, sql: str) -> tuple[str, bool]:
    match = _SORT_RE.match(sort_by)
    if match is None:
        tokens = _SQL_TOKEN_RE.findall(sort_by)
        if not tokens:
            near = "OFFSET"
        elif not re.match(r"[A-Za-z_]", tokens[0]):
            near = tokens[0]
        elif len(tokens) > 1 and tokens[1].upper() not in ("ASC", "DESC"):
            near = tokens[1]
        else:
            near = tokens[2] if len(tokens) > 2 else tokens[-1]
        raise sql_error("ProgrammingError", "PostgresSyntaxError", f'syntax error at or near "{near}"', sql)
    column = match.group(1).lower()
    if column not in COLUMNS:
        raise sql_error("ProgrammingError", "UndefinedColumnError", f'column "{column}" does not exist', sql)
    return column, (match.group(2) or "ASC").upper() == "DESC"


def _looks_like_stored_xss(notes: Any) -> bool:
    # The CRM lower-cases notes to flag XSS attempts, so a non-string `notes` fails with AttributeError.
    lowered = notes.lower()
    return "<script" in lowered or "javascript:" in lowered or "onerror" in lowered


def _bind_error(position: int, value: Any, reason: str, sql: str, params: tuple | None = None) -> CrmServerError:
    detail = f"invalid input for query argument ${position}: {value!r} ({reason})"
    return sql_error("InterfaceError", "DataError", detail, sql, params)


def _check_bind_types(values: dict[str, Any]) -> None:
    """Reproduce asyncpg's client-side type checks, which fail before the statement reaches PostgreSQL."""
    params = tuple(values.values())
    for position, (column, value) in enumerate(values.items(), start=1):
        if value is None:
            continue
        if column == "revenue":
            if not isinstance(value, int | float):
                reason = f"must be real number, not {type(value).__name__}"
                raise _bind_error(position, value, reason, _INSERT_SQL, params)
        elif not isinstance(value, str):
            raise _bind_error(position, value, f"expected str, got {type(value).__name__}", _INSERT_SQL, params)


def _column_violation(values: dict[str, Any], params: tuple) -> CrmServerError | None:
    """Return the error PostgreSQL raises for over-long or missing values, in its checking order."""
    for column, length in _VARCHAR_LENGTHS.items():
        value = values.get(column)
        if isinstance(value, str) and len(value) > length:
            detail = f"value too long for type character varying({length})"
            return sql_error("DBAPIError", "StringDataRightTruncationError", detail, _INSERT_SQL, params)
    for column in _NOT_NULL:
        if values.get(column) is None:
            detail = f'null value in column "{column}" of relation "customers" violates not-null constraint'
            return sql_error("IntegrityError", "NotNullViolationError", detail, _INSERT_SQL, params)
    return None


def _unique_violation(email: str, sql: str, params: tuple | None = None) -> CrmServerError:
    detail = (
        'duplicate key value violates unique constraint "customers_email_key"\n'
        f"DETAIL:  Key (email)=({email}) already exists."
    )
    return sql_error("IntegrityError", "UniqueViolationError", detail, sql, params)


def _coerce_update(literals: dict[str, str], sql: str) -> dict[str, Any]:
    """Turn interpolated literals into column values, failing as PostgreSQL would."""
    changes: dict[str, Any] = {}
    for column, text in literals.items():
        value = _unquote_literal(text, sql)
        if column == "revenue":
            changes[column] = _float8(value, sql)
            continue
        length = _VARCHAR_LENGTHS.get(column)
        if length is not None and len(value) > length:
            detail = f"value too long for type character varying({length})"
            raise sql_error("DBAPIError", "StringDataRightTruncationError", detail, sql)
        changes[column] = value
    return changes


def _float8(text: str, sql: str) -> float:
    if not _FLOAT8_RE.match(text):
        detail = f'invalid input syntax for type double precision: "{text}"'
        raise sql_error("DBAPIError", "InvalidTextRepresentationError", detail, sql)
    value = float(text)
    if math.isinf(value) and text.strip().lstrip("+-").lower() not in _FLOAT8_WORDS:
        detail = f'"{text}" is out of range for type double precision'
        raise sql_error("DBAPIError", "NumericValueOutOfRangeError", detail, sql)
    return value
