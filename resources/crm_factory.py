"""Build the CRM client the same way for the API and for Dagster runs."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from resources.breaker import make_breaker
from resources.crm_client import CRMClient, RetryPolicy
from resources.db import make_engine
from resources.settings import Settings

CRM_BREAKER_NAME = "enterprise-crm"


@lru_cache(maxsize=16)
def shared_engine(database_url: str) -> Engine:
    """One pooled engine per database URL and process."""
    return make_engine(database_url)


def build_crm_client(settings: Settings, *, base_url: str | None = None, engine: Engine | None = None) -> CRMClient:
    """A CRM client configured from settings, its breaker state kept in the app database (D7)."""
    engine = engine or shared_engine(settings.database_url)
    breaker = make_breaker(
        engine,
        name=CRM_BREAKER_NAME,
        fail_max=settings.breaker_fail_max,
        reset_timeout=settings.breaker_reset_timeout,
    )
    return CRMClient(
        base_url or settings.enterprise_crm_url,
        breaker=breaker,
        connect_timeout=settings.crm_connect_timeout,
        read_timeout=settings.crm_read_timeout,
        retry=RetryPolicy(
            attempts=settings.crm_retry_attempts,
            backoff=settings.crm_retry_backoff,
            retry_after_max=settings.crm_retry_after_max,
        ),
    )
