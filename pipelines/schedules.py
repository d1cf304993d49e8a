"""Schedules."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import customer_sync_job

# Running from the moment the stack starts: no one has to switch it on in the UI.
customer_sync_schedule = dg.ScheduleDefinition(
    name="customer_sync_schedule",
    job=customer_sync_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refresh the next window of CRM customers every 5 minutes (DESIGN D1).",
)
