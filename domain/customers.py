"""Turn CRM customer payloads into validated, normalized rows (DESIGN §3, D1, D2, D10).

The CRM itself only ever sends the canonical field names; the aliases are the ones the original shop
accepted defensively, kept so a CRM upgrade or a proxy that renames fields does not empty our table.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series

LIST_ENVELOPE_KEYS = ("customers", "items", "data", "results")

# Output column -> payload keys, first present non-blank value wins.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "crm_id": ("id", "customer_id"),
    "email": ("email", "email_address", "contact_email"),
    "name": ("name", "full_name", "customer_name", "company"),
    "phone": ("phone", "phone_number"),
    "company": ("company", "company_name"),
    "industry": ("industry", "segment"),
    "revenue": ("revenue", "annual_revenue"),
    "notes": ("notes",),
    "crm_created_at": ("created_at",),
    "crm_updated_at": ("updated_at",),
}

# Column limits, shared by the table definition and the validation below.
FIELD_LIMITS = {"crm_id": 64, "email": 320, "name": 255, "phone": 64, "company": 255, "industry": 128}
TEXT_FIELDS = ("name", "phone", "company", "industry", "notes")
# The fields whose change makes a stored customer "updated".
TRACKED_FIELDS = ("crm_id", "email", *TEXT_FIELDS, "revenue", "crm_created_at", "crm_updated_at")
COLUMNS = ("email_normalized", *TRACKED_FIELDS)

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s.]+$"
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_REVENUE_NOISE = re.compile(r"[\s,_'$€£¥]|usd|eur|gbp", re.I)
_REVENUE_SCALE = {"k": 1e3, "m": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9}
_REVENUE_NUMBER = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)(k|mm|m|bn|b)?$", re.I)
_BLANKS = frozenset({"", "nan", "none", "null", "n/a", "na", "-"})


class EnvelopeError(ValueError):
    """The CRM answered a list call with a body we do not recognise."""


def extract_records(body: Any, keys: Iterable[str] = LIST_ENVELOPE_KEYS) -> list[Any]:
    """Return the record list from a CRM list body: a known envelope key or a bare list."""
    if isinstance(body, list):
        return body
    if isinstance(body, Mapping):
        for key in keys:
            if key in body:
                records = body[key]
                if not isinstance(records, list):
                    raise EnvelopeError(f"envelope key '{key}' holds {type(records).__name__}, not a list")
                return records
        if "error" in body:
            raise EnvelopeError(f"CRM answered with an error: {str(body['error'])[:200]}")
        found = ", ".join(sorted(map(str, body))[:10]) or "none"
        raise EnvelopeError(f"no known list key ({'|'.join(keys)}) in CRM response; keys: {found}")
    raise EnvelopeError(f"CRM list response is {type(body).__name__}, not an object or list")


def normalize_email(value: Any) -> str | None:
    """Email identity (D2): every Unicode whitespace and zero-width mark removed, then casefolded."""
    if not isinstance(value, str):
        return None
    compact = "".join(value.split())
    if compact.isascii():
        return compact.lower() or None
    compact = compact.translate(_ZERO_WIDTH)
    return unicodedata.normalize("NFC", compact).casefold() or None


def parse_revenue(value: Any) -> float | None:
    """A finite float from numbers or text such as "$5.2M", "1,200,000.50" or "(300)"; else None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond any float
            return None
        return number if math.isfinite(number) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.lower() in _BLANKS:
        return None
    negative = text.startswith("(") and text.endswith(")")
    text = _REVENUE_NOISE.sub("", text.strip("()"))
    match = _REVENUE_NUMBER.match(text)
    if not match:
        return None
    try:
        number = float(match.group(1)) * _REVENUE_SCALE.get((match.group(2) or "").lower(), 1.0)
    except OverflowError:
        return None
    if not math.isfinite(number):
        return None
    return -number if negative else number


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime; the CRM's naive ISO timestamps are UTC (D10)."""
    if value.__class__ is not str or not value or value.isspace():
        return None
    return _parse_timestamp_text(value)


@lru_cache(maxsize=4096)
def _parse_timestamp_text(value: str) -> datetime | None:
    # Bulk writes and seeds stamp many rows with the same instant; parsing each once is enough.
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: a zone offset pushes year 1 or 9999 out of range
        return None


# Every integer up to 2**53 is exact as a float; beyond it a float id may already have lost digits.
_EXACT_FLOAT_LIMIT = 2.0**53


def canonical_id(value: Any) -> str | None:
    """The CRM id as exact text: integers never pass through a float.

    A float id is accepted only when it is a whole number a float holds exactly. Any other float (7.5, or
    an integer of more than 64 bits that the JSON parser could only give as a float) raises ValueError, so
    the record is kept as invalid with that reason instead of being stored under a wrong or missing id.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _EXACT_FLOAT_LIMIT:
            return str(int(value))
        raise ValueError(f"id {value!r} is not an exact integer")
    if isinstance(value, str):
        return value.strip() or None
    return None


# Per column: the key the CRM itself sends, then the aliases tried when that one is missing or blank.
_ALIAS_PLAN = tuple((column, keys[0], keys[1:]) for column, keys in FIELD_ALIASES.items())
_STAMP_FIELDS = ("crm_created_at", "crm_updated_at")


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    return value if value.__class__ is str else str(value)


def _present(value: Any) -> Any:
    """The value, stripped if it is text; None when it is missing or blank.

    '' means "no value" everywhere: the CRM stores omitted fields as '' and Oracle turns '' into NULL,
    so blank text falls through to the next alias or to NULL.
    """
    if value.__class__ is str:
        return value.strip() or None
    return value


def _first_alias(get: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = _present(get(key))
        if value is not None:
            return value
    return None


def normalize_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Map one CRM payload (any accepted field variant) onto our column names and types.

    Per column the first alias holding a value wins. This runs once per customer of every window, so the
    canonical shape the CRM sends takes the shortest path: the first key, and no conversion of values
    that already have their type.
    """
    get = record.get
    row: dict[str, Any] = {}
    for column, first, others in _ALIAS_PLAN:
        value = get(first)
        if value.__class__ is str:
            value = value.strip() or (_first_alias(get, others) if others else None)
        elif value is None and others:
            value = _first_alias(get, others)
        row[column] = value
    for column in TEXT_FIELDS:
        value = row[column]
        if value is not None and value.__class__ is not str:
            row[column] = _as_text(value)
    email = row["email"]
    if email.__class__ is not str:
        email = row["email"] = _as_text(email)
    row["email_normalized"] = normalize_email(email)
    crm_id = row["crm_id"]
    if crm_id is not None and crm_id.__class__ is not str:
        row["crm_id"] = canonical_id(crm_id)
    revenue = row["revenue"]
    if revenue is not None and (revenue.__class__ is not float or not math.isfinite(revenue)):
        row["revenue"] = parse_revenue(revenue)
    for column in _STAMP_FIELDS:
        value = row[column]
        row[column] = _parse_timestamp_text(value) if value.__class__ is str else None
    return row


class CustomerFrame(pa.DataFrameModel):
    """A validated window of CRM customers, one row per normalized email."""

    email_normalized: Series[str] = pa.Field(
        str_matches=EMAIL_PATTERN,
        str_length={"max_value": FIELD_LIMITS["email"]},
        unique=True,
        description="Identity: email without whitespace, casefolded (D2)",
    )
    crm_id: Series[str] = pa.Field(
        nullable=True, str_length={"max_value": FIELD_LIMITS["crm_id"]}, description="CRM id as exact text"
    )
    email: Series[str] = pa.Field(
        str_length={"max_value": FIELD_LIMITS["email"]}, description="Email as the CRM spelled it, trimmed"
    )
    name: Series[str] = pa.Field(nullable=True, str_length={"max_value": FIELD_LIMITS["name"]})
    phone: Series[str] = pa.Field(nullable=True, str_length={"max_value": FIELD_LIMITS["phone"]})
    company: Series[str] = pa.Field(nullable=True, str_length={"max_value": FIELD_LIMITS["company"]})
    industry: Series[str] = pa.Field(nullable=True, str_length={"max_value": FIELD_LIMITS["industry"]})
    notes: Series[str] = pa.Field(nullable=True, description="Free text from the CRM")
    revenue: Series[float] = pa.Field(nullable=True, description="Annual revenue; NULL when unknown")
    crm_created_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}, description="CRM creation time, UTC"
    )
    crm_updated_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}, description="CRM update time, UTC"
    )

    class Config:
        strict = True
        ordered = False


@dataclass
class Rejected:
    """A CRM record we could not accept, kept with the reason."""

    record: Any
    reason: str
    crm_id: str | None = None
    email: str | None = None


@dataclass
class CustomerBatch:
    """The outcome of normalizing and validating one window of CRM records."""

    frame: pd.DataFrame
    #: The validated rows as plain Python values, in frame order (None for missing, aware datetimes).
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def valid_count(self) -> int:
        """Rows that passed validation."""
        return len(self.rows)


_CHECK_REASONS = (
    ("not_nullable", "is missing"),
    ("str_matches", "is not a valid email address"),
    ("str_length", "is too long"),
    ("field_uniqueness", "is duplicated in this batch"),
)


def _reason(column: str, check: str) -> str:
    for marker, text in _CHECK_REASONS:
        if check.startswith(marker):
            limit = FIELD_LIMITS.get(column.removesuffix("_normalized"))
            suffix = f" (max {limit} characters)" if marker == "str_length" and limit else ""
            return f"{column} {text}{suffix}"
    return f"{column} failed {check}"


def build_frame(columns: Mapping[str, list[Any]]) -> pd.DataFrame:
    """Build a typed frame from normalized values by column; missing values stay missing, never the text 'nan'."""
    arrays: dict[str, Any] = {}
    for name in COLUMNS:
        values = columns[name]
        if name == "revenue":
            arrays[name] = pd.array(values, dtype="Float64")
        elif name in ("crm_created_at", "crm_updated_at"):
            arrays[name] = pd.array(values, dtype="datetime64[us, UTC]")
        else:
            # Through an object array: three times faster than from the list itself.
            arrays[name] = pd.array(np.array(values, dtype=object), dtype="string")
    return pd.DataFrame(arrays)


def _dedupe(rows: list[dict[str, Any]], rejected: list[Rejected], raws: list[Any]) -> list[int]:
    """Keep one valid row per normalized email: the most recently updated one (D2)."""
    if len({row["email_normalized"] for row in rows}) == len(rows):
        return list(range(len(rows)))  # the usual window: nothing to settle
    winner: dict[str, int] = {}
    for index, row in enumerate(rows):
        key = row["email_normalized"]
        best = winner.get(key)
        if best is None or _recency(row) >= _recency(rows[best]):
            winner[key] = index
    kept = set(winner.values())
    for index, row in enumerate(rows):
        if index not in kept:
            other = rows[winner[row["email_normalized"]]]
            rejected.append(
                Rejected(
                    raws[index],
                    f"email duplicates CRM customer {other['crm_id'] or '?'} in this batch",
                    row["crm_id"],
                    row["email"],
                )
            )
    return sorted(kept)


def _recency(row: dict[str, Any]) -> tuple[datetime, int]:
    stamp = row["crm_updated_at"] or datetime.min.replace(tzinfo=UTC)
    crm_id = row["crm_id"]
    number = int(crm_id) if crm_id and crm_id.isascii() and crm_id.isdigit() else -1
    return stamp, number


class CustomerValidator:
    """Normalizes CRM records as they arrive, page by page, then validates the whole window at once."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._raws: list[Any] = []
        self._rejected: list[Rejected] = []
        # The frame's columns, gathered page by page while the next page is on its way.
        self._columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}

    def add(self, records: list[Any]) -> None:
        """Normalize one page of records."""
        start = len(self._rows)
        for record in records:
            if not isinstance(record, Mapping):
                self._rejected.append(Rejected(record, f"record is {type(record).__name__}, not an object"))
                continue
            try:
                row = normalize_record(record)
            except Exception as exc:  # one odd record must not fail its whole window
                self._rejected.append(Rejected(record, f"record could not be read: {type(exc).__name__}: {exc}"[:500]))
                continue
            self._rows.append(row)
            self._raws.append(record)
        added = self._rows[start:]
        for name, values in self._columns.items():
            values.extend([row[name] for row in added])

    def finish(self) -> CustomerBatch:
        """Deduplicate and validate everything added; invalid records come back with a reason."""
        return _validate(self._rows, self._raws, self._rejected, build_frame(self._columns))


def validate_customers(records: list[Any]) -> CustomerBatch:
    """Normalize and validate a window of CRM records; invalid ones come back with a reason."""
    validator = CustomerValidator()
    validator.add(records)
    return validator.finish()


def _validate(
    rows: list[dict[str, Any]], raws: list[Any], rejected: list[Rejected], frame: pd.DataFrame
) -> CustomerBatch:
    # One pandera pass over every row; duplicate emails are then settled among the valid rows only, so an
    # invalid newer record cannot take a valid older one down with it.
    invalid: set[int] = set()
    try:
        CustomerFrame.validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        cases = cases[cases["check"].astype(str) != "field_uniqueness"]
        if cases["index"].isna().any():
            raise
        reasons: dict[int, list[str]] = {}
        for column, check, index in zip(cases["column"], cases["check"], cases["index"], strict=True):
            reasons.setdefault(int(index), []).append(_reason(str(column), str(check)))
        for index, texts in sorted(reasons.items()):
            row = rows[index]
            rejected.append(Rejected(raws[index], "; ".join(sorted(set(texts))), row["crm_id"], row["email"]))
        invalid = set(reasons)
    valid = [i for i in range(len(rows)) if i not in invalid]
    kept = _dedupe([rows[i] for i in valid], rejected, [raws[i] for i in valid])
    keep = [valid[i] for i in kept]
    if len(keep) != len(rows):
        frame = frame.iloc[keep].reset_index(drop=True)
    if not frame["email_normalized"].is_unique:
        raise AssertionError("deduplication left a duplicate email")
    return CustomerBatch(frame=frame, rows=[rows[i] for i in keep], rejected=rejected)
