"""Real Dagster runs of customer_sync_job against the CRM sandbox over HTTP, into SQLite files."""

from __future__ import annotations

from typing import Any

import dagster as dg
import httpx
import pytest
from sqlalchemy import func, select

from pipelines.definitions import build_defs
from resources.crm_factory import shared_engine
from resources.customer_store import get_sync_state
from resources.db import customer_rejects
from resources.db import customers as customers_table
from resources.settings import Settings, get_settings
from tests.conftest import dagster_resources


def run_sync(settings: Settings, instance: dg.DagsterInstance, **config: Any) -> dg.ExecuteInJobResult:
    """Execute the real job with the test's resources."""
    defs = build_defs(dagster_resources(settings))
    run_config = {"ops": {"crm_customers": {"config": config}}} if config else None
    return defs.resolve_job_def("customer_sync_job").execute_in_process(
        instance=instance, run_config=run_config, raise_on_error=False
    )


def materialization(result: dg.ExecuteInJobResult, key: str) -> dict[str, Any]:
    """The metadata of one asset's materialization, as plain values."""
    (event,) = result.asset_materializations_for_node(key)
    return {name: value.value for name, value in event.metadata.items()}


def stored_crm_ids(settings: Settings) -> set[str]:
    with shared_engine(settings.database_url).connect() as conn:
        return set(conn.execute(select(customers_table.c.crm_id)).scalars())


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as instance:
        yield instance


def test_three_scheduled_ticks_cover_all_1200_customers_500_at_a_time(crm, settings, instance) -> None:
    seen: list[dict[str, Any]] = []
    for _ in range(3):
        result = run_sync(settings, instance)
        assert result.success
        seen.append(materialization(result, "customers"))
    assert [(m["window_start"], m["fetched"], m["next_cursor"]) for m in seen] == [
        (0, 500, 500),
        (500, 500, 1000),
        (1000, 200, 0),
    ]
    assert [m["inserted"] for m in seen] == [500, 500, 200]
    assert stored_crm_ids(settings) == {str(i) for i in range(1, 1201)}
    pages = crm.requests("/api/customers")
    assert pages, "the sync must have called the CRM"
    assert all(int(p["query"]["limit"]) <= 500 and p["query"]["sort_by"] == "id" for p in pages)
    fourth = materialization(run_sync(settings, instance), "customers")
    assert (fourth["window_start"], fourth["inserted"], fourth["unchanged"]) == (0, 0, 500)


def test_sync_of_an_unchanged_crm_reports_nothing_inserted_or_updated(crm, settings, instance) -> None:
    run_sync(settings, instance, mode="full")
    again = materialization(run_sync(settings, instance, mode="full"), "customers")
    assert (again["fetched"], again["inserted"], again["updated"], again["unchanged"]) == (1200, 0, 0, 1200)


def test_a_changed_crm_customer_is_updated_in_place(crm, settings, instance) -> None:
    run_sync(settings, instance, limit=10)
    httpx.put(f"{crm.url}/api/customers/3", json={"company": "Initech Drones"}, timeout=5).raise_for_status()
    meta = materialization(run_sync(settings, instance, mode="full"), "customers")
    assert (meta["inserted"], meta["updated"], meta["unchanged"]) == (1190, 1, 9)
    with shared_engine(settings.database_url).connect() as conn:
        company = conn.execute(select(customers_table.c.company).where(customers_table.c.crm_id == "3")).scalar_one()
    assert company == "Initech Drones"


def test_invalid_crm_records_are_quarantined_with_their_reason(crm, settings, instance) -> None:
    for body in ({"name": "Broken Email", "email": "not-an-email"}, {"name": "Dup", "email": "CONTACT@acme.com "}):
        httpx.post(f"{crm.url}/api/customers", json=body, timeout=5).raise_for_status()
    result = run_sync(settings, instance, mode="full")
    assert result.success
    meta = materialization(result, "crm_customers")
    assert (meta["fetched"], meta["valid"], meta["invalid"]) == (1202, 1200, 2)
    with shared_engine(settings.database_url).connect() as conn:
        rejects = {row.crm_id: row.reason for row in conn.execute(select(customer_rejects))}
        acme = conn.execute(
            select(customers_table.c.crm_id).where(customers_table.c.email_normalized == "contact@acme.com")
        ).scalar_one()
    # The CRM's unique index is case-sensitive; for us both are one customer and the newest record wins.
    assert rejects == {
        "1201": "email_normalized is not a valid email address",
        "1": "email duplicates CRM customer 1202 in this batch",
    }
    assert acme == "1202"
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"customers_unique_email": True, "customers_unique_crm_id": True, "customers_invalid_share": True}


def test_invalid_share_check_fails_over_the_threshold(crm, settings, instance, monkeypatch) -> None:
    monkeypatch.setenv("MAX_INVALID_SHARE", "0.001")
    get_settings.cache_clear()
    for i in range(3):
        httpx.post(f"{crm.url}/api/customers", json={"name": f"J{i}", "email": f"junk{i}"}, timeout=5)
    result = run_sync(settings, instance, mode="full")
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["customers_invalid_share"] is False


@pytest.mark.parametrize(
    ("envelope", "field_variant"),
    [("items", "legacy_a"), ("data", "legacy_b"), ("results", "canonical"), ("bare", "legacy_a")],
)
def test_field_variants_and_envelopes_over_http(crm, settings, instance, envelope, field_variant) -> None:
    httpx.put(
        f"{crm.url}/_sandbox/variants", json={"envelope": envelope, "field_variant": field_variant}, timeout=5
    ).raise_for_status()
    result = run_sync(settings, instance, limit=50)
    assert result.success
    assert materialization(result, "customers")["inserted"] == 50
    with shared_engine(settings.database_url).connect() as conn:
        acme = conn.execute(select(customers_table).where(customers_table.c.crm_id == "1")).mappings().one()
    assert (acme["email_normalized"], acme["revenue"]) == ("contact@acme.com", 5200000.0)


def test_an_unknown_envelope_fails_the_run_and_keeps_the_cursor(crm, settings, instance) -> None:
    run_sync(settings, instance)
    crm_state_before = _state(settings)
    httpx.put(f"{crm.url}/_sandbox/variants", json={"envelope": "unknown"}, timeout=5).raise_for_status()
    result = run_sync(settings, instance)
    assert not result.success
    state = _state(settings)
    assert state.cursor_offset == crm_state_before.cursor_offset == 500
    assert "no known list key" in (state.last_error or "")
    assert state.last_success_at == crm_state_before.last_success_at
    with shared_engine(settings.database_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(customers_table)).scalar_one() == 500


def test_a_crm_outage_records_the_error_and_writes_nothing(crm, settings, instance) -> None:
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    result = run_sync(settings, instance)
    assert not result.success
    state = _state(settings)
    assert "CRM error 500 OperationalError" in (state.last_error or "")
    assert stored_crm_ids(settings) == set()
    assert len(crm.requests("/api/customers")) == settings.crm_retry_attempts


def test_full_sync_pages_through_everything_and_restarts_the_rotation(crm, settings, instance) -> None:
    run_sync(settings, instance)
    meta = materialization(run_sync(settings, instance, mode="full"), "customers")
    assert (meta["window_start"], meta["fetched"], meta["pages"], meta["next_cursor"]) == (0, 1200, 3, 0)
    assert _state(settings).cursor_offset == 0


def _state(settings: Settings):  # type: ignore[no-untyped-def]
    with shared_engine(settings.database_url).connect() as conn:
        return get_sync_state(conn)
