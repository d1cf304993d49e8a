"""The README's first command, for real: `make run` on free ports, driven over HTTP, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _graphql(url: str, query: str) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def test_make_run_serves_customers_schedules_syncs_and_stops_cleanly(tmp_path: Path, otlp_receiver) -> None:  # type: ignore[no-untyped-def]
    api_port, dagster_port, sandbox_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTERPRISE_CRM", "CRM_", "DATABASE_URL"))},
        "API_PORT": str(api_port),
        "DAGSTER_PORT": str(dagster_port),
        "SANDBOX_PORT": str(sandbox_port),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
    }
    log = (tmp_path / "make-run.log").open("w")
    make = subprocess.Popen(
        ["make", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    api = f"http://127.0.0.1:{api_port}/api/integrations/crm"
    dagster = f"http://127.0.0.1:{dagster_port}"
    tree: set[int] = set()
    try:

        def customers_arrived() -> dict | None:
            tree.update(_descendants(make.pid))
            try:
                body = httpx.get(f"{api}/customers", params={"limit": 5}, timeout=5).json()
            except httpx.HTTPError:
                return None
            return body if body.get("count") == 5 else None

        # No other step: the bootstrap sensor materializes customers on a new stack.
        body = wait_for(customers_arrived, timeout=150, interval=1, what="customers on the API after make run")
        assert body["sync_state"]["last_fetched"] == 500
        assert body["crm_url"] == f"http://127.0.0.1:{sandbox_port}"

        schedules = _graphql(
            dagster,
            '{ schedulesOrError(repositorySelector: {repositoryLocationName: "drone_shop_crm", '
            'repositoryName: "__repository__"}) { ... on Schedules { results { name scheduleState { status } } } } }',
        )
        assert schedules["schedulesOrError"]["results"] == [
            {"name": "customer_sync_schedule", "scheduleState": {"status": "RUNNING"}}
        ]
        materialized = _graphql(
            dagster,
            '{ assetOrError(assetKey: {path: ["customers"]}) { ... on Asset { assetMaterializations(limit: 1)'
            " { runId } } } }",
        )
        assert materialized["assetOrError"]["assetMaterializations"]

        forced = httpx.post(f"{api}/sync-customers", json={"force": True, "limit": 300}, timeout=150).json()
        # A schedule tick may land in between and move the cursor; the window is at most the limit either way.
        assert forced["synced"] is True
        assert 0 < forced["customers_seen"] <= 300
        assert forced["customers_seen"] == forced["inserted"] + forced["updated"] + forced["unchanged"]
        run = _graphql(
            dagster, f'{{ runOrError(runId: "{forced["run_id"]}") {{ ... on Run {{ status tags {{ key value }} }} }} }}'
        )
        assert run["runOrError"]["status"] == "SUCCESS"
        assert {"key": "crm/trigger", "value": "api"} in run["runOrError"]["tags"]
        assert httpx.get(f"{api}/health", timeout=10).json()["status"] == "healthy"

        # One trace across three processes: gunicorn worker → Dagster run worker → CRM sandbox.
        server = otlp_receiver.wait_for_span(
            lambda s: s.kind == "SERVER" and s.attributes.get("dagster.run_id") == forced["run_id"],
            timeout=60,
            what="the API's server span",
        )
        run_span = otlp_receiver.wait_for_span(
            lambda s: (
                s.name == "integration.crm.sync_customers" and s.attributes.get("dagster.run_id") == forced["run_id"]
            ),
            timeout=60,
            what="the run's span",
        )
        assert (server.service, run_span.service) == ("drone-shop-crm-api", "drone-shop-crm-dagster-run")
        assert (run_span.trace_id, run_span.parent_span_id) == (server.trace_id, server.span_id)
        crm_calls = [
            s
            for s in otlp_receiver.spans(server.trace_id)
            if s.kind == "CLIENT"
            and s.service == run_span.service
            and "/api/customers" in str(s.attributes.get("http.url"))
        ]
        assert crm_calls, "the run's httpx call to the CRM is in the request's trace"
        received = httpx.get(
            f"http://127.0.0.1:{sandbox_port}/_sandbox/requests", params={"path_prefix": "/api/customers"}, timeout=10
        ).json()
        entries = received["requests"] if isinstance(received, dict) else received
        assert server.trace_id in {e["headers"].get("traceparent", "--").split("-")[1] for e in entries}
        tree.update(_descendants(make.pid))
    finally:
        os.kill(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
        log.close()
    leftovers = wait_for(lambda: not any(_alive(pid) for pid in tree) or None, timeout=30, what="processes to exit")
    assert leftovers
    assert len(tree) >= 4, "the run should have started honcho, the sandbox, gunicorn and dagster"
