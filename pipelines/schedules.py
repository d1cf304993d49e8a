"""Schedules."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import customer_sync_job

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


# Running from the moment the stack starts: no one has to switch it on in the UI.
@dg.schedule(
    name="customer_sync_schedule",
    job=customer_sync_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refresh the next window of CRM customers every 5 minutes (DESIGN D1).",
)
def customer_sync_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Request the next window unless a customer sync is still queued or running (no pile-up)."""
    active = context.instance.get_runs(dg.RunsFilter(job_name=customer_sync_job.name, statuses=IN_FLIGHT), limit=1)
    if active:
        return dg.SkipReason(f"customer sync {active[0].run_id} is still {active[0].status.value}")
    return dg.RunRequest()
