"""API test fixtures: the app configured through the environment, runs executed in-process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
from flask.testing import FlaskClient
from werkzeug.exceptions import HTTPException

from api import create_app
from api.runs import InProcessRunLauncher
from api.validation import view_replies
from resources.settings import get_settings

SYNC = "/api/integrations/crm/sync-customers"
CUSTOMERS = "/api/integrations/crm/customers"
HEALTH = "/api/integrations/crm/health"


@pytest.fixture(autouse=True)
def replies_match_the_openapi_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reply an API test receives must fit the model the OpenAPI document names for its status.

    The reply models forbid unknown fields, so a field a view adds without documenting it fails here too.
    """
    original = FlaskClient.open

    def checked_open(self: FlaskClient, *args: Any, **kwargs: Any) -> Any:
        response = original(self, *args, **kwargs)
        request = response.request
        try:
            endpoint, _ = self.application.url_map.bind("").match(request.path, request.method)
        except HTTPException:
            return response  # 404 / 405: no documented view
        replies = view_replies(self.application.view_functions[endpoint])
        if replies is not None:
            assert response.status_code in replies, f"{request.method} {request.path}: undocumented status"
            replies[response.status_code].model_validate_json(response.get_data())
        return response

    monkeypatch.setattr(FlaskClient, "open", checked_open)


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
