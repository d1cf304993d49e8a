"""Sensors."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import customer_sync_job

CUSTOMERS_KEY = dg.AssetKey("customers")


@dg.sensor(
    job=customer_sync_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Run the first customer sync as soon as a new stack starts, not at the next 5-minute tick.",
)
def customer_bootstrap_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """Request one sync when the customers table has never been materialized and no sync ever ran."""
    if context.instance.get_latest_materialization_event(CUSTOMERS_KEY) is not None:
        return dg.SkipReason("customers already materialized")
    if context.instance.get_runs(dg.RunsFilter(job_name=customer_sync_job.name), limit=1):
        return dg.SkipReason("a customer sync already ran; the schedule takes it from here")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key="bootstrap")])
