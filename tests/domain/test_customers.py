"""Normalization and validation of CRM customer records (no Dagster, no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pandas as pd
import pytest

from domain.customers import (
    EnvelopeError,
    canonical_id,
    extract_records,
    normalize_email,
    normalize_record,
    parse_revenue,
    parse_timestamp,
    validate_customers,
)
from resources.crm_client import parse_json

CANONICAL = {
    "id": 1,
    "name": "Acme Corporation",
    "email": "contact@acme.com",
    "phone": "+1-555-0101",
    "company": "Acme Corp",
    "industry": "Manufacturing",
    "revenue": 5200000.0,
    "notes": None,
    "created_at": "2026-12-03T15:39:22.430075",
    "updated_at": "2026-12-03T15:39:22.430075",
}


@pytest.mark.parametrize("key", ["customers", "items", "data", "results"])
def test_every_known_envelope_yields_its_records(key: str) -> None:
    assert extract_records({key: [CANONICAL], "total": 1}) == [CANONICAL]


def test_bare_list_is_accepted() -> None:
    assert extract_records([CANONICAL]) == [CANONICAL]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rows": [CANONICAL]}, "no known list key"),
        ({"customers": {"id": 1}}, "holds dict, not a list"),
        ({"error": "Customer not found"}, "Customer not found"),
        ("customers", "not an object or list"),
    ],
)
def test_unknown_envelope_is_an_error_not_an_empty_success(body: object, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        extract_records(body)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"email_address": "a@x.io"}, {"email": "a@x.io"}),
        ({"contact_email": "a@x.io"}, {"email": "a@x.io"}),
        ({"email": "a@x.io", "full_name": "Ann"}, {"name": "Ann"}),
        ({"email": "a@x.io", "customer_name": "Ann"}, {"name": "Ann"}),
        ({"email": "a@x.io", "company": "Ann Ltd"}, {"name": "Ann Ltd", "company": "Ann Ltd"}),
        ({"email": "a@x.io", "phone_number": "+1 5"}, {"phone": "+1 5"}),
        ({"email": "a@x.io", "company_name": "Co"}, {"company": "Co"}),
        ({"email": "a@x.io", "segment": "Retail"}, {"industry": "Retail"}),
        ({"email": "a@x.io", "annual_revenue": "1,250,000.50"}, {"revenue": 1250000.5}),
        ({"email": "a@x.io", "customer_id": 77}, {"crm_id": "77"}),
    ],
)
def test_every_field_variant_maps_to_our_column(record: dict, expected: dict) -> None:
    row = normalize_record(record)
    for column, value in expected.items():
        assert row[column] == value


def test_canonical_name_wins_over_aliases_and_blank_falls_through() -> None:
    assert normalize_record({"name": "N", "full_name": "F", "email": "a@x.io"})["name"] == "N"
    assert normalize_record({"name": "  ", "full_name": "F", "email": "a@x.io"})["name"] == "F"


def test_email_identity_strips_unicode_whitespace_and_casefolds() -> None:
    assert normalize_email("  John.Doe@Example.COM\t") == "john.doe@example.com"
    assert normalize_email("\u00a0jo hn@EXAMPLE.com\u2003") == "john@example.com"
    assert normalize_email("\u200bstraße@Example.de") == "strasse@example.de"
    assert normalize_email("ÉLODIE@exemple.fr") == "élodie@exemple.fr"
    assert normalize_email("   ") is None
    assert normalize_email(None) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (5200000.0, 5200000.0),
        (12, 12.0),
        ("1,200,000", 1200000.0),
        ("$5.2M", 5200000.0),
        ("€ 3.4k", 3400.0),
        ("(300)", -300.0),
        ("1.5bn", 1.5e9),
        ("1e6", 1e6),
        ("", None),
        ("N/A", None),
        ("nan", None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("twelve", None),
        (None, None),
    ],
)
def test_revenue_is_parsed_robustly(raw: object, expected: float | None) -> None:
    assert parse_revenue(raw) == expected


def test_ids_stay_exact_without_float_round_trip() -> None:
    big = 2**63 - 1
    assert canonical_id(big) == str(big)
    assert canonical_id("12345678901234567890") == "12345678901234567890"
    assert canonical_id(7.0) == "7"
    assert canonical_id(True) is None
    with pytest.raises(ValueError, match=r"id 7\.5 is not an exact integer"):
        canonical_id(7.5)
    with pytest.raises(ValueError, match="not an exact integer"):
        canonical_id(float(2**64))


@pytest.mark.parametrize(
    "neighbour", ['{"id": 7, "email": "seven@example.com"}', '{"id": 7, "email": "seven@example.com", "revenue": NaN}']
)
def test_an_id_beyond_64_bits_stays_exact_whatever_else_the_page_holds(neighbour: str) -> None:
    page = parse_json(
        b'{"customers": [{"id": 123456789012345678901234567890, "email": "big@example.com"}, '
        + neighbour.encode()
        + b"]}"
    )
    batch = validate_customers(page["customers"])
    assert batch.frame["crm_id"].tolist() == ["123456789012345678901234567890", "7"]
    assert batch.rejected == []


def test_a_float_id_that_may_have_lost_digits_is_kept_as_invalid() -> None:
    batch = validate_customers(
        [{"id": 1.8446744073709552e19, "email": "big@example.com"}, {"id": 7, "email": "s@x.io"}]
    )
    assert batch.frame["crm_id"].tolist() == ["7"]
    [rejected] = batch.rejected
    assert rejected.email is None and rejected.record["email"] == "big@example.com"
    assert "not an exact integer" in rejected.reason


def test_naive_crm_timestamps_are_read_as_utc() -> None:
    assert parse_timestamp("2026-12-03T15:39:22.430075") == datetime(2026, 12, 3, 15, 39, 22, 430075, tzinfo=UTC)
    assert parse_timestamp("2026-12-03T16:39:22+01:00") == datetime(2026, 12, 3, 15, 39, 22, tzinfo=UTC)
    assert parse_timestamp("yesterday") is None
    # A zone offset that moves an edge date out of datetime's range is an unreadable value (NULL), and
    # the record stays valid.
    assert parse_timestamp("0001-01-01T00:00:00+01:00") is None
    assert parse_timestamp("9999-12-31T23:59:59-01:00") is None
    batch = validate_customers([{"id": 1, "email": "a@example.com", "updated_at": "0001-01-01T00:00:00+01:00"}])
    assert (batch.rejected, batch.rows[0]["crm_updated_at"]) == ([], None)


def test_invalid_records_are_kept_with_a_reason_never_dropped() -> None:
    records = [
        CANONICAL,
        {"id": 2, "name": "No Email"},
        {"id": 3, "email": "not-an-email"},
        {"id": 4, "email": "ok@x.io", "name": "x" * 300},
        "junk",
        {"id": 5, "email": "  CONTACT@acme.com ", "updated_at": "2025-01-01T00:00:00"},
    ]
    batch = validate_customers(records)
    assert list(batch.frame["crm_id"]) == ["1"]
    reasons = {(r.crm_id, r.reason) for r in batch.rejected}
    assert reasons == {
        ("2", "email is missing; email_normalized is missing"),
        ("3", "email_normalized is not a valid email address"),
        ("4", "name is too long (max 255 characters)"),
        (None, "record is str, not an object"),
        ("5", "email duplicates CRM customer 1 in this batch"),
    }
    assert len(batch.rejected) + batch.valid_count == len(records)
    junk = next(r for r in batch.rejected if r.crm_id is None)
    assert junk.record == "junk"


def test_the_most_recently_updated_duplicate_wins() -> None:
    older = {**CANONICAL, "id": 1, "updated_at": "2026-01-01T00:00:00", "name": "Old"}
    newer = {
        **CANONICAL,
        "id": 9,
        "email": "Contact@Acme.com",
        "updated_at": "2026-06-01T00:00:00",
        "name": "New",
    }
    batch = validate_customers([newer, older])
    assert list(batch.frame["name"]) == ["New"]
    assert batch.rejected[0].crm_id == "1"


def test_missing_values_are_none_never_the_text_nan() -> None:
    batch = validate_customers([{"id": 1, "email": "a@x.io"}])
    (row,) = batch.rows
    assert row == {
        "email_normalized": "a@x.io",
        "crm_id": "1",
        "email": "a@x.io",
        "name": None,
        "phone": None,
        "company": None,
        "industry": None,
        "notes": None,
        "revenue": None,
        "crm_created_at": None,
        "crm_updated_at": None,
    }
    assert "nan" not in {str(v).lower() for v in row.values() if v is not None}


def test_frame_types_are_checked_by_pandera() -> None:
    batch = validate_customers([CANONICAL])
    frame = batch.frame
    assert str(frame["revenue"].dtype) == "Float64"
    assert str(frame["crm_updated_at"].dtype) == "datetime64[us, UTC]"
    assert isinstance(frame["crm_id"].dtype, pd.StringDtype)
    (row,) = batch.rows
    assert row["crm_updated_at"] == datetime(2026, 12, 3, 15, 39, 22, 430075, tzinfo=UTC)
    assert math.isclose(row["revenue"], 5200000.0)


def test_rows_stay_aligned_with_the_validated_frame_when_rows_are_dropped() -> None:
    records = [
        {"id": 1, "email": "a@x.io", "revenue": "1k"},
        {"id": 2, "email": "broken"},
        {"id": 3, "email": "c@x.io", "name": "C"},
    ]
    batch = validate_customers(records)
    assert [r["crm_id"] for r in batch.rows] == list(batch.frame["crm_id"]) == ["1", "3"]
    assert [r["revenue"] for r in batch.rows] == [1000.0, None]
    assert batch.frame["revenue"].isna().tolist() == [False, True]


def test_an_invalid_newer_duplicate_does_not_take_the_valid_one_down() -> None:
    valid_old = {"id": 1, "email": "a@x.io", "name": "Ann", "updated_at": "2026-01-01T00:00:00"}
    invalid_new = {"id": 2, "email": "A@x.io", "name": "x" * 300, "updated_at": "2026-06-01T00:00:00"}
    batch = validate_customers([valid_old, invalid_new])
    assert [r["crm_id"] for r in batch.rows] == ["1"]
    assert [(r.crm_id, r.reason) for r in batch.rejected] == [("2", "name is too long (max 255 characters)")]


def test_records_that_break_normalization_are_rejected_not_fatal() -> None:
    records = [
        {"id": 1, "email": "a@x.io", "revenue": 10**400},
        {"id": "³", "email": "b@x.io"},
        {"id": "³", "email": "B@x.io", "updated_at": "2026-01-01T00:00:00"},
        {"id": 4, "email": "c@x.io", "name": {"first": "C"}},
        {"id": 5, "email": ("d" * 330) + "@x.io"},
    ]
    batch = validate_customers(records)
    assert [(r["crm_id"], r["revenue"]) for r in batch.rows] == [("1", None), ("³", None), ("4", None)]
    assert {r.crm_id: r.reason for r in batch.rejected} == {
        "³": "email duplicates CRM customer ³ in this batch",
        "5": "email is too long (max 320 characters); email_normalized is too long (max 320 characters)",
    }
