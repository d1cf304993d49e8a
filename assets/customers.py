"""Customer assets: the CRM's customers (a validated window) and the local `customers` table."""

# No `from __future__ import annotations` here: Dagster reads these annotations at definition time.

from datetime import timedelta
from typing import Literal

import dagster as dg

from assets.customer_sync import CustomerExtract, extract_customers, load_customers
from resources.customer_store import duplicate_crm_ids, duplicate_emails, get_sync_state
from resources.dagster_resources import CRMResource, DatabaseResource, TelemetryResource
from resources.telemetry import set_attributes

CUSTOMERS_GROUP = "customers"


class CustomerSyncConfig(dg.Config):
    """Run configuration of a customer sync."""

    mode: Literal["window", "full"] = "window"
    limit: int | None = None


@dg.asset(group_name=CUSTOMERS_GROUP, kinds={"python", "pandas"}, tags={"crm/stream": "customers"})
def crm_customers(
    context: dg.AssetExecutionContext,
    config: CustomerSyncConfig,
    crm: CRMResource,
    database: DatabaseResource,
    telemetry: TelemetryResource,
) -> dg.Output[CustomerExtract]:
    """The next window of CRM customers (at most the per-sync cap), normalized and validated."""
    settings = crm.settings
    with telemetry.step("integration.crm.sync_customers.fetch", mode=config.mode) as span, crm.client() as client:
        extract = extract_customers(
            client,
            database.engine,
            mode=config.mode,
            cap=min(config.limit or settings.crm_sync_cap, settings.crm_sync_cap),
            page_size=settings.crm_page_size,
            full_ceiling=settings.crm_full_sync_ceiling,
            concurrency=settings.crm_fetch_concurrency,
            run_id=context.run.run_id,
        )
        metadata = extract.metadata
        set_attributes(span, **{f"integration.customers.{k}": v for k, v in metadata.items()})
        telemetry.annotate(
            **{
                "integration.customers.fetched": extract.fetched,
                "integration.customers.invalid": len(extract.rejected),
                "integration.circuit_breaker.state": client.breaker.snapshot()["state"],
            }
        )
    return dg.Output(extract, metadata=metadata)


@dg.asset(
    group_name=CUSTOMERS_GROUP,
    kinds={"sql"},
    tags={"crm/stream": "customers"},
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=30), warn_window=timedelta(minutes=15)
    ),
)
def customers(
    context: dg.AssetExecutionContext,
    crm_customers: CustomerExtract,
    database: DatabaseResource,
    telemetry: TelemetryResource,
) -> dg.MaterializeResult:
    """The local customer table, upserted by normalized email."""
    with telemetry.step("integration.crm.sync_customers.load", rows=len(crm_customers.rows)):
        result = load_customers(database.engine, crm_customers, run_id=context.run.run_id)
    telemetry.annotate(
        **{
            "integration.customers.inserted": result.counts.inserted,
            "integration.customers.updated": result.counts.updated,
            "integration.customers.unchanged": result.counts.unchanged,
        }
    )
    return dg.MaterializeResult(
        metadata={
            **crm_customers.metadata,
            "inserted": result.counts.inserted,
            "updated": result.counts.updated,
            "unchanged": result.counts.unchanged,
            "superseded": result.counts.superseded,
        }
    )


@dg.asset_check(asset=customers, description="No normalized email is stored twice (D2).")
def customers_unique_email(database: DatabaseResource, telemetry: TelemetryResource) -> dg.AssetCheckResult:
    """Fail when the identity invariant is broken."""
    with telemetry.step("integration.crm.sync_customers.check_unique_email"), database.engine.connect() as conn:
        duplicates = duplicate_emails(conn)
    return dg.AssetCheckResult(passed=not duplicates, metadata={"duplicates_sample": duplicates[:5]})


@dg.asset_check(asset=customers, description="No CRM id is stored on two rows (email changes are followed).")
def customers_unique_crm_id(database: DatabaseResource, telemetry: TelemetryResource) -> dg.AssetCheckResult:
    """Fail when a CRM customer appears twice locally."""
    with telemetry.step("integration.crm.sync_customers.check_unique_crm_id"), database.engine.connect() as conn:
        duplicates = duplicate_crm_ids(conn)
    return dg.AssetCheckResult(passed=not duplicates, metadata={"duplicates_sample": duplicates[:5]})


@dg.asset_check(asset=customers, description="The last sync's invalid share stays under MAX_INVALID_SHARE.")
def customers_invalid_share(database: DatabaseResource, telemetry: TelemetryResource) -> dg.AssetCheckResult:
    """Warn the operators when the CRM starts sending records we cannot accept."""
    threshold = database.settings.max_invalid_share
    with telemetry.step("integration.crm.sync_customers.check_invalid_share"), database.engine.connect() as conn:
        state = get_sync_state(conn)
    fetched = state.last_fetched or 0
    share = (state.last_invalid or 0) / fetched if fetched else 0.0
    return dg.AssetCheckResult(
        passed=share <= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "invalid": state.last_invalid or 0,
            "fetched": fetched,
            "share": share,
            "threshold": threshold,
        },
    )
