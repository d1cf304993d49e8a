"""The API's reply shapes, for the OpenAPI document.

They document; they do not run on every request (a mismatch would turn a good answer into a 500). The API
tests validate every reply they receive against these models, which forbid unknown fields, so the document
stays true to what the views return.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from resources.customer_store import SyncState as StoredSyncState
from resources.db import customers as customers_table


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Reply):
    """What went wrong: the error's code, a message, and for bad input the field and the reason."""

    code: str = Field(description="invalid_parameter, invalid_body, unauthorized, sync_timeout, …")
    message: str = Field(description="Human-readable; names the field for bad input")
    details: dict[str, Any] | None = Field(
        description="For bad input: field, reason and (for a bad parameter value) value; for a 504: run_id"
    )


class ErrorReply(_Reply):
    """Every error the API answers."""

    error: ErrorDetail


def _column_type(column: Any) -> Any:
    # UTCDateTime is a TypeDecorator: its Python type is the one of the DateTime it wraps.
    kind = getattr(column.type, "impl", column.type).python_type
    return kind | None if column.nullable else kind


_CUSTOMER_DESCRIPTIONS = {
    "id": "Local id",
    "crm_id": "The CRM's id, as exact text",
    "email": "As the CRM sent it",
    "email_normalized": "Whitespace and zero-width marks removed, casefolded: the identity",
    "crm_created_at": "UTC",
    "crm_updated_at": "UTC",
    "created_at": "When this row was first written (UTC)",
    "updated_at": "When a tracked field last changed (UTC)",
    "last_synced_at": "When a sync last saw this customer (UTC)",
}
# One row of the local customers table, field for field as resources.db declares it.
Customer = create_model(
    "Customer",
    __base__=_Reply,
    __doc__="One row of the local customers table.",
    **{
        column.name: (_column_type(column), Field(description=_CUSTOMER_DESCRIPTIONS.get(column.name)))
        for column in customers_table.columns
    },
)


# The stored sync state's fields, as resources.customer_store.SyncState declares them (one source of truth).
_STATE_DESCRIPTIONS = {
    "cursor_offset": "Where the next window starts in the CRM's list (by id)",
    "last_error": "Carries only the public CRM URL",
}
SyncState = create_model(
    "SyncState",
    __base__=_Reply,
    __doc__="Progress and outcome of the customer stream's syncs.",
    **{
        name: (kind, Field(description=_STATE_DESCRIPTIONS.get(name)))
        for name, kind in get_type_hints(StoredSyncState).items()
    },
)


class SyncReply(_Reply):
    """The original shop's sync reply, plus the run and cache fields."""

    configured: bool = Field(description="False when ENTERPRISE_CRM_URL is not set")
    synced: bool = Field(description="Whether this request's sync ran and succeeded")
    cached: bool = Field(description="Answered from the cache (or the failure backoff) without calling the CRM")
    joined: bool = Field(description="Waited for a sync already under way instead of starting one")
    customers_seen: int | None = Field(default=None, description="Records this run fetched")
    inserted: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    invalid: int | None = None
    last_sync_epoch: int | None = Field(default=None, description="Last successful sync, Unix seconds")
    last_count: int | None = Field(default=None, description="Valid records of the last successful sync")
    last_error: str | None
    crm_url: str | None = Field(description="The public CRM URL")
    run_id: str | None = None
    run_status: str | None = Field(default=None, description="The Dagster run's status")
    cache_age_seconds: float | None = Field(default=None, description="Present on cached answers")


class CustomersReply(_Reply):
    """Local customers with the sync state."""

    customers: list[Customer]
    count: int
    limit: int
    sync_state: SyncState
    refresh: SyncReply | None = Field(description="The sync refresh=true ran or answered from the cache")
    crm_url: str | None = Field(description="The public CRM URL")


class CircuitBreaker(_Reply):
    """The shared circuit breaker's state."""

    state: Literal["closed", "open", "half-open"]
    fail_counter: int
    opened_at: datetime | None


class HealthReply(_Reply):
    """The CRM's health as callers may see it."""

    status: Literal["healthy", "unhealthy", "unreachable", "not_configured"]
    detail: str | None = Field(description="Why it is not healthy; carries only the public CRM URL")
    crm_url: str | None = Field(description="The public CRM URL")
    service: str | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    checked_at: datetime | None = None
    circuit_breaker: CircuitBreaker | None = None
