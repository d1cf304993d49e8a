"""The code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

from typing import Any

import dagster as dg

from assets.customers import (
    crm_customers,
    customers,
    customers_invalid_share,
    customers_unique_crm_id,
    customers_unique_email,
)
from pipelines.jobs import customer_sync_job
from pipelines.schedules import customer_sync_schedule
from pipelines.sensors import customer_bootstrap_sensor
from resources.dagster_resources import CRMResource, DatabaseResource, TelemetryResource
from resources.runtime import freeze_startup_heap


def default_resources() -> dict[str, Any]:
    """Resources configured from the environment (resources/settings.py)."""
    database = DatabaseResource()
    return {"database": database, "crm": CRMResource(database=database), "telemetry": TelemetryResource()}


def build_defs(resources: dict[str, Any] | None = None) -> dg.Definitions:
    """The definitions, with the given resources (tests, benchmarks) or the environment's."""
    return dg.Definitions(
        assets=[crm_customers, customers],
        asset_checks=[customers_unique_email, customers_unique_crm_id, customers_invalid_share],
        jobs=[customer_sync_job],
        schedules=[customer_sync_schedule],
        sensors=[customer_bootstrap_sensor],
        # Steps of a sync share one process (in-process executor): windows of customer data stay in
        # memory instead of being pickled to disk between steps.
        resources={"io_manager": dg.mem_io_manager, **(resources or default_resources())},
    )


defs = build_defs()

# Loading the code location is this process's start-up: what is alive now stays for good (resources/runtime.py).
freeze_startup_heap()
