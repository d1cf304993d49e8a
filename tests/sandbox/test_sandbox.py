"""Tests of the CRM sandbox over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox import SandboxConfig, SandboxServer
from sandbox.data import COLUMNS, generate_customers
from sandbox.faults import FaultRuleError
from tests.support.net import plain_http_client

REPO_ROOT = Path(__file__).resolve().parents[2]
# The captured exchanges travel with the tests; CRM_CONTRACT_DIR replays another capture.
SAMPLES_DIR = (
    Path(os.environ["CRM_CONTRACT_DIR"]) / "samples"
    if os.environ.get("CRM_CONTRACT_DIR")
    else Path(__file__).resolve().parent / "contract-samples"
)

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
BARE_500_HEADERS = {"content-length", "content-type", "date", "server"}
CRM_HEADERS = {
    "x-request-id",
    "x-correlation-id",
    "x-trace-id",
    "x-span-id",
    "x-workflow-id",
    "strict-transport-security",
    "content-security-policy",
    "x-frame-options",
    "x-content-type-options",
    "referrer-policy",
    "permissions-policy",
}
# werkzeug closes every connection; uvicorn keeps them alive. Not part of the CRM's contract.
TRANSPORT_HEADERS = {"connection"}

STATELESS_SAMPLES = [
    "GET_api_customers",
    "GET_api_customers_id_existing",
    "GET_api_customers_id_missing",
    "GET_api_customers_id_negative",
    "GET_api_customers_id_nonint",
    "GET_api_customers_id_zero",
    "GET_api_customers_limit0",
    "GET_api_customers_limit2_offset2",
    "GET_api_customers_limit5",
    "GET_api_customers_limit500",
    "GET_api_customers_limit501",
    "GET_api_customers_limit_nonint",
    "GET_api_customers_offset_negative",
    "GET_api_customers_offset_past_end",
    "GET_api_customers_search_apostrophe",
    "GET_api_customers_search_email",
    "GET_api_customers_search_lowercase",
    "GET_api_customers_search_name",
    "GET_api_customers_search_nomatch",
    "GET_api_customers_sort_by_id_desc",
    "GET_api_customers_with_traceparent",
    "POST_api_customers_malformed_json",
    "GET_health",
    "GET_ready",
]
# The captured session ran these in this order; later ones see the effects of earlier ones.
SEQUENTIAL_SAMPLES = [
    "POST_api_customers",
    "GET_api_customers_after_create",
    "GET_api_customers_after_create_full_list",
    "POST_api_customers_duplicate_email",
    "PUT_api_customers_id",
    "GET_api_customers_id_after_put",
    "POST_api_customers_minimal",
]
SAMPLE_PATTERNS = ("GET_api_customers*.json", "POST_api_customers*.json", "PUT_api_customers*.json")
ERROR_KEYS = {
    "IntegrityError": "customers_email_key",
    "ProgrammingError": "syntax error",
    "JSONDecodeError": "Expecting property name",
}
SEED_IDS = {1, 2, 3, 4}

needs_samples = pytest.mark.skipif(not SAMPLES_DIR.is_dir(), reason=f"CRM samples not found in {SAMPLES_DIR}")


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(customers=4) as running:
        yield running


@pytest.fixture
def crm(server: SandboxServer) -> SandboxServer:
    server.reset()
    return server


@pytest.fixture
def client(crm: SandboxServer) -> Iterator[httpx.Client]:
    with plain_http_client(base_url=crm.url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def big_server() -> Iterator[SandboxServer]:
    with SandboxServer(customers=1200, seed=42) as running:
        yield running


@pytest.fixture
def big(big_server: SandboxServer) -> Iterator[httpx.Client]:
    big_server.reset()
    with plain_http_client(base_url=big_server.url, timeout=10) as http:
        yield http


def load_sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES_DIR / f"{name}.json").read_text())


def send_sample(client: httpx.Client, sample: dict[str, Any]) -> httpx.Response:
    req = sample["request"]
    body = req["body"]
    if body is None:
        content = None
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = json.dumps(body).encode()
    params = {key: str(value) for key, value in req["query"].items()}
    return client.request(req["method"], req["path"], params=params, headers=req["headers"], content=content)


def blank_new_timestamps(body: Any) -> Any:
    """Replace timestamps of customers created during the test, which cannot match the capture."""
    if isinstance(body, dict):
        if body.get("id") not in SEED_IDS and "created_at" in body:
            return {key: "<ts>" if key in ("created_at", "updated_at") else value for key, value in body.items()}
        return {key: blank_new_timestamps(value) for key, value in body.items()}
    if isinstance(body, list):
        return [blank_new_timestamps(item) for item in body]
    return body


def assert_matches_sample(response: httpx.Response, sample: dict[str, Any]) -> None:
    expected = sample["response"]
    assert response.status_code == expected["status"], response.text
    assert response.headers["content-type"] == "application/json"
    names = set(response.headers.keys()) - TRANSPORT_HEADERS
    assert names == set(expected["all_header_names"])
    body = response.json()
    if expected["status"] == 500:
        want = expected["body"]
        assert body["type"] == want["type"]
        assert body["path"] == want["path"]
        assert ERROR_KEYS[want["type"]] in body["error"]
        assert HEX32.match(body["correlation_id"])
        assert list(body) == list(want)
        assert names == BARE_500_HEADERS
        return
    # Compared as JSON text so that key order counts too.
    assert json.dumps(blank_new_timestamps(body)) == json.dumps(blank_new_timestamps(expected["body"]))
    assert response.headers["x-trace-id"] == response.headers["x-correlation-id"]
    assert HEX32.match(response.headers["x-trace-id"])
    assert HEX16.match(response.headers["x-span-id"])
    assert response.headers["x-workflow-id"] == expected["headers"]["x-workflow-id"]
    sent = {key.lower(): value for key, value in sample["request"]["headers"].items()}
    if "x-request-id" in sent:
        assert response.headers["x-request-id"] == sent["x-request-id"]
    else:
        assert HEX32.match(response.headers["x-request-id"])
    if "traceparent" in sent:
        assert response.headers["x-trace-id"] == expected["headers"]["x-trace-id"]


def assert_naive_iso(value: str) -> None:
    assert datetime.fromisoformat(value).tzinfo is None


# --- Replay of the captured exchanges ---------------------------------------------------------


@needs_samples
def test_replay_plan_covers_every_customer_and_health_sample() -> None:
    on_disk = {path.stem for pattern in SAMPLE_PATTERNS for path in SAMPLES_DIR.glob(pattern)}
    on_disk |= {"GET_health", "GET_ready"}
    assert on_disk == set(STATELESS_SAMPLES) | set(SEQUENTIAL_SAMPLES)


@needs_samples
@pytest.mark.parametrize("name", STATELESS_SAMPLES)
def test_replays_stateless_sample(client: httpx.Client, name: str) -> None:
    sample = load_sample(name)
    assert_matches_sample(send_sample(client, sample), sample)


@needs_samples
def test_replays_create_update_sequence(client: httpx.Client) -> None:
    created_at = None
    for name in SEQUENTIAL_SAMPLES:
        sample = load_sample(name)
        response = send_sample(client, sample)
        assert_matches_sample(response, sample)
        body = response.json()
        if name == "GET_api_customers_after_create":
            record = body["customers"][0]
            assert_naive_iso(record["created_at"])
            assert record["created_at"] == record["updated_at"]
            created_at = record["created_at"]
        if name == "GET_api_customers_id_after_put":
            assert body["customer"]["created_at"] == body["customer"]["updated_at"] == created_at


def test_failed_insert_consumes_an_id(client: httpx.Client) -> None:
    assert client.post("/api/customers", json={"name": "A", "email": "a@example.invalid"}).status_code == 200
    assert client.post("/api/customers", json={"name": "B", "email": "a@example.invalid"}).status_code == 500
    assert client.post("/api/customers", json={"name": "C", "email": "c@example.invalid"}).status_code == 200
    found = client.get("/api/customers", params={"search": "example.invalid", "sort_by": "id"}).json()
    assert [(c["id"], c["name"]) for c in found["customers"]] == [(5, "A"), (7, "C")]
    minimal = client.get("/api/customers/7").json()["customer"]
    assert (minimal["phone"], minimal["company"], minimal["industry"], minimal["notes"]) == ("", "", "", "")
    assert minimal["revenue"] == 0.0


# --- Customer behaviour beyond the samples ----------------------------------------------------


def test_put_changes_only_given_fields_and_keeps_updated_at(client: httpx.Client) -> None:
    before = client.get("/api/customers/2").json()["customer"]
    response = client.put("/api/customers/2", json={"phone": "+1-555-9999", "revenue": "13000000.5"})
    assert response.json() == {"status": "updated", "customer_id": 2}
    after = client.get("/api/customers/2").json()["customer"]
    assert after == {**before, "phone": "+1-555-9999", "revenue": 13000000.5}


def test_put_reports_updated_for_unknown_id_without_creating_it(client: httpx.Client) -> None:
    assert client.put("/api/customers/4242", json={"name": "Ghost"}).json() == {
        "status": "updated",
        "customer_id": 4242,
    }
    assert client.get("/api/customers/4242").json() == {"error": "Customer not found"}


@pytest.mark.parametrize(
    ("payload", "error_type", "key"),
    [
        ({"email": "info@globex.com"}, "IntegrityError", "customers_email_key"),
        ({"name": "O'Brien"}, "ProgrammingError", "syntax error"),
        ({"revenue": "lots"}, "DBAPIError", "double precision"),
    ],
)
def test_put_sql_failures_answer_500(client: httpx.Client, payload: dict, error_type: str, key: str) -> None:
    response = client.put("/api/customers/1", json=payload)
    assert response.status_code == 500
    assert response.json()["type"] == error_type
    assert key in response.json()["error"]
    assert set(response.headers.keys()) - TRANSPORT_HEADERS == BARE_500_HEADERS


def test_put_with_doubled_quote_stores_one_quote(client: httpx.Client) -> None:
    client.put("/api/customers/1", json={"name": "O''Brien"})
    assert client.get("/api/customers/1").json()["customer"]["name"] == "O'Brien"


@pytest.mark.parametrize(
    ("payload", "error_type"),
    [
        ([{"name": "x"}], "AttributeError"),
        ({"name": "x", "email": "x@example.invalid", "notes": None}, "AttributeError"),
        ({"name": 5, "email": "x@example.invalid"}, "InterfaceError"),
        ({"name": "x", "email": None}, "IntegrityError"),
        ({"name": "x" * 201, "email": "x@example.invalid"}, "DBAPIError"),
    ],
)
def test_post_failures_answer_500(client: httpx.Client, payload: Any, error_type: str) -> None:
    response = client.post("/api/customers", json=payload)
    assert response.status_code == 500
    assert response.json()["type"] == error_type


def test_detail_id_outside_int4_is_a_500(client: httpx.Client) -> None:
    response = client.get("/api/customers/99999999999")
    assert response.status_code == 500
    assert response.json()["type"] == "InterfaceError"


@pytest.mark.parametrize(
    ("search", "expected_ids"),
    [
        ("Acme", [1]),
        ("acme", [1]),
        ("ACME", []),
        ("Ac_e", [1]),
        ("%@%.com", [1, 2, 3, 4]),
        ("x%Ind", [2]),
        ("Wayne", [4]),
        ("o''", []),
    ],
)
def test_search_is_case_sensitive_like(client: httpx.Client, search: str, expected_ids: list[int]) -> None:
    body = client.get("/api/customers", params={"search": search, "sort_by": "id"}).json()
    assert [customer["id"] for customer in body["customers"]] == expected_ids


@pytest.mark.parametrize("sort_by", ["foo", "name; DROP TABLE customers", "name DESC NULLS", ""])
def test_bad_sort_by_is_a_programming_error(client: httpx.Client, sort_by: str) -> None:
    response = client.get("/api/customers", params={"sort_by": sort_by})
    assert response.status_code == 500
    assert response.json()["type"] == "ProgrammingError"


@pytest.mark.parametrize(
    ("sort_by", "expected"),
    [
        ("revenue", [3, 1, 2, 4]),
        ("REVENUE desc", [4, 2, 1, 3]),
        ("Company DESC", [4, 3, 2, 1]),
        ("email", [4, 1, 2, 3]),
    ],
)
def test_sort_by_column_and_direction(client: httpx.Client, sort_by: str, expected: list[int]) -> None:
    body = client.get("/api/customers", params={"sort_by": sort_by}).json()
    assert [customer["id"] for customer in body["customers"]] == expected


def test_sort_ties_break_by_id_and_pages_are_consistent(big: httpx.Client) -> None:
    full = []
    for offset in (0, 500, 1000):
        page = big.get("/api/customers", params={"sort_by": "industry", "limit": 500, "offset": offset}).json()
        assert page["total"] == len(page["customers"])
        full.extend(page["customers"])
    assert len(full) == 1200
    keys = [((c["industry"] is None), c["industry"] or "", c["id"]) for c in full]
    assert keys == sorted(keys)
    descending = big.get("/api/customers", params={"sort_by": "industry DESC", "limit": 500}).json()
    assert descending["customers"][0]["industry"] is None


def test_name_sort_reflects_writes(big: httpx.Client) -> None:
    assert big.post("/api/customers", json={"name": "AAA First", "email": "aaa@example.invalid"}).status_code == 200
    assert big.put("/api/customers/3", json={"name": "AAA Before"}).status_code == 200
    top = big.get("/api/customers", params={"limit": 2}).json()["customers"]
    assert [c["name"] for c in top] == ["AAA Before", "AAA First"]


def test_concurrent_creates_get_distinct_ids(client: httpx.Client) -> None:
    def create(n: int) -> int:
        return client.post(
            "/api/customers", json={"name": f"Load {n}", "email": f"load{n}@example.invalid"}
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(40)))
    assert statuses == [200] * 40
    body = client.get("/api/customers", params={"search": "Load ", "sort_by": "id", "limit": 100}).json()
    assert [c["id"] for c in body["customers"]] == list(range(5, 45))


def test_unknown_route_and_wrong_method(client: httpx.Client) -> None:
    missing = client.get("/api/tickets/1")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert missing.headers["x-workflow-id"] == "other"
    wrong = client.delete("/api/customers/1")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


# --- Response headers ---------------------------------------------------------------------------


def test_headers_on_normal_responses(client: httpx.Client) -> None:
    health = client.get("/health")
    assert set(health.headers.keys()) >= CRM_HEADERS
    assert health.headers["x-workflow-id"] == "other"
    assert health.headers["x-frame-options"] == "DENY"
    assert health.headers["x-content-type-options"] == "nosniff"
    assert health.headers["server"] == "uvicorn"
    assert client.get("/api/customers/1").headers["x-workflow-id"] == "crm-lead-capture"


def test_request_id_echo_is_limited_to_128_characters(client: httpx.Client) -> None:
    assert client.get("/health", headers={"X-Request-Id": "r" * 128}).headers["x-request-id"] == "r" * 128
    assert HEX32.match(client.get("/health", headers={"X-Request-Id": "r" * 129}).headers["x-request-id"])


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_invalid_traceparent_starts_a_new_trace(client: httpx.Client, traceparent: str) -> None:
    headers = client.get("/health", headers={"traceparent": traceparent}).headers
    assert HEX32.match(headers["x-trace-id"])
    assert headers["x-trace-id"] not in traceparent
    assert headers["x-correlation-id"] == headers["x-trace-id"]


# --- Response variants ------------------------------------------------------------------------


@pytest.mark.parametrize(("envelope", "key"), [("items", "items"), ("data", "data"), ("results", "results")])
def test_envelope_variants(crm: SandboxServer, client: httpx.Client, envelope: str, key: str) -> None:
    response = client.put("/_sandbox/variants", json={"envelope": envelope})
    assert response.json() == {"envelope": envelope, "field_variant": "canonical"}
    body = client.get("/api/customers", params={"limit": 2}).json()
    assert list(body) == [key, "total", "limit", "offset"]
    assert [c["id"] for c in body[key]] == [1, 2]


def test_bare_and_unknown_envelopes(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_variants(envelope="bare")
    bare = client.get("/api/customers", params={"limit": 2}).json()
    assert isinstance(bare, list)
    assert [c["id"] for c in bare] == [1, 2]
    crm.set_variants(envelope="unknown")
    assert "rows" in client.get("/api/customers").json()


def test_legacy_a_field_names(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_variants(field_variant="legacy_a")
    record = client.get("/api/customers", params={"limit": 1}).json()["customers"][0]
    assert record == {
        "customer_id": 1,
        "full_name": "Acme Corporation",
        "email_address": "contact@acme.com",
        "phone_number": "+1-555-0101",
        "company_name": "Acme Corp",
        "segment": "Manufacturing",
        "annual_revenue": 5200000.0,
        "notes": None,
        "created_at": "2026-12-03T15:39:22.430075",
        "updated_at": "2026-12-03T15:39:22.430075",
    }
    assert client.get("/api/customers/1").json()["customer"]["customer_id"] == 1


def test_legacy_b_field_names_and_string_values(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_variants(field_variant="legacy_b")
    record = client.get("/api/customers/1").json()["customer"]
    assert record["id"] == "1"
    assert record["customer_name"] == "Acme Corporation"
    assert record["contact_email"] == "contact@acme.com"
    assert record["revenue"] == "5,200,000.00"


def test_variants_from_config_survive_reset() -> None:
    with SandboxServer(customers=4, envelope="items", field_variant="legacy_a") as crm:
        url = f"{crm.url}/api/customers"
        assert "full_name" in httpx.get(url).json()["items"][0]
        crm.set_variants(envelope="bare")
        assert isinstance(httpx.get(url).json(), list)
        crm.reset()
        assert "items" in httpx.get(url).json()


# --- Fault injection --------------------------------------------------------------------------


def test_latency_delays_and_composes_with_later_rules(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults(
        [
            {"mode": "latency", "latency_ms": 300, "path": "/health"},
            {"mode": "http_500", "path": "/health", "times": 1},
        ]
    )
    started = time.perf_counter()
    first = client.get("/health")
    assert time.perf_counter() - started >= 0.3
    assert first.status_code == 500
    started = time.perf_counter()
    assert client.get("/health").status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_http_500_has_the_crm_error_shape_and_no_crm_headers(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    response = client.get("/api/customers", headers={"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"})
    assert response.status_code == 500
    body = response.json()
    assert list(body) == ["error", "type", "path", "correlation_id"]
    assert (body["type"], body["path"], body["correlation_id"]) == ("OperationalError", "/api/customers", "ab" * 16)
    assert set(response.headers.keys()) - TRANSPORT_HEADERS == BARE_500_HEADERS
    assert client.get("/health").status_code == 200


def test_error_with_probability_is_deterministic(crm: SandboxServer, client: httpx.Client) -> None:
    rules = [{"mode": "error", "probability": 0.5, "path": "/health"}]
    crm.set_faults(rules)
    first = [client.get("/health").status_code for _ in range(30)]
    crm.set_faults(rules)
    second = [client.get("/health").status_code for _ in range(30)]
    assert first == second
    assert set(first) == {200, 500}


def test_http_502_html(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "http_502_html"}])
    response = client.get("/api/customers")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == "<html><body><h1>502 Bad Gateway</h1></body></html>"


@pytest.mark.parametrize("retry_after", [7, "Wed, 21 Oct 2026 07:28:00 GMT"])
def test_http_429_with_retry_after(crm: SandboxServer, client: httpx.Client, retry_after: int | str) -> None:
    crm.set_faults([{"mode": "http_429", "retry_after": retry_after, "times": 1}])
    limited = client.get("/api/customers")
    assert (limited.status_code, limited.json()) == (429, {"detail": "Too Many Requests"})
    assert limited.headers["retry-after"] == str(retry_after)
    assert client.get("/api/customers").status_code == 200


def test_truncated_body_is_invalid_json(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "truncated", "path": "/api/customers"}])
    response = client.get("/api/customers")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content) > 0
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_reset_breaks_the_connection(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "reset", "method": "POST", "times": 1}])
    assert client.get("/api/customers").status_code == 200
    with pytest.raises(httpx.TransportError):
        client.post("/api/customers", json={"name": "Lost", "email": "lost@example.invalid"})
    assert client.get("/api/customers", params={"search": "lost@"}).json()["customers"] == []
    assert client.post("/api/customers", json={"name": "Kept", "email": "kept@example.invalid"}).status_code == 200


def test_times_expires_the_rule(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "http_500", "times": 2, "path": "/api/customers"}])
    assert [client.get("/api/customers").status_code for _ in range(3)] == [500, 500, 200]
    assert crm.faults() == []


def test_rules_filter_by_path_and_method(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "http_500", "path": "/api/customers", "method": "post"}])
    assert client.get("/api/customers").status_code == 200
    assert client.get("/health").status_code == 200
    assert client.post("/api/customers", json={}).status_code == 500


def test_admin_endpoints_are_never_faulted_nor_recorded(crm: SandboxServer, client: httpx.Client) -> None:
    crm.set_faults([{"mode": "http_502_html"}])
    listed = client.get("/_sandbox/faults")
    assert listed.status_code == 200
    assert listed.json()["rules"] == [{"mode": "http_502_html"}]
    assert client.get("/_sandbox/requests").json() == {"requests": []}


def _request_in_thread(url: str, outcome: list[BaseException | httpx.Response]) -> threading.Thread:
    def run() -> None:
        try:
            outcome.append(httpx.get(url, timeout=20))
        except httpx.HTTPError as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_hang_is_released_by_clear_faults(crm: SandboxServer) -> None:
    crm.set_faults([{"mode": "hang", "hang_seconds": 60, "path": "/api/customers"}])
    outcome: list[BaseException | httpx.Response] = []
    thread = _request_in_thread(f"{crm.url}/api/customers", outcome)
    assert crm.wait_for_requests(1, "/api/customers", timeout=5)
    started = time.perf_counter()
    crm.clear_faults()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.perf_counter() - started < 5
    released = outcome[0]
    assert isinstance(released, httpx.Response)
    assert released.status_code == 200
    assert crm.requests("/api/customers")[0]["faults"] == ["hang"]


def test_hang_times_out_before_a_client_with_a_short_timeout(crm: SandboxServer) -> None:
    crm.set_faults([{"mode": "hang", "hang_seconds": 10, "times": 1}])
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{crm.url}/health", timeout=0.3)
    crm.clear_faults()
    assert httpx.get(f"{crm.url}/health", timeout=5).status_code == 200


def test_hang_is_bounded_by_hang_max_seconds() -> None:
    with SandboxServer(customers=4, hang_max_seconds=0.3, faults=[{"mode": "hang"}]) as crm:
        started = time.perf_counter()
        assert httpx.get(f"{crm.url}/health", timeout=10).status_code == 200
        assert 0.3 <= time.perf_counter() - started < 5


def test_stop_releases_hanging_requests() -> None:
    crm = SandboxServer(customers=4, faults=[{"mode": "hang", "path": "/health"}]).start()
    outcome: list[BaseException | httpx.Response] = []
    thread = _request_in_thread(f"{crm.url}/health", outcome)
    assert crm.wait_for_requests(1, timeout=5)
    crm.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(outcome[0], httpx.TransportError)


def test_start_up_faults_come_from_config() -> None:
    with SandboxServer(customers=4, faults=[{"mode": "http_429", "times": 1}]) as crm:
        assert httpx.get(f"{crm.url}/health").status_code == 429
        assert httpx.get(f"{crm.url}/health").status_code == 200


# --- Control API and request recording ---------------------------------------------------------


def test_requests_are_recorded_with_headers_and_body(crm: SandboxServer, client: httpx.Client) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.post(
        "/api/customers?source=shop",
        json={"name": "Rec", "email": "rec@example.invalid"},
        headers={"traceparent": traceparent},
    )
    client.put("/api/customers/1", content=b"not json", headers={"Content-Type": "text/plain"})
    client.get("/health")
    recorded = crm.requests("/api/customers")
    assert [entry["method"] for entry in recorded] == ["POST", "PUT"]
    post, put = recorded
    assert post["path"] == "/api/customers"
    assert post["query_string"] == "source=shop"
    assert post["query"] == {"source": "shop"}
    assert post["headers"]["traceparent"] == traceparent
    assert post["body"] == {"name": "Rec", "email": "rec@example.invalid"}
    assert post["body_is_json"] is True
    assert datetime.fromisoformat(post["timestamp"]).tzinfo is not None
    assert (put["body"], put["body_is_json"]) == ("not json", False)
    over_http = client.get("/_sandbox/requests", params={"path_prefix": "/health"}).json()["requests"]
    assert [entry["path"] for entry in over_http] == ["/health"]
    assert client.delete("/_sandbox/requests").json() == {"cleared": 3}
    assert crm.requests() == []


def test_faults_can_be_managed_over_http(crm: SandboxServer, client: httpx.Client) -> None:
    rules = [{"mode": "latency", "latency_ms": 1, "path": "/health"}, {"mode": "http_500", "times": 3}]
    assert client.put("/_sandbox/faults", json={"rules": rules}).json() == {"rules": rules}
    assert client.get("/_sandbox/faults").json()["rules"] == rules
    assert client.get("/api/customers").status_code == 500
    assert crm.faults()[1]["times"] == 2
    assert client.delete("/_sandbox/faults").json() == {"rules": []}
    assert client.get("/api/customers").status_code == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([{"mode": "explode"}], "rules[0].mode"),
        ([{"mode": "http_500", "colour": "red"}], "rules[0].colour"),
        ([{"mode": "error", "probability": 1.5}], "rules[0].probability"),
        ([{"mode": "latency"}], "rules[0].latency_ms"),
        ([{"mode": "http_500", "latency_ms": 5}], "rules[0].latency_ms"),
        ([{"mode": "http_500"}, {"mode": "http_429", "retry_after": -1}], "rules[1].retry_after"),
        ([{"mode": "hang", "hang_seconds": 0}], "rules[0].hang_seconds"),
        ([{"mode": "reset", "times": 0}], "rules[0].times"),
        ([{"mode": "reset", "path": "api"}], "rules[0].path"),
        ({"rules": "all"}, "rules"),
        ("oops", "rules"),
    ],
)
def test_invalid_fault_rules_are_rejected(crm: SandboxServer, client: httpx.Client, payload: Any, field: str) -> None:
    crm.set_faults([{"mode": "truncated", "path": "/nowhere"}])
    response = client.put("/_sandbox/faults", json=payload)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert crm.faults() == [{"mode": "truncated", "path": "/nowhere"}]


def test_invalid_admin_bodies_are_rejected(crm: SandboxServer, client: httpx.Client) -> None:
    assert client.put("/_sandbox/faults", content=b"{").json()["field"] == "body"
    assert client.put("/_sandbox/variants", json={"envelope": "rows"}).json()["field"] == "envelope"
    assert client.put("/_sandbox/variants", json={"shape": "x"}).json()["field"] == "shape"
    with pytest.raises(FaultRuleError) as raised:
        crm.set_faults([{"mode": "http_500", "method": 7}])
    assert raised.value.field == "rules[0].method"


def test_reset_endpoint_restores_seed(crm: SandboxServer, client: httpx.Client) -> None:
    client.post("/api/customers", json={"name": "Temp", "email": "temp@example.invalid"})
    crm.set_faults([{"mode": "http_500", "path": "/nowhere"}])
    assert client.post("/_sandbox/reset").json()["customers"] == 4
    assert crm.faults() == []
    assert crm.requests() == []
    assert client.get("/api/customers").json()["total"] == 4
    assert client.post("/api/customers", json={"name": "Again", "email": "temp@example.invalid"}).status_code == 200


def test_bulk_update_can_touch_updated_at(big_server: SandboxServer, big: httpx.Client) -> None:
    response = big.post(
        "/_sandbox/customers/bulk-update",
        json={"ids": [10, 20, 999999], "fields": {"industry": "Drones"}, "touch_updated_at": True},
    )
    assert response.json() == {"updated": [10, 20], "missing": [999999]}
    newest = big.get("/api/customers", params={"sort_by": "updated_at DESC", "limit": 2}).json()["customers"]
    assert sorted(c["id"] for c in newest) == [10, 20]
    assert {c["industry"] for c in newest} == {"Drones"}
    assert newest[0]["updated_at"] > newest[0]["created_at"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"ids": [], "fields": {"name": "x"}}, "ids"),
        ({"ids": [1, "2"], "fields": {"name": "x"}}, "ids[1]"),
        ({"ids": [1], "fields": {"id": 5}}, "fields.id"),
        ({"ids": [1], "fields": {"revenue": "high"}}, "fields.revenue"),
        ({"ids": [1], "fields": {"updated_at": "2026-01-01T00:00:00+00:00"}}, "fields.updated_at"),
        ({"ids": [1, 2], "fields": {"email": "same@example.invalid"}}, "fields.email"),
        ({"ids": [1]}, "fields"),
        ({"ids": [1], "fields": {}, "touch_updated_at": "yes"}, "touch_updated_at"),
        ({"ids": [1], "fields": {"name": "x"}, "extra": 1}, "extra"),
    ],
)
def test_bulk_update_validation(client: httpx.Client, payload: dict, field: str) -> None:
    response = client.post("/_sandbox/customers/bulk-update", json=payload)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_bulk_update_keeps_emails_unique(client: httpx.Client) -> None:
    response = client.post("/_sandbox/customers/bulk-update", json={"ids": [1], "fields": {"email": "info@globex.com"}})
    assert response.status_code == 409


# --- Seed data and performance ------------------------------------------------------------------


def test_seed_generation_is_deterministic_and_fast() -> None:
    started = time.perf_counter()
    customers = generate_customers(100_000, seed=42)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert customers == generate_customers(100_000, seed=42)
    assert customers[4:] != generate_customers(100_000, seed=7)[4:]
    assert [c["id"] for c in customers] == list(range(1, 100_001))
    assert len({c["email"] for c in customers}) == 100_000
    assert all(list(c) == list(COLUMNS) for c in customers[:50])
    assert all(c["email"] == c["email"].strip() and "@" in c["email"] for c in customers)
    assert any(c["email"] != c["email"].lower() for c in customers)
    assert any(c["phone"] is None for c in customers)
    assert all(isinstance(c["revenue"], float) for c in customers)
    assert_naive_iso(customers[-1]["created_at"])


def test_default_config_seeds_1200_customers() -> None:
    assert SandboxConfig().customers == 1200
    with SandboxServer() as crm:
        body = httpx.get(f"{crm.url}/api/customers", params={"limit": 500, "offset": 1000}).json()
        assert body["total"] == 200
        assert body["customers"][-1]["id"] != 1200 or body["customers"][-1]["name"] >= body["customers"][0]["name"]


def test_deep_page_of_100k_customers_is_fast() -> None:
    with SandboxServer(customers=100_000) as crm, httpx.Client(base_url=crm.url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        params = {"sort_by": "id", "limit": 500, "offset": 99_500}
        started = time.perf_counter()
        response = http.get("/api/customers", params=params)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200
        assert [c["id"] for c in response.json()["customers"]] == list(range(99_501, 100_001))
        assert elapsed < 0.2


# --- Command line -------------------------------------------------------------------------------


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_cli_help() -> None:
    result = _run_cli("--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--customers", "--seed", "--envelope", "--field-variant", "--fault"):
        assert flag in result.stdout
    assert "SANDBOX_PORT" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The CLI must refuse this address, so it is never bound.
        (("--host", "0.0.0.0"), "loopback"),  # noqa: S104
        (("--fault", '{"mode": "boom"}'), "mode"),
        (("--port", "70000"), "port"),
    ],
)
def test_cli_rejects_bad_arguments(args: tuple[str, ...], message: str) -> None:
    result = _run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("stop_signal", "args", "env"),
    [
        (signal.SIGTERM, ("--port", "0", "--customers", "7", "--envelope", "data"), {}),
        (signal.SIGINT, (), {"SANDBOX_PORT": "0", "SANDBOX_CUSTOMERS": "7"}),
    ],
)
def test_cli_serves_until_signalled(stop_signal: signal.Signals, args: tuple[str, ...], env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "sandbox", *args, "--fault", '{"mode": "http_429", "times": 1}']
    with subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
        try:
            url = None
            while url is None:
                match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", lines.get(timeout=20))
                url = match.group(1) if match else None
            assert httpx.get(f"{url}/health").status_code == 429
            body = httpx.get(f"{url}/api/customers").json()
            assert body["total"] == 7
            assert ("data" in body) == ("--envelope" in args)
            process.send_signal(stop_signal)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
