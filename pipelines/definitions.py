"""The code location: assembles assets, checks, jobs, schedules, sensors and resources."""

from __future__ import annotations

import dagster as dg

from assets.customers import crm_customers, customers, customers_invalid_share, customers_unique_email
from pipelines.jobs import customer_sync_job
from pipelines.schedules import customer_sync_schedule
from pipelines.sensors import customer_bootstrap_sensor
from resources.dagster_resources import CRMResource, DatabaseResource, TelemetryResource

_database = DatabaseResource()

defs = dg.Definitions(
    assets=[crm_customers, customers],
    asset_checks=[customers_unique_email, customers_invalid_share],
    jobs=[customer_sync_job],
    schedules=[customer_sync_schedule],
    sensors=[customer_bootstrap_sensor],
    resources={"database": _database, "crm": CRMResource(database=_database), "telemetry": TelemetryResource()},
)
