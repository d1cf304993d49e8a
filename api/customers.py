"""Customers: the local table, the sync trigger with its 5-minute cache."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, jsonify
from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from api.auth import check_service_key, require_service_key
from api.context import Integration, integration
from api.errors import APIError
from api.runs import wait_for_run
from api.schemas import CustomersReply, ErrorReply, SyncReply
from api.validation import documented, json_object_body, spec
from resources.customer_store import (
    CUSTOMERS_STREAM,
    get_sync_run,
    get_sync_state,
    list_customers,
    register_queued_run,
    run_in_flight,
)
from resources.db import utcnow
from resources.settings import CRM_MAX_PAGE_SIZE
from resources.telemetry import run_tags_for_current_trace, set_attributes

bp = Blueprint("customers", __name__, url_prefix="/api/integrations/crm")
CUSTOMER_SYNC_JOB = "customer_sync_job"


_BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False}


class CustomersQuery(BaseModel):
    """Query of GET /customers."""

    model_config = ConfigDict(extra="ignore")
    refresh: bool = Field(default=False, description="Run a sync first (true|false|1|0; respects the cache)")
    limit: int = Field(default=50, ge=1, le=CRM_MAX_PAGE_SIZE, description="Customers to return")

    @field_validator("refresh", mode="before")
    @classmethod
    def _strict_boolean(cls, value: Any) -> Any:
        if isinstance(value, str):
            lowered = value.lower()  # not stripped: as strict as limit
            if lowered not in _BOOLEAN_WORDS:
                raise ValueError("must be true, false, 1 or 0")
            return _BOOLEAN_WORDS[lowered]
        return value

    @field_validator("limit", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.fullmatch(r"[0-9]+", value):
            raise ValueError("must be a whole number from 1 to 500")
        return value


class SyncCustomersBody(BaseModel):
    """Body of POST /sync-customers."""

    model_config = ConfigDict(extra="forbid")
    force: StrictBool = Field(default=False, description="Bypass the 5-minute cache")
    limit: int | None = Field(
        default=None,
        ge=1,
        le=CRM_MAX_PAGE_SIZE,
        description="Records to pull (default: the cap); a JSON number that is whole (200 or 200.0), not text",
    )
    mode: Literal["window", "full"] = Field(
        default="window", description="window: the next slice after the cursor; full: every page up to the ceiling"
    )

    @field_validator("limit", mode="before")
    @classmethod
    def _json_whole_number(cls, value: Any) -> Any:
        # JSON does not tell 200 from 200.0 (and JSON Schema's integer admits both); text and booleans are no
        # numbers here, and 1.5 is no whole one.
        number = isinstance(value, int | float | None) and not isinstance(value, bool)
        if not number or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"must be a whole JSON number from 1 to {CRM_MAX_PAGE_SIZE}")
        return value


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _customer_json(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _iso(value) if isinstance(value, datetime) else value for key, value in row.items()}


def _state_json(ctx: Integration) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        state = get_sync_state(conn).as_dict()
    state["last_error"] = ctx.public(state["last_error"])
    return state


def _sync(ctx: Integration, *, force: bool, limit: int | None, mode: str = "window") -> dict[str, Any]:
    """Answer from the cache when fresh, join a sync already under way, or run one as a Dagster run."""
    settings = ctx.settings
    if not settings.enterprise_crm_url:
        return {
            "configured": False,
            "synced": False,
            "cached": False,
            "joined": False,
            "last_error": "ENTERPRISE_CRM_URL not configured",
            "crm_url": None,
        }
    span = trace.get_current_span()
    now = utcnow()
    with ctx.engine.connect() as conn:
        state = get_sync_state(conn)
        in_flight = run_in_flight(conn, stream=CUSTOMERS_STREAM, max_age=settings.dagster_run_timeout)
    age = (now - state.last_success_at).total_seconds() if state.last_success_at else None
    if not force:
        if age is not None and age < settings.sync_cache_ttl:
            set_attributes(span, **{"integration.sync.cached": True})
            return _sync_reply(ctx, run=None, cached=True, cache_age=age)
        failed_recently = state.last_error_at and (
            not state.last_success_at or state.last_error_at > state.last_success_at
        )
        if failed_recently and (now - state.last_error_at).total_seconds() < settings.sync_failure_backoff:
            # A CRM that just failed is not asked again by every reader; a forced sync still may.
            set_attributes(span, **{"integration.sync.cached": True})
            return _sync_reply(ctx, run=None, cached=True, cache_age=age)
    if in_flight:
        # One sync at a time reads the cursor: wait for the one under way instead of queueing another.
        run_id = in_flight
        set_attributes(span, **{"integration.sync.joined": True})
    else:
        run_config: dict[str, Any] = {"ops": {"crm_customers": {"config": {"mode": mode, "limit": limit}}}}
        # The run's spans become children of this request's span through its tags (D8).
        tags = {"crm/trigger": "api", "crm/forced": str(force).lower(), **run_tags_for_current_trace()}
        run_id = ctx.run_launcher.launch(CUSTOMER_SYNC_JOB, run_config, tags)
        register_queued_run(ctx.engine, run_id=run_id, stream=CUSTOMERS_STREAM, mode=mode)
    outcome = wait_for_run(ctx.run_launcher, run_id, timeout=settings.dagster_run_timeout)
    set_attributes(span, **{"dagster.run_id": outcome.run_id, "dagster.run_status": outcome.status})
    if not outcome.finished:
        raise APIError(
            504,
            "sync_timeout",
            f"customer sync run still {outcome.status} after {settings.dagster_run_timeout:.0f} s",
            {"run_id": outcome.run_id, "run_status": outcome.status},
        )
    with ctx.engine.connect() as conn:
        run = get_sync_run(conn, outcome.run_id) or {"run_id": outcome.run_id}
    run["run_status"] = outcome.status
    return _sync_reply(ctx, run=run, cached=False, cache_age=None, joined=bool(in_flight))


def _sync_reply(
    ctx: Integration, *, run: dict[str, Any] | None, cached: bool, cache_age: float | None, joined: bool = False
) -> dict[str, Any]:
    """The original shop's reply shape, plus run id, cache flag and the run's own counts."""
    with ctx.engine.connect() as conn:
        state = get_sync_state(conn)
    reply: dict[str, Any] = {
        "configured": True,
        "synced": bool(run and run.get("run_status") == "SUCCESS"),
        "cached": cached,
        "joined": joined,
        "customers_seen": (run or {}).get("fetched") or 0,
        "inserted": (run or {}).get("inserted") or 0,
        "updated": (run or {}).get("updated") or 0,
        "unchanged": (run or {}).get("unchanged") or 0,
        "invalid": (run or {}).get("invalid") or 0,
        "last_sync_epoch": int(state.last_success_at.timestamp()) if state.last_success_at else None,
        "last_count": state.last_valid,
        "last_error": ctx.public(state.last_error),
        "crm_url": ctx.settings.public_crm_url or None,
        "run_id": (run or {}).get("run_id"),
        "run_status": (run or {}).get("run_status"),
    }
    if cache_age is not None:
        reply["cache_age_seconds"] = round(cache_age, 1)
    if run and run.get("run_status") != "SUCCESS":
        reply["last_error"] = ctx.public(run.get("error")) or reply["last_error"]
    return reply


@bp.get("/customers")
@documented({200: CustomersReply, 400: ErrorReply, 503: ErrorReply, 504: ErrorReply}, service_key="optional")
@spec.validate(query=CustomersQuery, tags=["customers"])
def get_customers(query: CustomersQuery):  # type: ignore[no-untyped-def]
    """Local customers, most recently updated first, with the sync state; refresh=true syncs first."""
    ctx = integration()
    sync = None
    if query.refresh:
        # Starting runs is for trusted callers: the same key as sync-customers.
        check_service_key()
        sync = _sync(ctx, force=False, limit=None)
    with ctx.engine.connect() as conn:
        rows = list_customers(conn, query.limit)
    return jsonify(
        {
            "customers": [_customer_json(row) for row in rows],
            "count": len(rows),
            "limit": query.limit,
            "sync_state": _state_json(ctx),
            "refresh": sync,
            "crm_url": ctx.settings.public_crm_url or None,
        }
    )


@bp.post("/sync-customers")
@documented({200: SyncReply, 400: ErrorReply, 503: ErrorReply, 504: ErrorReply}, service_key="required")
@require_service_key
@json_object_body
@spec.validate(json=SyncCustomersBody, tags=["customers"])
def sync_customers(json: SyncCustomersBody):  # type: ignore[no-untyped-def]
    """Run the customer sync (or answer from the 5-minute cache) and report what it did."""
    return jsonify(_sync(integration(), force=json.force, limit=json.limit, mode=json.mode))
