"""Shared fixtures: the CRM sandbox over loopback, migrated SQLite files and a real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from resources.crm_client import CRMClient
from resources.crm_factory import build_crm_client, shared_engine
from resources.dagster_resources import CRMResource, DatabaseResource, TelemetryResource
from resources.migrations import upgrade
from resources.settings import Settings, get_settings
from resources.telemetry import shutdown_telemetry
from tests.support.otlp import OTLPReceiver
from tests.support.postgres import postgres_server

if TYPE_CHECKING:
    from sandbox import SandboxServer

SETTINGS_ENV = [name.upper() for name in Settings.model_fields]


@pytest.fixture(scope="session", autouse=True)
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """Every process the tests start exports its spans here (set before any telemetry is set up)."""
    receiver = OTLPReceiver().start()
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf"
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    yield receiver
    shutdown_telemetry()
    receiver.stop()


@pytest.fixture(autouse=True)
def _clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests configure Settings explicitly; nothing leaks in from the developer's shell."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    """One CRM sandbox for the session, 1,200 customers, on a free loopback port."""
    from sandbox import SandboxServer

    with SandboxServer(customers=1200, port=0) as server:
        yield server


@pytest.fixture
def crm(sandbox_server: SandboxServer) -> Iterator[SandboxServer]:
    """The sandbox, reseeded with no faults and an empty request log."""
    sandbox_server.reset()
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A migrated SQLite file in tmp_path."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_root() -> Iterator[str]:
    """A PostgreSQL server for the session (Debian's binaries, trust auth on 127.0.0.1)."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_root: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_root, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_root.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    shared_engine(url).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each app-database test runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")


def make_settings(**overrides: object) -> Settings:
    """Settings for a test: fast retries, nothing from the environment."""
    values: dict[str, object] = {
        "crm_retry_backoff": 0.0,
        "crm_retry_after_max": 2.0,
        "crm_read_timeout": 5.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(crm: SandboxServer, sqlite_url: str) -> Settings:
    """Settings pointing at the sandbox and a fresh SQLite database."""
    return make_settings(enterprise_crm_url=crm.url, database_url=sqlite_url)


@pytest.fixture
def crm_client(settings: Settings) -> Iterator[CRMClient]:
    """The real CRM client against the sandbox, breaker state in the test database."""
    client = build_crm_client(settings)
    yield client
    client.close()


def dagster_resources(settings: Settings) -> dict[str, object]:
    """Dagster resources for a test's settings."""
    database = DatabaseResource(database_url=settings.database_url)
    return {
        "database": database,
        "crm": CRMResource(database=database, base_url=settings.enterprise_crm_url, retry_backoff=0.0),
        "telemetry": TelemetryResource(),
    }
