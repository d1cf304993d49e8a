"""Starting Dagster runs from the API and waiting for them (bounded).

Production talks to the Dagster webserver's GraphQL API, so the run is queued, limited and monitored
by the instance like any other. The in-process launcher runs the job inside the API process against the
configured instance; it exists for single-process tools and tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from api.errors import APIError

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


def launch_and_wait(
    launcher: RunLauncher,
    job_name: str,
    run_config: dict[str, Any],
    tags: dict[str, str],
    *,
    timeout: float,
    poll: float = 0.25,
) -> RunOutcome:
    """Start a run and wait until it ends or `timeout` passes."""
    run_id = launcher.launch(job_name, run_config, tags)
    deadline = time.monotonic() + timeout
    status = launcher.status(run_id)
    while status not in TERMINAL and time.monotonic() < deadline:
        time.sleep(poll)
        status = launcher.status(run_id)
    return RunOutcome(run_id, status)


class GraphQLRunLauncher:
    """Submits runs through the Dagster webserver's GraphQL API (dagster-graphql's client)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        from dagster_graphql import DagsterGraphQLClient

        parts = urlsplit(url)
        self._client = DagsterGraphQLClient(
            parts.hostname or "127.0.0.1",
            port_number=parts.port,
            use_https=parts.scheme == "https",
            timeout=int(timeout),
        )

    def launch(self, job_name: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self._client.submit_job_execution(job_name, run_config=run_config, tags=tags)
        except DagsterGraphQLClientError as exc:
            raise APIError(503, "orchestrator_unavailable", f"Dagster could not start {job_name}: {exc}") from exc
        except Exception as exc:  # requests/gql transport errors have no common base
            raise APIError(
                503, "orchestrator_unavailable", f"Dagster webserver unreachable ({type(exc).__name__})"
            ) from exc

    def status(self, run_id: str) -> str:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return self._client.get_run_status(run_id).value
        except DagsterGraphQLClientError as exc:
            raise APIError(503, "orchestrator_unavailable", f"cannot read run {run_id}: {exc}") from exc
        except Exception as exc:
            raise APIError(
                503, "orchestrator_unavailable", f"Dagster webserver unreachable ({type(exc).__name__})"
            ) from exc


class InProcessRunLauncher:
    """Executes the job in this process against a Dagster instance (a real run, no webserver)."""

    def __init__(self, instance: Any = None) -> None:
        self._instance = instance
        self._statuses: dict[str, str] = {}

    def launch(self, job_name: str, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        import dagster as dg

        from pipelines.definitions import defs

        instance = self._instance or dg.DagsterInstance.get()
        result = defs.resolve_job_def(job_name).execute_in_process(
            run_config=run_config, instance=instance, tags=tags, raise_on_error=False
        )
        self._statuses[result.run_id] = "SUCCESS" if result.success else "FAILURE"
        return result.run_id

    def status(self, run_id: str) -> str:
        return self._statuses.get(run_id, "UNKNOWN")
