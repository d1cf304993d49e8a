"""The Flask API with real Dagster runs (in-process launcher), the sandbox over HTTP and SQLite."""

from __future__ import annotations

import json

import dagster as dg
import pytest
from flask.testing import FlaskClient

from api import create_app
from api.runs import InProcessRunLauncher
from resources.settings import get_settings
from tests.api.conftest import CUSTOMERS, HEALTH, SYNC


def _error(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.get_json()
    assert set(body) == {"error"}, body
    return body["error"]


@pytest.mark.parametrize("limit", ["0", "501", "-1", "abc", "1.5", "", "10.0", "+5", " 5 ", "1_0", "٣", "9" * 40])
def test_customers_limit_out_of_range_is_a_400_naming_limit(client: FlaskClient, limit: str) -> None:
    response = client.get(CUSTOMERS, query_string={"limit": limit})
    assert response.status_code == 400
    error = _error(response)
    assert error["details"]["field"] == "limit"
    assert error["message"].startswith("limit: ")


@pytest.mark.parametrize("refresh", ["maybe", "2", "truth", "yes", "on", "", " true", "false "])
def test_refresh_must_be_a_boolean(client: FlaskClient, refresh: str) -> None:
    response = client.get(CUSTOMERS, query_string={"refresh": refresh})
    assert response.status_code == 400
    assert _error(response)["details"]["field"] == "refresh"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "200"}, "limit"),
        ({"limit": 1.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": None, "force": 1}, "force"),
        ({"force": "yes"}, "force"),
        ({"forse": True}, "forse"),
        ([1, 2], "body"),
        ("force", "body"),
        (7, "body"),
    ],
)
def test_sync_body_errors_name_the_field(client: FlaskClient, body: object, field: str) -> None:
    response = client.post(SYNC, json=body)
    assert response.status_code == 400
    assert _error(response)["details"]["field"] == field


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[" * 5000 + "]" * 5000, "body: nested too deeply"),
        ("null", "body: must be a JSON object"),
        ('{"limit": NaN}', "body: not valid JSON"),
        ('{"limit": Infinity}', "body: not valid JSON"),
    ],
)
def test_hostile_bodies_are_a_clean_400(client: FlaskClient, raw: str, message: str) -> None:
    response = client.post(SYNC, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert _error(response)["message"] == message


def test_a_body_over_64_kib_is_refused_unread(client: FlaskClient) -> None:
    response = client.post(SYNC, data='{"force": true, "pad": "' + "x" * 70_000 + '"}', content_type="application/json")
    assert response.status_code == 413
    assert _error(response)["code"] == "request_entity_too_large"
    assert _error(response)["details"] == {"field": "body", "reason": "larger than 65536 bytes"}


def test_a_float_overflow_in_the_body_is_reported_as_valid_json(client: FlaskClient) -> None:
    response = client.post(SYNC, data='{"limit": 1e400}', content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.get_data(as_text=True))["error"]["details"]["value"] == "inf"


def test_malformed_json_and_wrong_content_type_are_rejected(client: FlaskClient) -> None:
    bad = client.post(SYNC, data='{"force": tru', content_type="application/json")
    assert bad.status_code == 400
    assert _error(bad)["message"] == "body: not valid JSON"
    text = client.post(SYNC, data='{"force": true}', content_type="text/plain")
    assert text.status_code == 415
    assert _error(text)["details"]["field"] == "body"


def test_unknown_routes_and_methods_answer_in_the_json_error_shape(client: FlaskClient) -> None:
    assert _error(client.get("/api/integrations/crm/nope"))["code"] == "not_found"
    assert client.get(SYNC).status_code == 405


def test_forced_sync_runs_dagster_and_answers_in_the_original_shape(client: FlaskClient, crm, instance) -> None:
    response = client.post(SYNC, json={"force": True, "limit": 200})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert {k: body[k] for k in ("configured", "synced", "cached", "customers_seen", "inserted", "updated")} == {
        "configured": True,
        "synced": True,
        "cached": False,
        "customers_seen": 200,
        "inserted": 200,
        "updated": 0,
    }
    assert body["last_count"] == 200
    assert body["crm_url"] == crm.url
    assert body["last_error"] is None
    assert isinstance(body["last_sync_epoch"], int)
    run = instance.get_run_by_id(body["run_id"])
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["crm/trigger"] == "api"

    listed = client.get(CUSTOMERS, query_string={"limit": 500}).get_json()
    assert listed["count"] == 200
    assert listed["sync_state"]["cursor_offset"] == 200
    assert listed["sync_state"]["last_inserted"] == 200
    stamps = [c["updated_at"] for c in listed["customers"]]
    assert stamps == sorted(stamps, reverse=True)
    assert {"email", "crm_id", "last_synced_at"} <= set(listed["customers"][0])


def test_within_five_minutes_an_unforced_sync_answers_from_the_cache(client: FlaskClient, crm) -> None:
    first = client.post(SYNC, json={"force": True, "limit": 10}).get_json()
    calls = len(crm.requests("/api/customers"))
    cached = client.post(SYNC, json={"force": False}).get_json()
    assert cached["cached"] is True
    assert cached["synced"] is False
    assert cached["run_id"] is None
    assert cached["joined"] is False
    assert cached["last_sync_epoch"] == first["last_sync_epoch"]
    assert 0 <= cached["cache_age_seconds"] < 300
    assert len(crm.requests("/api/customers")) == calls
    refreshed = client.get(CUSTOMERS, query_string={"refresh": "true"}).get_json()
    assert refreshed["refresh"]["cached"] is True
    assert len(crm.requests("/api/customers")) == calls


def test_forced_sync_after_full_coverage_changes_nothing(client: FlaskClient) -> None:
    for _ in range(3):
        assert client.post(SYNC, json={"force": True, "limit": 500}).get_json()["synced"] is True
    again = client.post(SYNC, json={"force": True, "limit": 500}).get_json()
    assert (again["customers_seen"], again["inserted"], again["updated"], again["unchanged"]) == (500, 0, 0, 500)


def test_refresh_true_syncs_first_when_the_cache_is_empty(client: FlaskClient) -> None:
    body = client.get(CUSTOMERS, query_string={"refresh": "true", "limit": 5}).get_json()
    assert body["refresh"]["synced"] is True
    assert body["count"] == 5
    assert body["sync_state"]["last_fetched"] == 500


def test_service_key_is_required_when_configured(env, instance) -> None:  # type: ignore[no-untyped-def]
    env.setenv("INTERNAL_SERVICE_KEY", "s3cret-key")
    get_settings.cache_clear()
    client = create_app({"run_launcher": InProcessRunLauncher(instance)}).test_client()
    missing = client.post(SYNC, json={"force": True, "limit": 1})
    wrong = client.post(SYNC, json={"force": True, "limit": 1}, headers={"X-Internal-Service-Key": "s3cret-kez"})
    right = client.post(SYNC, json={"force": True, "limit": 1}, headers={"X-Internal-Service-Key": " s3cret-key "})
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    for response in (missing, wrong, right):
        assert "s3cret" not in response.get_data(as_text=True)
    assert client.get(CUSTOMERS).status_code == 200


def test_a_failed_sync_reports_the_error_without_internal_hosts(env, instance, crm) -> None:  # type: ignore[no-untyped-def]
    port = crm.url.rsplit(":", 1)[1]
    env.setenv("ENTERPRISE_CRM_URL", f"http://localhost:{port}")
    env.setenv("CRM_PUBLIC_URL", "https://crm.drone-shop.example")
    get_settings.cache_clear()
    crm.set_faults([{"mode": "http_502_html", "path": "/api/customers"}])
    client = create_app({"run_launcher": InProcessRunLauncher(instance)}).test_client()
    body = client.post(SYNC, json={"force": True}).get_json()
    assert body["synced"] is False
    assert body["run_status"] == "FAILURE"
    assert "502" in body["last_error"]
    assert body["crm_url"] == "https://crm.drone-shop.example"
    assert f"localhost:{port}" not in json.dumps(body)


def test_health_reports_healthy_with_the_public_url(client: FlaskClient, crm) -> None:
    body = client.get(HEALTH).get_json()
    assert (body["status"], body["service"], body["crm_url"]) == ("healthy", "enterprise-crm-portal", crm.url)
    assert body["circuit_breaker"]["state"] == "closed"


def test_health_unhealthy_when_the_crm_errors(client: FlaskClient, crm) -> None:
    crm.set_faults([{"mode": "http_500", "path": "/health"}])
    assert client.get(HEALTH).get_json()["status"] == "unhealthy"


def test_health_unreachable_and_not_configured(env, instance) -> None:  # type: ignore[no-untyped-def]
    from tests.support.net import free_port

    env.setenv("ENTERPRISE_CRM_URL", f"http://127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    app = create_app({"run_launcher": InProcessRunLauncher(instance)})
    assert app.test_client().get(HEALTH).get_json()["status"] == "unreachable"
    env.delenv("ENTERPRISE_CRM_URL")
    get_settings.cache_clear()
    app = create_app({"run_launcher": InProcessRunLauncher(instance)})
    body = app.test_client().get(HEALTH).get_json()
    assert (body["status"], body["crm_url"]) == ("not_configured", None)


def test_a_non_ascii_service_key_matches(env, instance) -> None:  # type: ignore[no-untyped-def]
    env.setenv("INTERNAL_SERVICE_KEY", "s3cret-κey")
    get_settings.cache_clear()
    client = create_app({"run_launcher": InProcessRunLauncher(instance)}).test_client()
    header = "s3cret-κey".encode().decode("latin-1")  # how WSGI hands a UTF-8 header value to the app
    ok = client.post(SYNC, json={"force": True, "limit": 1}, headers={"X-Internal-Service-Key": header})
    assert ok.status_code == 200
    wrong = client.post(SYNC, json={"force": True, "limit": 1}, headers={"X-Internal-Service-Key": "s3cret-key"})
    assert wrong.status_code == 401


def test_refresh_needs_the_service_key_when_one_is_configured(env, instance) -> None:  # type: ignore[no-untyped-def]
    env.setenv("INTERNAL_SERVICE_KEY", "s3cret-key")
    get_settings.cache_clear()
    client = create_app({"run_launcher": InProcessRunLauncher(instance)}).test_client()
    assert client.get(CUSTOMERS, query_string={"refresh": "true"}).status_code == 401
    keyed = client.get(CUSTOMERS, query_string={"refresh": "true"}, headers={"X-Internal-Service-Key": "s3cret-key"})
    assert keyed.status_code == 200
    assert keyed.get_json()["refresh"]["synced"] is True


def test_after_a_failure_unforced_syncs_back_off_instead_of_calling_the_crm(client: FlaskClient, crm) -> None:
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    failed = client.post(SYNC, json={"force": True}).get_json()
    assert failed["synced"] is False
    calls = len(crm.requests("/api/customers"))
    backed_off = client.post(SYNC, json={}).get_json()
    assert (backed_off["cached"], backed_off["run_id"]) == (True, None)
    assert "500" in backed_off["last_error"]
    assert len(crm.requests("/api/customers")) == calls


def test_a_sync_under_way_is_joined_not_repeated(client: FlaskClient, crm, env) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import update

    from resources.crm_factory import shared_engine
    from resources.db import sync_runs

    first = client.post(SYNC, json={"force": True, "limit": 10}).get_json()
    # The same run, as another worker would see it while it is still going.
    with shared_engine(get_settings().database_url).begin() as conn:
        conn.execute(update(sync_runs).where(sync_runs.c.run_id == first["run_id"]).values(status="started"))
    calls = len(crm.requests("/api/customers"))
    joined = client.post(SYNC, json={"force": True, "limit": 10}).get_json()
    assert (joined["run_id"], joined["joined"]) == (first["run_id"], True)
    assert len(crm.requests("/api/customers")) == calls


def test_a_full_sync_can_be_asked_for(client: FlaskClient) -> None:
    body = client.post(SYNC, json={"force": True, "mode": "full"}).get_json()
    assert (body["synced"], body["customers_seen"], body["inserted"]) == (True, 1200, 1200)
    assert client.post(SYNC, json={"mode": "everything"}).status_code == 400


def test_the_openapi_document_names_every_reply_the_key_and_the_optional_body(client: FlaskClient) -> None:
    document = client.get("/api/integrations/crm/docs/openapi.json").get_json()
    paths = document["paths"]
    sync = paths[SYNC]["post"]
    assert set(sync["responses"]) == {"200", "400", "401", "413", "415", "500", "503", "504"}
    assert sync["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SyncReply"
    }
    assert sync["security"] == [{"service_key": []}]
    assert sync["requestBody"]["required"] is False
    listing = paths[CUSTOMERS]["get"]
    assert listing["security"] == [{}, {"service_key": []}]  # the key only for refresh=true
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CustomersReply")
    assert set(paths[HEALTH]["get"]["responses"]) == {"200", "500"}
    components = document["components"]
    assert components["securitySchemes"]["service_key"] == {
        "type": "apiKey",
        "name": "X-Internal-Service-Key",
        "in": "header",
        "description": "Needed only when INTERNAL_SERVICE_KEY is configured",
    }
    assert {"SyncReply", "CustomersReply", "Customer", "SyncState", "HealthReply", "ErrorReply"} <= set(
        components["schemas"]
    )
    assert components["schemas"]["SyncReply"]["additionalProperties"] is False


def test_a_whole_json_number_is_a_limit_whichever_way_it_is_written(client: FlaskClient) -> None:
    body = client.post(SYNC, json={"force": True, "limit": 3.0}).get_json()
    assert (body["synced"], body["customers_seen"], body["inserted"]) == (True, 3, 3)


@pytest.mark.parametrize(
    ("method", "path", "allow"), [("DELETE", SYNC, "OPTIONS, POST"), ("PUT", HEALTH, "GET, HEAD, OPTIONS")]
)
def test_a_wrong_method_is_a_json_405_that_says_which_are_allowed(
    client: FlaskClient, method: str, path: str, allow: str
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == set(allow.split(", "))
    assert _error(response)["code"] == "method_not_allowed"
