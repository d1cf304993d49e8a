"""The CRM client against the sandbox over loopback: every contract quirk and injected fault."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from resources.crm_client import CRMClient, parse_json, parse_retry_after
from resources.crm_errors import (
    CRMBadResponse,
    CRMConflict,
    CRMNotFound,
    CRMQueryRejected,
    CRMServerError,
    CRMUnavailable,
    CRMValidationError,
)
from resources.crm_factory import build_crm_client
from tests.conftest import make_settings


@pytest.fixture
def make_client(crm, sqlite_url):  # type: ignore[no-untyped-def]
    """Build clients with recorded (not slept) backoff waits."""
    made: list[CRMClient] = []

    def factory(**overrides: object) -> tuple[CRMClient, list[float]]:
        settings = make_settings(**{"enterprise_crm_url": crm.url, "database_url": sqlite_url, **overrides})
        client = build_crm_client(settings)
        waits: list[float] = []
        client._sleep = waits.append
        made.append(client)
        return client, waits

    yield factory
    for client in made:
        client.close()


def test_pages_use_the_contract_envelope(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    page = client.list_customers(limit=2, offset=2, sort_by="name")
    assert [c["name"] for c in page][:2] == sorted(c["name"] for c in page)
    assert len(page) == 2
    first = client.list_customers(limit=1, offset=0)
    assert first[0]["email"] == "contact@acme.com"


def test_window_stops_at_the_end_and_wraps(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    window = client.fetch_customer_window(offset=1000, cap=500, page_size=150)
    assert (len(window.records), window.next_offset, window.wrapped, window.pages) == (200, 0, True, 2)
    assert window.records[0]["id"] == 1001


def test_a_cursor_past_a_shrunken_list_restarts_at_zero(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    window = client.fetch_customer_window(offset=5000, cap=100, page_size=100)
    assert (window.start_offset, len(window.records), window.next_offset) == (0, 100, 100)


def test_limit_above_500_is_a_client_error_not_retried(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    client, waits = make_client()
    with pytest.raises(CRMValidationError) as caught:
        client.list_customers(limit=501)
    assert caught.value.details[0]["ctx"] == {"le": 500}
    assert (len(crm.requests("/api/customers")), waits) == (1, [])


@pytest.mark.parametrize("crm_id", [99999, 0, -1])
def test_missing_customer_is_the_crms_200_error(make_client, crm_id: int) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    with pytest.raises(CRMNotFound, match="Customer not found"):
        client.get_customer(crm_id)


def test_duplicate_email_is_a_conflict_not_an_outage(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    assert client.create_customer({"name": "N", "email": "dup@example.invalid"})["status"] == "created"
    with pytest.raises(CRMConflict):
        client.create_customer({"name": "N2", "email": "dup@example.invalid"})
    assert len(crm.requests("/api/customers")) == 2
    assert client.breaker.snapshot()["fail_counter"] == 0


def test_a_quote_in_search_is_rejected_not_retried(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    with pytest.raises(CRMQueryRejected):
        client.list_customers(limit=5, search="o'brien@example.invalid")
    assert len(crm.requests("/api/customers")) == 1
    assert client.breaker.snapshot()["fail_counter"] == 0


def test_500_json_is_retried_then_raised(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    client, waits = make_client(crm_retry_attempts=3)
    with pytest.raises(CRMServerError, match="500 OperationalError"):
        client.list_customers(limit=5)
    assert len(crm.requests("/api/customers")) == 3
    assert len(waits) == 2


def test_transient_502_html_then_success(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_502_html", "path": "/api/customers", "times": 2}])
    client, _ = make_client(crm_retry_attempts=3)
    assert len(client.list_customers(limit=5)) == 5
    assert len(crm.requests("/api/customers")) == 3


def test_502_html_reports_the_body_kind(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_502_html"}])
    client, _ = make_client(crm_retry_attempts=1)
    with pytest.raises(CRMServerError, match=r"502 \(text/html"):
        client.list_customers(limit=5)


def test_truncated_body_is_a_clear_error(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "truncated", "path": "/api/customers"}])
    client, _ = make_client(crm_retry_attempts=2)
    with pytest.raises(CRMBadResponse, match="truncated or malformed JSON"):
        client.list_customers(limit=50)
    assert len(crm.requests("/api/customers")) == 2


def test_json_bodies_parse_fast_and_what_orjson_refuses_still_parses() -> None:
    page = json.dumps({"customers": [{"id": 1, "name": "Zoë", "revenue": 5.2e6, "notes": None}], "total": 1})
    assert parse_json(page.encode()) == json.loads(page)
    # Python writes NaN literals; orjson refuses them and the standard library reads them.
    odd = parse_json(b'{"revenue": NaN, "id": 123456789012345678901234567890}')
    assert math.isnan(odd["revenue"]) and odd["id"] == 123456789012345678901234567890
    # Integers beyond 64 bits stay exact with or without a NaN elsewhere in the body (orjson alone would
    # give them as floats); negative ones too, and 64-bit ones take orjson's path.
    assert parse_json(b'{"id": 123456789012345678901234567890}')["id"] == 123456789012345678901234567890
    assert parse_json(b'{"id": 18446744073709551616}')["id"] == 2**64
    assert parse_json(b'{"id": -9223372036854775809}')["id"] == -(2**63) - 1
    assert parse_json(b'{"id": 18446744073709551615, "n": -9223372036854775808}') == {
        "id": 2**64 - 1,
        "n": -(2**63),
    }
    assert parse_json(b'{"phone": 123456789012345678901}')["phone"] == 123456789012345678901
    with pytest.raises(json.JSONDecodeError, match="Expecting"):
        parse_json(b'{"customers": [{"id": 1')


def test_connection_reset_is_unavailable(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "reset", "path": "/api/customers"}])
    client, _ = make_client(crm_retry_attempts=1)
    with pytest.raises(CRMUnavailable):
        client.list_customers(limit=5)


def test_a_hanging_crm_times_out(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "hang", "path": "/api/customers", "hang_seconds": 10}])
    client, _ = make_client(crm_retry_attempts=1, crm_read_timeout=0.3)
    with pytest.raises(CRMUnavailable, match="did not answer in time"):
        client.list_customers(limit=5)


def test_nothing_listening_is_unavailable_and_post_is_resent(make_client) -> None:  # type: ignore[no-untyped-def]
    from tests.support.net import free_port

    client, waits = make_client(enterprise_crm_url=f"http://127.0.0.1:{free_port()}", crm_retry_attempts=3)
    with pytest.raises(CRMUnavailable, match="cannot connect"):
        client.create_customer({"name": "N", "email": "n@example.invalid"})
    assert len(waits) == 2


def test_a_post_that_may_have_arrived_is_not_resent(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_502_html", "path": "/api/customers", "method": "POST"}])
    client, waits = make_client(crm_retry_attempts=3)
    with pytest.raises(CRMServerError):
        client.create_customer({"name": "N", "email": "n@example.invalid"})
    assert (len(crm.requests("/api/customers")), waits) == (1, [])


def test_latency_is_survived_and_measured(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "latency", "latency_ms": 150, "path": "/api/customers"}])
    client, _ = make_client()
    assert len(client.list_customers(limit=3)) == 3
    assert client.last_latency_ms >= 150


def test_429_retry_after_seconds_is_honoured(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_429", "retry_after": 1, "times": 1}])
    client, waits = make_client()
    assert len(client.list_customers(limit=3)) == 3
    assert waits == [1.0]
    assert client.breaker.snapshot()["fail_counter"] == 0


def test_429_retry_after_http_date_is_honoured_and_capped(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    crm.set_faults([{"mode": "http_429", "retry_after": soon, "times": 1}])
    client, waits = make_client(crm_retry_after_max=5.0)
    client.list_customers(limit=3)
    assert waits == [5.0]


def test_retry_after_parsing() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=9), usegmt=True), now=now.timestamp()) == 9.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=9), usegmt=True), now=now.timestamp()) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_health_of_the_sandbox(make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    report = client.health()
    assert (report["status"], report["service"], report["detail"]) == ("healthy", "enterprise-crm-portal", None)


@pytest.mark.parametrize("concurrency", [2, 4])
def test_concurrent_page_reads_keep_crm_order_and_stop_at_the_end(make_client, crm, concurrency: int) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client()
    sequential = client.fetch_customer_window(offset=100, cap=1200, page_size=250, concurrency=1)
    parallel = client.fetch_customer_window(offset=100, cap=1200, page_size=250, concurrency=concurrency)
    assert [r["id"] for r in parallel.records] == [r["id"] for r in sequential.records] == list(range(101, 1201))
    assert (parallel.next_offset, parallel.wrapped) == (0, True)
    full = client.fetch_customer_window(offset=0, cap=1000, page_size=300, concurrency=concurrency)
    assert ([r["id"] for r in full.records], full.next_offset, full.wrapped) == (list(range(1, 1001)), 1000, False)


def test_a_failing_page_fails_a_concurrent_window(make_client, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_500", "path": "/api/customers", "times": 50, "probability": 0.5}])
    client, _ = make_client(crm_retry_attempts=1)
    with pytest.raises(CRMServerError):
        client.fetch_customer_window(offset=0, cap=1200, page_size=100, concurrency=3)
