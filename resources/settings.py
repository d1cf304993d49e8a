"""One typed settings object, read from the environment when asked for (never at import time)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.public_urls import is_private_host

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "var" / "data"

# The CRM rejects limit > 500 with a 422; every page and every sync is bounded by it.
CRM_MAX_PAGE_SIZE = 500


class Settings(BaseSettings):
    """Every knob of the integration; each field is documented in README.md under the same name."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    enterprise_crm_url: str | None = Field(
        default=None,
        description="Base URL for backend calls to the CRM (may be a private host); unset = not configured.",
    )
    crm_public_url: str | None = Field(
        default=None,
        description="CRM URL shown to callers; defaults to ENTERPRISE_CRM_URL when that is not private.",
    )
    internal_service_key: SecretStr | None = Field(default=None)
    database_url: str | None = Field(default=None)
    data_dir: Path = Field(default=DEFAULT_DATA_DIR)

    crm_connect_timeout: float = Field(default=3.0, gt=0)
    crm_read_timeout: float = Field(default=10.0, gt=0)
    crm_retry_attempts: int = Field(default=3, ge=1, le=10)
    crm_retry_backoff: float = Field(default=0.5, ge=0)
    crm_retry_after_max: float = Field(default=30.0, ge=0)
    crm_page_size: int = Field(default=CRM_MAX_PAGE_SIZE, ge=1, le=CRM_MAX_PAGE_SIZE)
    crm_sync_cap: int = Field(default=500, ge=1)
    crm_full_sync_ceiling: int = Field(default=100_000, ge=1)
    crm_fetch_concurrency: int = Field(default=2, ge=1, le=8)
    sync_cache_ttl: float = Field(default=300.0, ge=0)
    sync_failure_backoff: float = Field(default=30.0, ge=0)
    max_invalid_share: float = Field(default=0.05, ge=0, le=1)

    breaker_fail_max: int = Field(default=5, ge=1)
    breaker_reset_timeout: float = Field(default=60.0, gt=0)

    dagster_graphql_url: str = Field(default="http://127.0.0.1:3000")
    dagster_run_timeout: float = Field(default=120.0, gt=0)
    api_run_launcher: Literal["graphql", "in_process"] = Field(default="graphql")

    @field_validator("dagster_graphql_url")
    @classmethod
    def _required_http_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("enterprise_crm_url", "crm_public_url")
    @classmethod
    def _optional_http_url(cls, value: str | None) -> str | None:
        return _http_url(value) if value else None

    @field_validator("internal_service_key")
    @classmethod
    def _blank_key_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # The CRM trims the key; an all-blank key would otherwise mean "anyone with an empty header".
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'crm_integration.db'}"
        return self

    @property
    def public_crm_url(self) -> str:
        """The CRM URL safe to show a caller (D9)."""
        if self.crm_public_url:
            return self.crm_public_url
        if not self.enterprise_crm_url:
            return ""
        host = urlsplit(self.enterprise_crm_url).hostname or ""
        return "" if is_private_host(host) else self.enterprise_crm_url

    @property
    def crm_timeouts(self) -> tuple[float, float]:
        """(connect, read) timeouts in seconds."""
        return self.crm_connect_timeout, self.crm_read_timeout


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    return value.rstrip("/")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment on first use."""
    return Settings()
