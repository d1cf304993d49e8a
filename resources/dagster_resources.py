"""Dagster resources over the app database and the CRM client; defaults come from Settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from sqlalchemy import Engine

from resources.crm_client import CRMClient
from resources.crm_factory import build_crm_client, shared_engine
from resources.settings import Settings, get_settings


class DatabaseResource(dg.ConfigurableResource):
    """The application database (customers, sync state, rejects, breaker state)."""

    database_url: str | None = None

    @property
    def settings(self) -> Settings:
        """Process settings, with this resource's URL when one is given."""
        base = get_settings()
        return base.model_copy(update={"database_url": self.database_url}) if self.database_url else base

    @property
    def engine(self) -> Engine:
        """The process-wide engine for this database."""
        return shared_engine(self.settings.database_url)


class CRMResource(dg.ConfigurableResource):
    """The Enterprise CRM Portal, through the shared client (timeouts, retries, circuit breaker)."""

    database: DatabaseResource
    base_url: str | None = None
    sync_cap: int | None = None
    page_size: int | None = None
    full_sync_ceiling: int | None = None
    retry_backoff: float | None = None

    @property
    def settings(self) -> Settings:
        """Process settings with this resource's overrides applied."""
        overrides = {
            "enterprise_crm_url": self.base_url,
            "crm_sync_cap": self.sync_cap,
            "crm_page_size": self.page_size,
            "crm_full_sync_ceiling": self.full_sync_ceiling,
            "crm_retry_backoff": self.retry_backoff,
        }
        return self.database.settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    @contextmanager
    def client(self) -> Iterator[CRMClient]:
        """A CRM client for the duration of a step; its connections are closed afterwards."""
        client = build_crm_client(self.settings, engine=self.database.engine)
        try:
            yield client
        finally:
            client.close()
