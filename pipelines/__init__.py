"""Dagster wiring only: the Definitions, jobs, schedules, sensors and asset checks."""
