"""Dagster resources over the app database and the CRM client; defaults come from Settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from pydantic import PrivateAttr
from sqlalchemy import Engine

from resources.crm_client import CRMClient
from resources.crm_factory import build_crm_client, shared_engine
from resources.settings import Settings, get_settings
from resources.telemetry import (
    PEER_SERVICE,
    TARGET_SERVICE,
    TRACEPARENT_TAG,
    context_from_run_tags,
    flush_telemetry,
    link_from_traceparent,
    mark_error,
    safe_attributes,
    set_attributes,
    setup_telemetry,
    tracer,
)

#: Run tag naming the integration operation a job performs; the run's span is integration.crm.<operation>.
OPERATION_TAG = "crm/operation"


class DatabaseResource(dg.ConfigurableResource):
    """The application database (customers, sync state, rejects, breaker state)."""

    database_url: str | None = None

    @property
    def settings(self) -> Settings:
        """Process settings, with this resource's URL when one is given."""
        base = get_settings()
        return base.model_copy(update={"database_url": self.database_url}) if self.database_url else base

    @property
    def engine(self) -> Engine:
        """The process-wide engine for this database."""
        return shared_engine(self.settings.database_url)


class CRMResource(dg.ConfigurableResource):
    """The Enterprise CRM Portal, through the shared client (timeouts, retries, circuit breaker)."""

    database: DatabaseResource
    base_url: str | None = None
    sync_cap: int | None = None
    page_size: int | None = None
    full_sync_ceiling: int | None = None
    retry_backoff: float | None = None

    @property
    def settings(self) -> Settings:
        """Process settings with this resource's overrides applied."""
        overrides = {
            "enterprise_crm_url": self.base_url,
            "crm_sync_cap": self.sync_cap,
            "crm_page_size": self.page_size,
            "crm_full_sync_ceiling": self.full_sync_ceiling,
            "crm_retry_backoff": self.retry_backoff,
        }
        return self.database.settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})

    @contextmanager
    def client(self) -> Iterator[CRMClient]:
        """A CRM client for the duration of a step; its connections are closed afterwards."""
        client = build_crm_client(self.settings, engine=self.database.engine)
        try:
            yield client
        finally:
            client.close()


class TelemetryResource(dg.ConfigurableResource):
    """One span per run, `integration.crm.<operation>`, child of the caller's span carried in the run's tags.

    A run started by the API continues the API request's trace; a scheduled run starts its own. Steps
    open child spans with `step`; everything is flushed when the run's resources are torn down.
    """

    component: str = "dagster-run"
    _run_span: Any = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        setup_telemetry(self.component)
        run = context.run
        tags = dict(run.tags) if run else {}
        operation = tags.get(OPERATION_TAG) or (run.job_name if run else "run")
        caller = context_from_run_tags(tags)
        links = []
        if caller is not None and "dagster/parent_run_id" in tags:
            # A re-execution inherits the original run's tags: link to that old request, do not join it.
            link = link_from_traceparent(
                tags.get(TRACEPARENT_TAG), **{"dagster.parent_run_id": tags["dagster/parent_run_id"]}
            )
            links = [link] if link else []
            caller = None
        self._run_span = tracer().start_span(
            f"integration.crm.{operation}",
            # An empty context, not "whatever is current": a run without a caller starts its own trace even
            # when it executes inside another span (the in-process launcher).
            context=caller or otel_context.Context(),
            links=links,
            kind=SpanKind.INTERNAL,
            attributes=safe_attributes(
                {
                    "integration.target_service": TARGET_SERVICE,
                    "peer.service": PEER_SERVICE,
                    "dagster.run_id": run.run_id if run else None,
                    "dagster.job": run.job_name if run else None,
                    "dagster.trigger": tags.get("crm/trigger") or _trigger(tags),
                }
            ),
        )

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._run_span is not None:
            self._run_span.end()
            self._run_span = None
        flush_telemetry()

    @contextmanager
    def step(self, name: str, **attributes: Any) -> Iterator[Span]:
        """A current span for one step, child of the run's span; failures mark the run span too."""
        parent = trace.set_span_in_context(self._run_span) if self._run_span is not None else None
        with tracer().start_as_current_span(
            name,
            context=parent,
            attributes=safe_attributes(attributes),
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:  # interruptions too: the run span must say it did not finish
                mark_error(span, exc)
                if self._run_span is not None:
                    mark_error(self._run_span, exc)
                raise

    def annotate(self, **attributes: Any) -> None:
        """Add counts and outcomes to the run's span."""
        if self._run_span is not None:
            set_attributes(self._run_span, **attributes)


def _trigger(tags: dict[str, str]) -> str:
    if "dagster/schedule_name" in tags:
        return "schedule"
    if "dagster/sensor_name" in tags:
        return "sensor"
    return "manual"
