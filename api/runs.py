"""Starting Dagster runs from the API and waiting for them (bounded).

Production talks to the Dagster webserver's GraphQL API, so the run is queued, limited and monitored
by the instance like any other. The in-process launcher runs the job inside the API process against the
configured instance; it exists for single-process tools and tests.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from api.errors import APIError

log = logging.getLogger(__name__)
TERMINAL = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@dataclass(frozen=True)
class RunOutcome:
    """A run's id and its last known status."""

    run_id: str
    status: str

    @property
    def finished(self) -> bool:
        """Whether the run reached a terminal status."""
        return self.status in TERMINAL


class RunLauncher(Protocol):
    """Starts a job run and reports on it."""

    def launch(self, job_name: str, run_config: dict[str, Any], tags: dict[str, str]) -> str: ...

    def status(self, run_id: str) -> str: ...


def wait_for_run(launcher: RunLauncher, run_id: str, *, timeout: float, poll: float = 0.25) -> RunOutcome:
    """Wait until a run ends or `timeout` passes."""
    deadline = time.monotonic() + timeout
    status = launcher.status(run_id)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(poll)
        status = launcher.status(run_id)
    return RunOutcome(run_id, status)


class GraphQLRunLauncher:
    """Submits runs through the Dagster webserver's GraphQL API (dagster-graphql's client).

    The client opens and closes its transport around each call and refuses a second call meanwhile, so
    every thread of a worker gets its own.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._https = parts.scheme == "https"
        self._timeout = int(timeout)
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            from dagster_graphql import DagsterGraphQLClient

            client = self._local.client = DagsterGraphQLClient(
                self._host, port_number=self._port, use_https=self._https, timeout=self._timeout
            )
        return client

    def launch(self, job_name: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        with _orchestrator_errors(f"start {job_name}"):
            return self._client().submit_job_execution(job_name, run_config=run_config, tags=tags)

    def status(self, run_id: str) -> str:
        with _orchestrator_errors(f"read run {run_id}"):
            return self._client().get_run_status(run_id).value


@contextmanager
def _orchestrator_errors(action: str) -> Iterator[None]:
    """Any failure talking to Dagster is a 503 whose text names the action only; details go to the log."""
    try:
        yield
    except APIError:
        raise
    except Exception as exc:  # gql, requests and dagster-graphql errors share no base class
        log.warning("Dagster GraphQL call failed", extra={"action": action, "error": f"{type(exc).__name__}: {exc}"})
        raise APIError(503, "orchestrator_unavailable", f"Dagster could not {action}; see the API log") from exc


class InProcessRunLauncher:
    """Executes the job in this process against a Dagster instance (a real run, no webserver)."""

    def __init__(self, instance: Any = None) -> None:
        self._given = instance

    def _instance(self) -> Any:
        import dagster as dg

        return self._given or dg.DagsterInstance.get()

    def launch(self, job_name: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        from pipelines.definitions import defs

        result = defs.resolve_job_def(job_name).execute_in_process(
            run_config=run_config, instance=self._instance(), tags=tags, raise_on_error=False
        )
        return result.run_id

    def status(self, run_id: str) -> str:
        run = self._instance().get_run_by_id(run_id)
        return run.status.value if run else "UNKNOWN"
