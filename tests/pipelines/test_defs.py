"""The code location loads, and every job, schedule and sensor resolves (broken wiring fails CI)."""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs


def test_definitions_resolve_every_job_schedule_and_sensor() -> None:
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs() if not job.name.startswith("__")} == {"customer_sync_job"}
    for job in repo.get_all_jobs():
        assert job.graph is not None
    assert {s.name for s in repo.schedule_defs} == {"customer_sync_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"customer_bootstrap_sensor"}
    assert set(defs.resolve_asset_graph().get_all_asset_keys()) == {
        dg.AssetKey("crm_customers"),
        dg.AssetKey("customers"),
    }


def test_schedule_runs_every_five_minutes_from_the_start() -> None:
    schedule = defs.resolve_schedule_def("customer_sync_schedule")
    assert schedule.cron_schedule == "*/5 * * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "customer_sync_job"


def test_schedule_skips_while_a_customer_sync_is_still_queued_or_running() -> None:
    schedule = defs.resolve_schedule_def("customer_sync_schedule")
    with dg.instance_for_test() as instance:
        (request,) = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
        assert request.tags == {"dagster/schedule_name": "customer_sync_schedule"}
        instance.add_run(dg.DagsterRun(job_name="customer_sync_job", run_id="r-1", status=dg.DagsterRunStatus.STARTED))
        result = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert result.run_requests == []
        assert result.skip_message == "customer sync r-1 is still STARTED"


def test_customer_sync_job_runs_in_process_and_carries_its_checks() -> None:
    job = defs.resolve_job_def("customer_sync_job")
    assert job.executor_def.name == "in_process"
    assert job.tags["crm/stream"] == "customers"
    check_names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert check_names == {"customers_unique_email", "customers_unique_crm_id", "customers_invalid_share"}


def test_bootstrap_sensor_requests_one_run_on_a_new_instance_only() -> None:
    sensor = defs.resolve_sensor_def("customer_bootstrap_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert [r.run_key for r in result.run_requests] == ["bootstrap"]
        instance.add_run(dg.DagsterRun(job_name="customer_sync_job", run_id="r-1"))
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert result.run_requests == []
        assert "already ran" in (result.skip_message or "")
