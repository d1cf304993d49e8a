"""Per-app objects (settings, engine, CRM client, run launcher), built once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from sqlalchemy import Engine

from api.runs import GraphQLRunLauncher, InProcessRunLauncher, RunLauncher
from domain.public_urls import scrub
from resources.crm_client import CRMClient
from resources.crm_factory import build_crm_client, shared_engine
from resources.settings import Settings

EXTENSION = "crm_integration"


@dataclass
class Integration:
    """What the API's views share; the CRM client is created on first use."""

    settings: Settings
    run_launcher: RunLauncher
    _crm: CRMClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def engine(self) -> Engine:
        """The app database."""
        return shared_engine(self.settings.database_url)

    @property
    def crm(self) -> CRMClient:
        """The process's CRM client (connection pool, shared breaker)."""
        with self._lock:
            if self._crm is None:
                self._crm = build_crm_client(self.settings, engine=self.engine)
            return self._crm

    def public(self, text: str | None) -> str | None:
        """Text safe to show a caller: no private CRM host (D9)."""
        backend = self.settings.enterprise_crm_url or ""
        return scrub(text, backend, self.settings.public_crm_url)


def make_run_launcher(settings: Settings, override: Any = None) -> RunLauncher:
    """GraphQL against the Dagster webserver unless API_RUN_LAUNCHER=in_process (or a test passes one)."""
    if override is not None:
        return override
    if settings.api_run_launcher == "in_process":
        return InProcessRunLauncher()
    return GraphQLRunLauncher(settings.dagster_graphql_url)


def integration() -> Integration:
    """The Integration of the current app."""
    return current_app.extensions[EXTENSION]
