"""API read throughput with tracing on and off, measured side by side in one run.

Both servers are the real API under gunicorn (2 workers x 4 threads) on the same SQLite file holding
1,200 synced customers; "on" exports every span over OTLP/HTTP to a receiver in this process, "off" is
OTEL_SDK_DISABLED=true. Both servers run side by side and are loaded in alternating rounds (medians
reported). Load: 16 connections of GET /customers?limit=50 for a fixed time from wrk
(Debian's `wrk`; `make bench` installs it), or, without wrk, a bounded number of requests from 16 Python
threads (whose own cost then caps the figures).

    python -m bench.api_tracing [--requests 3000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT, save_results, wait_until_ok

PATH = "/api/integrations/crm/customers?limit=50"


def _seed(database_url: str) -> None:
    """Migrate and fill the database with a full sync from an in-process sandbox."""
    from assets.customer_sync import extract_customers, load_customers
    from resources.crm_factory import build_crm_client, shared_engine
    from resources.migrations import upgrade
    from resources.settings import Settings
    from sandbox import SandboxServer

    upgrade(database_url)
    with SandboxServer(customers=1200, port=0) as crm:
        settings = Settings(enterprise_crm_url=crm.url, database_url=database_url, crm_retry_backoff=0)
        engine = shared_engine(database_url)
        with build_crm_client(settings) as client:
            load_customers(engine, extract_customers(client, engine, mode="full", full_ceiling=1200))


def _serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "api/gunicorn.conf.py", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env={**env, "API_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_ok(f"http://127.0.0.1:{port}{PATH}", timeout=60)
    return process


def _load_wrk(port: int, seconds: int, concurrency: int = 16) -> dict[str, Any]:
    """Load from wrk (a C client in its own process), so the client's cost does not cap the server."""
    completed = subprocess.run(
        ["wrk", "-t2", f"-c{concurrency}", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{PATH}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    out = completed.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)

    def latency(percentile: str) -> float:
        value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "client": "wrk",
        "requests": requests,
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
        "wall_s": float(seconds),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def _load(port: int, requests: int, concurrency: int = 16) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    per_worker = requests // concurrency

    def worker() -> tuple[list[float], int]:
        own: list[float] = []
        failed = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for _ in range(per_worker):
                started = time.perf_counter()
                if client.get(PATH).status_code != 200:
                    failed += 1
                own.append(time.perf_counter() - started)
        return own, failed

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for own, failed in pool.map(lambda _: worker(), range(concurrency)):
            latencies.extend(own)
            errors += failed
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "client": "python-httpx",
        "requests": len(latencies),
        "errors": errors,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    """Run both configurations, print req/s and latency, and the overhead of tracing."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per configuration (Python client)")
    parser.add_argument("--seconds", type=int, default=8, help="seconds per configuration and round (wrk)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; figures are medians")
    args = parser.parse_args(argv)

    from tests.support.net import free_port
    from tests.support.otlp import OTLPReceiver

    # The load generator's own httpx calls are not traced.
    os.environ["OTEL_SDK_DISABLED"] = "true"
    receiver = OTLPReceiver().start()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'api.db'}"
        _seed(database_url)
        base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "ENTERPRISE_CRM_URL": "http://127.0.0.1:9",
        }
        configs = {
            "tracing_off": {**base, "OTEL_SDK_DISABLED": "true"},
            "tracing_on": {**base, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
        }
        servers = {name: (free_port(), None) for name in configs}
        try:
            for name, env in configs.items():
                port = servers[name][0]
                servers[name] = (port, _serve(port, env))
                _load(port, min(400, args.requests))  # warm-up: imports, connections, caches
            # Alternate the two servers for several rounds and keep medians: a slow spell of the machine
            # then hits both configurations alike.
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
            for _ in range(args.rounds):
                for name, (port, _process) in servers.items():
                    if shutil.which("wrk"):
                        rounds[name].append(_load_wrk(port, args.seconds))
                    else:
                        rounds[name].append(_load(port, args.requests))
            for name, runs in rounds.items():
                results[name] = {
                    key: statistics.median(r[key] for r in runs)
                    if isinstance(runs[0][key], int | float)
                    else runs[0][key]
                    for key in runs[0]
                }
                results[name]["rounds"] = [round(r["rps"], 1) for r in runs]
        finally:
            for _port, process in servers.values():
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)
    receiver.stop()
    results["spans_received"] = len(receiver.spans())
    off, on = results["tracing_off"], results["tracing_on"]
    results["throughput_ratio_on_vs_off"] = on["rps"] / off["rps"]
    results["overhead_pct"] = (1 - on["rps"] / off["rps"]) * 100
    print(f"{'configuration':14} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for name in ("tracing_off", "tracing_on"):
        r = results[name]
        print(f"{name:14} {r['requests']:>8} {r['errors']:>6} {r['rps']:>8.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f}")
    print(
        f"\ntracing on / off throughput: {results['throughput_ratio_on_vs_off']:.2f} "
        f"(overhead {results['overhead_pct']:.1f}%); spans exported: {results['spans_received']}"
    )
    print(f"\nsaved {save_results('api_tracing', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
