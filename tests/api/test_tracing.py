"""One trace from the caller through the Dagster run to the CRM, exported over OTLP to a real receiver."""

from __future__ import annotations

import json
import logging

import dagster as dg
import pytest
from opentelemetry import trace

from pipelines.definitions import build_defs
from resources.telemetry import (
    TRACEPARENT_TAG,
    JsonLogFormatter,
    context_from_traceparent,
    flush_telemetry,
    link_from_traceparent,
    safe_attributes,
    setup_telemetry,
    tracer,
)
from tests.api.conftest import HEALTH, SYNC
from tests.conftest import dagster_resources
from tests.support.otlp import OTLPReceiver, ReceivedSpan

INBOUND_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INBOUND_SPAN = "00f067aa0ba902b7"
HEALTH_TRACE = "0af7651916cd43dd8448eb211c80319c"


def _ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[str]:
    by_id = {s.span_id: s for s in spans}
    names = []
    while span.parent_span_id and span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        names.append(span.name)
    return names


def _crm_trace_ids(crm, path: str = "/api/customers") -> set[str]:  # type: ignore[no-untyped-def]
    return {r["headers"]["traceparent"].split("-")[1] for r in crm.requests(path) if "traceparent" in r["headers"]}


def test_forced_sync_over_the_api_is_one_trace_down_to_the_crm(client, crm, otlp_receiver: OTLPReceiver) -> None:  # type: ignore[no-untyped-def]
    body = client.post(SYNC, json={"force": True, "limit": 20}).get_json()
    assert body["synced"] is True
    flush_telemetry()
    server = otlp_receiver.wait_for_span(
        lambda s: s.kind == "SERVER" and s.attributes.get("dagster.run_id") == body["run_id"], what="the server span"
    )
    run_span = otlp_receiver.wait_for_span(
        lambda s: s.name == "integration.crm.sync_customers" and s.attributes.get("dagster.run_id") == body["run_id"],
        what="the run span",
    )
    assert server.name == "POST /api/integrations/crm/sync-customers"
    assert run_span.trace_id == server.trace_id
    assert run_span.parent_span_id == server.span_id
    assert run_span.attributes["dagster.trigger"] == "api"
    assert run_span.attributes["integration.customers.fetched"] == 20
    assert run_span.attributes["integration.customers.inserted"] == 20
    assert run_span.attributes["integration.circuit_breaker.state"] == "closed"
    assert run_span.attributes["peer.service"] == "enterprise-crm"
    spans = otlp_receiver.spans(server.trace_id)
    client_spans = [
        s for s in spans if s.kind == "CLIENT" and "/api/customers" in str(s.attributes.get("http.url", ""))
    ]
    assert client_spans, [s.name for s in spans]
    assert _ancestors(client_spans[0], spans)[:3] == [
        "integration.crm.sync_customers.fetch",
        "integration.crm.sync_customers",
        "POST /api/integrations/crm/sync-customers",
    ]
    assert {s.name for s in spans} >= {"integration.crm.sync_customers.load"}
    assert any("db.system" in s.attributes or "db.system.name" in s.attributes for s in spans)
    assert _crm_trace_ids(crm) == {server.trace_id}
    for span in spans:
        for value in span.attributes.values():
            assert "@" not in str(value), (span.name, value)


def test_the_run_carries_the_callers_traceparent_in_its_tags(client, instance) -> None:  # type: ignore[no-untyped-def]
    traceparent = f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01"
    body = client.post(SYNC, json={"force": True, "limit": 5}, headers={"traceparent": traceparent}).get_json()
    tag = instance.get_run_by_id(body["run_id"]).tags[TRACEPARENT_TAG]
    assert tag.split("-")[1] == INBOUND_TRACE
    assert tag.split("-")[2] != INBOUND_SPAN, "the run's parent is our server span, itself a child of the caller's"


def test_a_scheduled_sync_has_its_own_complete_trace(crm, settings, otlp_receiver: OTLPReceiver) -> None:  # type: ignore[no-untyped-def]
    defs = build_defs(dagster_resources(settings))
    with dg.instance_for_test() as instance:
        schedule = defs.resolve_schedule_def("customer_sync_schedule")
        (request,) = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
        result = defs.resolve_job_def("customer_sync_job").execute_in_process(
            instance=instance, tags={**request.tags, "dagster/schedule_name": schedule.name}
        )
    assert result.success
    flush_telemetry()
    run_span = otlp_receiver.wait_for_span(
        lambda s: s.attributes.get("dagster.run_id") == result.run_id and s.name == "integration.crm.sync_customers",
        what="the scheduled run's span",
    )
    assert run_span.parent_span_id is None
    assert run_span.attributes["dagster.trigger"] == "schedule"
    spans = otlp_receiver.spans(run_span.trace_id)
    assert {"integration.crm.sync_customers.fetch", "integration.crm.sync_customers.load"} <= {s.name for s in spans}
    assert any(s.kind == "CLIENT" for s in spans)
    assert _crm_trace_ids(crm) == {run_span.trace_id}


def test_inbound_traceparent_on_health_continues_into_the_crm_call(client, crm, otlp_receiver) -> None:  # type: ignore[no-untyped-def]
    crm.clear_requests()
    response = client.get(HEALTH, headers={"traceparent": f"00-{HEALTH_TRACE}-{INBOUND_SPAN}-01"})
    assert response.get_json()["status"] == "healthy"
    assert _crm_trace_ids(crm, "/health") == {HEALTH_TRACE}
    flush_telemetry()
    check = otlp_receiver.wait_for_span(
        lambda s: s.trace_id == HEALTH_TRACE and s.name == "integration.crm.health_check", what="health_check span"
    )
    assert check.attributes["integration.crm.health"] == "healthy"
    server = otlp_receiver.wait_for_span(
        lambda s: s.trace_id == HEALTH_TRACE and s.kind == "SERVER", what="the server span"
    )
    assert server.parent_span_id == INBOUND_SPAN
    assert check.parent_span_id == server.span_id


def test_json_logs_carry_the_current_trace_and_span() -> None:
    record = logging.LogRecord("api.customers", logging.INFO, __file__, 1, "synced %d", (3,), None)
    record.run_id = "r-1"
    setup_telemetry("api")
    with tracer().start_as_current_span("unit") as span:
        line = JsonLogFormatter().format(record)
        context = span.get_span_context()
    entry = json.loads(line)
    assert entry["message"] == "synced 3"
    assert entry["trace_id"] == format(context.trace_id, "032x")
    assert entry["span_id"] == format(context.span_id, "016x")
    assert entry["run_id"] == "r-1"
    assert entry["level"] == "INFO"


def test_stored_traceparents_become_parents_or_links() -> None:
    traceparent = f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01"
    parent = trace.get_current_span(context_from_traceparent(traceparent)).get_span_context()
    assert format(parent.trace_id, "032x") == INBOUND_TRACE
    link = link_from_traceparent(traceparent, **{"integration.inbox_id": 7})
    assert link is not None and format(link.context.span_id, "016x") == INBOUND_SPAN
    assert link.attributes["integration.inbox_id"] == 7
    assert context_from_traceparent("00-garbage") is None
    assert link_from_traceparent(None) is None


def test_span_attributes_never_carry_secrets_or_emails() -> None:
    assert safe_attributes(
        {"customer_email": "a@b.c", "x-internal-service-key": "k", "count": 3, "run": None, "ok": True}
    ) == {"count": 3, "ok": True}


def _run_job(settings, tags):  # type: ignore[no-untyped-def]
    defs = build_defs(dagster_resources(settings))
    with dg.instance_for_test() as instance:
        return defs.resolve_job_def("customer_sync_job").execute_in_process(
            instance=instance, tags=tags, raise_on_error=False
        )


def test_a_failed_run_is_marked_and_exported(crm, settings, otlp_receiver: OTLPReceiver) -> None:  # type: ignore[no-untyped-def]
    crm.set_faults([{"mode": "http_500", "path": "/api/customers"}])
    result = _run_job(settings, {})
    assert not result.success
    run_span = otlp_receiver.wait_for_span(
        lambda s: s.attributes.get("dagster.run_id") == result.run_id and s.name == "integration.crm.sync_customers",
        what="the failed run's span",
    )
    assert run_span.status_code == 2
    assert run_span.attributes["error.type"] == "CRMServerError"
    fetch = next(s for s in otlp_receiver.spans(run_span.trace_id) if s.name.endswith(".fetch"))
    assert fetch.status_code == 2


def test_a_re_execution_links_to_the_old_request_instead_of_joining_it(crm, settings, otlp_receiver) -> None:  # type: ignore[no-untyped-def]
    old = f"00-{INBOUND_TRACE}-{INBOUND_SPAN}-01"
    result = _run_job(settings, {TRACEPARENT_TAG: old, "dagster/parent_run_id": "earlier-run"})
    run_span = otlp_receiver.wait_for_span(
        lambda s: s.attributes.get("dagster.run_id") == result.run_id and s.name == "integration.crm.sync_customers",
        what="the re-executed run's span",
    )
    assert run_span.parent_span_id is None
    assert run_span.trace_id != INBOUND_TRACE
    assert run_span.links == (INBOUND_TRACE,)


def test_the_run_and_its_checks_share_one_trace(client, otlp_receiver) -> None:  # type: ignore[no-untyped-def]
    body = client.post(SYNC, json={"force": True, "limit": 5}).get_json()
    flush_telemetry()
    run_span = otlp_receiver.wait_for_span(
        lambda s: s.attributes.get("dagster.run_id") == body["run_id"] and s.name == "integration.crm.sync_customers",
        what="the run span",
    )
    names = {s.name for s in otlp_receiver.spans(run_span.trace_id)}
    assert {
        "integration.crm.sync_customers.check_unique_email",
        "integration.crm.sync_customers.check_unique_crm_id",
        "integration.crm.sync_customers.check_invalid_share",
    } <= names


def test_exported_spans_carry_no_email_anywhere() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from resources.telemetry import RedactingExporter, mark_error

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(memory)))
    with provider.get_tracer("t").start_as_current_span(
        "db", attributes={"db.error": "Key=(alice@example.com)"}
    ) as span:
        mark_error(span, ValueError("duplicate key (email)=(bob@example.org) already exists"))
        span.set_status(trace.Status(trace.StatusCode.ERROR, "UniqueViolation: carol@example.net"))
    (exported,) = memory.get_finished_spans()
    everything = json.dumps(
        {
            "attributes": dict(exported.attributes),
            "events": [dict(e.attributes) for e in exported.events],
            "status": exported.status.description,
        }
    )
    assert "@" not in everything, everything
    assert "[email]" in everything


def test_operation_names_are_one_list() -> None:
    from resources.telemetry import OPERATIONS, crm_span

    assert {"sync_customers", "sync_order", "customer_enrichment", "ticket_products", "health_check"} <= OPERATIONS
    assert "catalog_sync" in OPERATIONS
    with pytest.raises(ValueError, match="unknown integration operation"), crm_span("sync_custmers"):
        pass
