"""The customer pull as plain functions (no Dagster): extract a window from the CRM, load it locally."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine

from domain.customers import CustomerValidator, Rejected
from resources.crm_client import CRMClient
from resources.crm_errors import CRMError
from resources.customer_store import (
    CUSTOMERS_STREAM,
    UpsertCounts,
    finish_sync_run,
    get_sync_state,
    record_rejects,
    record_sync_failure,
    record_sync_success,
    resolve_rejects,
    start_sync_run,
    upsert_customers,
)
from resources.settings import CRM_MAX_PAGE_SIZE

SyncMode = Literal["window", "full"]


@dataclass
class CustomerExtract:
    """A validated window of CRM customers, ready to load."""

    rows: list[dict[str, Any]]
    rejected: list[Rejected]
    mode: SyncMode
    cursor_before: int
    start_offset: int
    next_offset: int
    wrapped: bool
    fetched: int
    pages: int
    crm_latency_ms: float
    run_id: str | None = None

    @property
    def metadata(self) -> dict[str, Any]:
        """Counts and timings for the materialization."""
        return {
            "mode": self.mode,
            "fetched": self.fetched,
            "valid": len(self.rows),
            "invalid": len(self.rejected),
            "window_start": self.start_offset,
            "next_cursor": self.next_offset,
            "wrapped": self.wrapped,
            "pages": self.pages,
            "crm_latency_ms": round(self.crm_latency_ms, 1),
        }


@dataclass
class LoadResult:
    """What loading an extract did."""

    counts: UpsertCounts
    invalid: int


def extract_customers(
    client: CRMClient,
    engine: Engine,
    *,
    mode: SyncMode = "window",
    cap: int = CRM_MAX_PAGE_SIZE,
    page_size: int = CRM_MAX_PAGE_SIZE,
    full_ceiling: int = 100_000,
    concurrency: int = 1,
    run_id: str | None = None,
) -> CustomerExtract:
    """Fetch the next window after the stored cursor (or everything up to the ceiling) and validate it."""
    if run_id:
        start_sync_run(engine, run_id=run_id, stream=CUSTOMERS_STREAM, mode=mode)
    with engine.connect() as conn:
        cursor = get_sync_state(conn).cursor_offset
    offset, limit = (0, full_ceiling) if mode == "full" else (cursor, cap)
    validator = CustomerValidator()
    try:
        # Each page is normalized while the next one is on its way.
        window = client.fetch_customer_window(
            offset=offset,
            cap=limit,
            page_size=min(page_size, limit),
            concurrency=concurrency,
            on_page=validator.add,
        )
        batch = validator.finish()
    except CRMError as exc:
        fail_sync(engine, run_id=run_id, error=str(exc))
        raise
    except Exception as exc:
        fail_sync(engine, run_id=run_id, error=f"reading the CRM window failed: {type(exc).__name__}: {exc}")
        raise
    return CustomerExtract(
        rows=batch.rows,
        rejected=batch.rejected,
        mode=mode,
        cursor_before=cursor,
        start_offset=window.start_offset,
        # A full pass has refreshed everyone: the rotation starts over.
        next_offset=0 if mode == "full" else window.next_offset,
        wrapped=window.wrapped,
        fetched=len(window.records),
        pages=window.pages,
        crm_latency_ms=window.latency_ms,
        run_id=run_id,
    )


def load_customers(engine: Engine, extract: CustomerExtract, *, run_id: str | None = None) -> LoadResult:
    """Upsert the valid rows, keep the invalid ones, move the cursor: all in one transaction."""
    run_id = run_id or extract.run_id
    rows = extract.rows
    try:
        with engine.begin() as conn:
            counts = upsert_customers(conn, rows)
            record_rejects(conn, extract.rejected, run_id=run_id)
            resolve_rejects(conn, [row["crm_id"] for row in rows])
            record_sync_success(
                conn,
                stream=CUSTOMERS_STREAM,
                run_id=run_id,
                cursor_offset=extract.next_offset,
                expected_cursor=extract.cursor_before,
                fetched=extract.fetched,
                valid=len(rows),
                invalid=len(extract.rejected),
                counts=counts,
            )
            if run_id:
                finish_sync_run(
                    conn,
                    run_id=run_id,
                    status="succeeded",
                    window_start=extract.start_offset,
                    next_cursor=extract.next_offset,
                    wrapped=extract.wrapped,
                    fetched=extract.fetched,
                    valid=len(rows),
                    invalid=len(extract.rejected),
                    inserted=counts.inserted,
                    updated=counts.updated,
                    unchanged=counts.unchanged,
                    superseded=counts.superseded,
                    crm_latency_ms=extract.crm_latency_ms,
                )
    except Exception as exc:
        fail_sync(engine, run_id=run_id, error=f"writing customers failed: {type(exc).__name__}: {exc}")
        raise
    return LoadResult(counts=counts, invalid=len(extract.rejected))


def fail_sync(engine: Engine, *, run_id: str | None, error: str) -> None:
    """Record a failed sync in the stream state and the run's row."""
    record_sync_failure(engine, stream=CUSTOMERS_STREAM, run_id=run_id, error=error)
    if run_id:
        with engine.begin() as conn:
            finish_sync_run(conn, run_id=run_id, status="failed", error=error[:4000])
