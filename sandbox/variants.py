"""Legacy response shapes that a defensive client must cope with (or reject)."""

from __future__ import annotations

from typing import Any

ENVELOPES: tuple[str, ...] = ("customers", "items", "data", "results", "bare", "unknown")
FIELD_VARIANTS: tuple[str, ...] = ("canonical", "legacy_a", "legacy_b")

# `unknown` deliberately uses a key no client alias list should accept.
_ENVELOPE_KEYS = {
    "customers": "customers",
    "items": "items",
    "data": "data",
    "results": "results",
    "unknown": "rows",
}

_LEGACY_A_NAMES = {
    "id": "customer_id",
    "email": "email_address",
    "name": "full_name",
    "phone": "phone_number",
    "company": "company_name",
    "industry": "segment",
    "revenue": "annual_revenue",
}

_LEGACY_B_NAMES = {"email": "contact_email", "name": "customer_name"}


def check_envelope(value: object) -> str:
    """Return `value` if it names a known envelope, else raise ValueError."""
    if value not in ENVELOPES:
        raise ValueError(f"envelope must be one of {', '.join(ENVELOPES)}")
    return value  # type: ignore[return-value]


def check_field_variant(value: object) -> str:
    """Return `value` if it names a known field variant, else raise ValueError."""
    if value not in FIELD_VARIANTS:
        raise ValueError(f"field_variant must be one of {', '.join(FIELD_VARIANTS)}")
    return value  # type: ignore[return-value]


def render_customer(record: dict[str, Any], field_variant: str) -> dict[str, Any]:
    """Return the record as the given field variant would put it on the wire."""
    if field_variant == "canonical":
        return record
    if field_variant == "legacy_a":
        return {_LEGACY_A_NAMES.get(key, key): value for key, value in record.items()}
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == "id":
            value = str(value)
        elif key == "revenue" and isinstance(value, int | float):
            value = f"{value:,.2f}"
        out[_LEGACY_B_NAMES.get(key, key)] = value
    return out


def wrap_list(records: list[dict[str, Any]], envelope: str, limit: int, offset: int) -> Any:
    """Wrap a page of records in the given list envelope."""
    if envelope == "bare":
        return records
    return {_ENVELOPE_KEYS[envelope]: records, "total": len(records), "limit": limit, "offset": offset}
