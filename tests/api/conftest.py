"""API test fixtures: the app configured through the environment, runs executed in-process."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from flask.testing import FlaskClient

from api import create_app
from api.runs import InProcessRunLauncher
from resources.settings import get_settings

SYNC = "/api/integrations/crm/sync-customers"
CUSTOMERS = "/api/integrations/crm/customers"
HEALTH = "/api/integrations/crm/health"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, crm, sqlite_url: str) -> pytest.MonkeyPatch:  # type: ignore[no-untyped-def]
    """The API and its runs configured through the environment, as in production."""
    for name, value in {
        "ENTERPRISE_CRM_URL": crm.url,
        "DATABASE_URL": sqlite_url,
        "CRM_RETRY_BACKOFF": "0",
        "CRM_READ_TIMEOUT": "5",
        "API_RUN_LAUNCHER": "in_process",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return monkeypatch


@pytest.fixture
def client(env, instance) -> FlaskClient:  # type: ignore[no-untyped-def]
    app = create_app({"TESTING": True, "run_launcher": InProcessRunLauncher(instance)})
    return app.test_client()
