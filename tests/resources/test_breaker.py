"""The shared circuit breaker (D7): opens after 5 outages, one probe in half-open, across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update

from resources.breaker import ProbeInProgress
from resources.crm_errors import CRMCircuitOpen, CRMRateLimited, CRMServerError, CRMValidationError
from resources.crm_factory import build_crm_client, shared_engine
from resources.db import circuit_breakers, utcnow
from tests.conftest import make_settings
from tests.support.net import wait_for


@pytest.fixture
def settings(crm, sqlite_url):  # type: ignore[no-untyped-def]
    return make_settings(enterprise_crm_url=crm.url, database_url=sqlite_url, crm_retry_attempts=1)


def _age_opening(database_url: str, seconds: float) -> None:
    """Move the breaker's opening time back instead of sleeping through the recovery timeout."""
    with shared_engine(database_url).begin() as conn:
        conn.execute(update(circuit_breakers).values(opened_at=utcnow() - timedelta(seconds=seconds)))


def _trip(settings, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    with build_crm_client(settings) as client:
        for _ in range(5):
            with pytest.raises(CRMServerError):
                client.list_customers(limit=1)
    crm.clear_faults()


def test_opens_after_five_consecutive_failures_and_stops_calling(settings, crm) -> None:  # type: ignore[no-untyped-def]
    _trip(settings, crm)
    assert len(crm.requests("/api/customers")) == 5
    with build_crm_client(settings) as other_client:
        with pytest.raises(CRMCircuitOpen):
            other_client.list_customers(limit=1)
        assert other_client.breaker.snapshot()["state"] == "open"
    assert len(crm.requests("/api/customers")) == 5


def test_client_errors_and_429_do_not_count(settings, crm) -> None:  # type: ignore[no-untyped-def]
    with build_crm_client(settings) as client:
        for _ in range(6):
            with pytest.raises(CRMValidationError):
                client.list_customers(limit=501)
        crm.set_faults([{"mode": "http_429", "retry_after": 0}])
        for _ in range(6):
            with pytest.raises(CRMRateLimited):
                client.list_customers(limit=1)
        assert client.breaker.snapshot() == {"state": "closed", "fail_counter": 0, "opened_at": None}


def test_a_success_resets_the_failure_count(settings, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_500", "times": 4}])
    with build_crm_client(settings) as client:
        for _ in range(4):
            with pytest.raises(CRMServerError):
                client.list_customers(limit=1)
        assert client.breaker.snapshot()["fail_counter"] == 4
        client.list_customers(limit=1)
        assert client.breaker.snapshot()["fail_counter"] == 0


PROBE = textwrap.dedent(
    """
    from resources.crm_factory import build_crm_client
    from tests.conftest import make_settings
    import os, sys
    settings = make_settings(enterprise_crm_url=os.environ["T_CRM"], database_url=os.environ["T_DB"],
                             crm_retry_attempts=1, crm_read_timeout=30)
    with build_crm_client(settings) as client:
        try:
            client.list_customers(limit=1)
        except Exception as exc:
            print("probe failed:", type(exc).__name__)
        print("state:", client.breaker.snapshot()["state"])
    """
)


def _start_probe(settings) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    env = {**os.environ, "T_CRM": settings.enterprise_crm_url, "T_DB": settings.database_url}
    return subprocess.Popen(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=os.getcwd(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_half_open_lets_one_process_probe_and_closes_on_success(settings, crm) -> None:  # type: ignore[no-untyped-def]
    _trip(settings, crm)
    _age_opening(settings.database_url, 61)
    crm.clear_requests()
    crm.set_faults([{"mode": "hang", "path": "/api/customers", "hang_seconds": 30, "times": 1}])
    probe = _start_probe(settings)
    try:
        wait_for(lambda: crm.requests("/api/customers"), timeout=30, what="the probe to reach the CRM")
        with build_crm_client(settings) as client:
            assert client.breaker.snapshot()["state"] == "half-open"
            with pytest.raises(CRMCircuitOpen, match="another caller is probing"):
                client.list_customers(limit=1)
            assert len(crm.requests("/api/customers")) == 1
            crm.clear_faults()
            out, err = probe.communicate(timeout=60)
            assert probe.returncode == 0, err
            assert out.strip().splitlines() == ["state: closed"]
            assert len(client.list_customers(limit=2)) == 2
            assert client.breaker.snapshot()["state"] == "closed"
    finally:
        probe.kill()
        probe.wait(timeout=10)


def test_a_failed_probe_opens_the_breaker_again(settings, crm) -> None:  # type: ignore[no-untyped-def]
    _trip(settings, crm)
    _age_opening(settings.database_url, 61)
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    probe = _start_probe(settings)
    out, err = probe.communicate(timeout=60)
    assert probe.returncode == 0, err
    assert out.strip().splitlines() == ["probe failed: CRMServerError", "state: open"]
    with build_crm_client(settings) as client:
        snapshot = client.breaker.snapshot()
        assert snapshot["state"] == "open"
        with pytest.raises(CRMCircuitOpen):
            client.list_customers(limit=1)


def test_a_probe_whose_owner_vanished_is_taken_over(settings, crm) -> None:  # type: ignore[no-untyped-def]
    build_crm_client(settings).close()
    with shared_engine(settings.database_url).begin() as conn:
        conn.execute(
            update(circuit_breakers).values(
                state="half-open",
                probe_owner="gone:1:dead",
                probe_started_at=utcnow() - timedelta(seconds=120),
                opened_at=utcnow() - timedelta(seconds=200),
            )
        )
    with build_crm_client(settings) as client:
        assert len(client.list_customers(limit=1)) == 1
        assert client.breaker.snapshot()["state"] == "closed"


def test_one_probe_even_among_threads_of_one_process(settings, crm) -> None:  # type: ignore[no-untyped-def]
    _trip(settings, crm)
    _age_opening(settings.database_url, 61)
    crm.clear_requests()
    crm.set_faults([{"mode": "hang", "path": "/api/customers", "hang_seconds": 30, "times": 1}])
    with build_crm_client(settings) as client, ThreadPoolExecutor(max_workers=1) as pool:
        probe = pool.submit(client.list_customers, limit=1)
        wait_for(lambda: crm.requests("/api/customers"), timeout=30, what="the probe to reach the CRM")
        with pytest.raises(CRMCircuitOpen, match="another caller is probing"):
            client.list_customers(limit=1)
        assert len(crm.requests("/api/customers")) == 1
        crm.clear_faults()
        assert len(probe.result(timeout=60)) == 1
        assert client.breaker.snapshot()["state"] == "closed"


def test_a_process_that_last_saw_open_keeps_the_shared_failure_count(settings, crm) -> None:  # type: ignore[no-untyped-def]
    _trip(settings, crm)
    with build_crm_client(settings) as lagging:
        with pytest.raises(CRMCircuitOpen):
            lagging.list_customers(limit=1)
        # Meanwhile others closed the breaker and counted four new failures.
        with shared_engine(settings.database_url).begin() as conn:
            conn.execute(update(circuit_breakers).values(state="closed", fail_counter=4, opened_at=None))
        crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
        with pytest.raises(CRMServerError):
            lagging.list_customers(limit=1)
        assert lagging.breaker.snapshot()["state"] == "open"


def test_a_reader_with_a_stale_view_cannot_probe_a_freshly_reopened_breaker(settings, crm) -> None:  # type: ignore[no-untyped-def]
    _trip(settings, crm)
    with build_crm_client(settings) as client:
        storage = client.breaker.storage
        with storage.guarded_call(), pytest.raises(ProbeInProgress):
            storage.state = "half-open"
        assert storage.row().state == "open"


def test_health_probes_neither_feed_nor_obey_the_breaker(settings, crm) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_500", "path": "/health"}])
    with build_crm_client(settings.model_copy(update={"crm_retry_attempts": 3})) as client:
        for _ in range(6):
            assert client.health()["status"] == "unhealthy"
        assert len(crm.requests("/health")) == 6, "one attempt per probe"
        assert client.breaker.snapshot()["fail_counter"] == 0
        crm.clear_faults()
        _trip(settings, crm)
        report = client.health()
    assert (report["status"], report["circuit_breaker"]["state"]) == ("healthy", "open")
