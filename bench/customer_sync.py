"""Customer sync benchmark: ours against the floor of the same work and against the original shop's method.

Every figure comes from one invocation. Each scenario runs in a fresh interpreter (so peak RSS belongs to
that scenario alone) against one CRM sandbox process serving the same customers. Timers start after the
imports each scenario needs, so they measure a sync, not interpreter start-up. Both our pull and the original
method first do a small warm-up pull (500 customers) into a scratch database; the caches of timestamp
values are emptied before every timed pull of ours, as each sync starts in a new run worker. Every
scenario has its start-up heap frozen out of the garbage collector's view, as a code location has when it
loads (resources/runtime.py; the Dagster scenario gets it from importing the definitions), so no scenario
pays for walking its imports in a full collection. Scenarios run in
interleaved rounds (--repeat, default 5) and every figure is the median of its rounds: this machine's
timings vary by ±25 % from one run to the next. Our pull at the legacy comparison's size takes a few tenths
of a second, so within each round it runs five times (each into a fresh database) and keeps the medians.
Ratios are taken within each round, between scenarios that ran back to back, and the median over the
rounds is reported next to every round's value.

    python -m bench.customer_sync [--customers 100000] [--legacy-customers 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT, save_results, wait_until_ok
from resources.runtime import freeze_startup_heap

PAGE = 500


# -- scenarios (each runs in its own process) ---------------------------------------------------------


def _settings(crm_url: str, database_url: str, customers: int):  # type: ignore[no-untyped-def]
    from resources.settings import Settings

    return Settings(
        enterprise_crm_url=crm_url,
        database_url=database_url,
        crm_sync_cap=customers,
        crm_full_sync_ceiling=customers,
        crm_retry_backoff=0,
        crm_read_timeout=60,
    )


def _migrated(database_url: str) -> None:
    from resources.migrations import upgrade

    upgrade(database_url)


def fetch_pages(crm_url: str, customers: int) -> list[dict[str, Any]]:
    """The floor's fetch: plain httpx, the same pages, JSON parsed with our parser, nothing else."""
    import httpx

    from resources.crm_client import parse_json

    records: list[dict[str, Any]] = []
    with httpx.Client(base_url=crm_url, timeout=60) as http:
        offset = 0
        while offset < customers:
            response = http.get("/api/customers", params={"limit": PAGE, "offset": offset, "sort_by": "id"})
            page = parse_json(response.content)
            records.extend(page["customers"])
            if len(page["customers"]) < PAGE:
                break
            offset += PAGE
    return records


def scenario_floor(crm_url: str, database_url: str, customers: int) -> dict[str, Any]:
    """Fetch and parse with no database, then one plain INSERT of the same rows through the driver."""
    from sqlalchemy import insert

    from domain.customers import validate_customers
    from resources.crm_factory import shared_engine
    from resources.customer_store import executemany
    from resources.db import customers as table
    from resources.db import utcnow

    _migrated(database_url)
    freeze_startup_heap()
    started = time.perf_counter()
    records = fetch_pages(crm_url, customers)
    fetch_s = time.perf_counter() - started
    # Row preparation is not part of the floor: the same rows are made ready beforehand.
    now = utcnow()
    rows = [
        {**row, "created_at": now, "updated_at": now, "last_synced_at": now} for row in validate_customers(records).rows
    ]
    engine = shared_engine(database_url)
    started = time.perf_counter()
    with engine.begin() as conn:
        executemany(conn, insert(table), rows)
    insert_s = time.perf_counter() - started
    return {"rows": len(rows), "fetch_s": fetch_s, "insert_s": insert_s, "wall_s": fetch_s + insert_s}


WARM_UP_CUSTOMERS = 500
# Our pull at 10,000 takes a few tenths of a second: it is repeated in its process and the medians kept.
SMALL_REPEATS = 5


def _scratch_url(database_url: str) -> str:
    return database_url.removesuffix(".db") + "-warm-up.db"


def _warm_up(crm_url: str, database_url: str) -> None:
    """One small sync into a scratch database before any timer: imports, compiled statements, connections."""
    from assets.customer_sync import extract_customers, load_customers
    from resources.crm_factory import build_crm_client, shared_engine

    scratch = _scratch_url(database_url)
    _migrated(scratch)
    engine = shared_engine(scratch)
    with build_crm_client(_settings(crm_url, scratch, WARM_UP_CUSTOMERS)) as client:
        load_customers(
            engine, extract_customers(client, engine, mode="full", full_ceiling=WARM_UP_CUSTOMERS, page_size=PAGE)
        )


def _timed_pull(crm_url: str, engine: Any, settings: Any, customers: int) -> tuple[dict[str, Any], list[Any]]:
    """One full pull through the functions the assets call; its timings and counts, and the loaded rows."""
    from assets.customer_sync import extract_customers, load_customers
    from domain.customers import _parse_timestamp_text
    from resources.crm_factory import build_crm_client
    from resources.customer_store import _sqlite_timestamp

    # Each sync is a new run worker process in production: its caches of timestamp values start empty.
    _parse_timestamp_text.cache_clear()
    _sqlite_timestamp.cache_clear()
    with build_crm_client(settings) as client:
        started = time.perf_counter()
        extract = extract_customers(
            client,
            engine,
            mode="full",
            full_ceiling=customers,
            page_size=PAGE,
            concurrency=settings.crm_fetch_concurrency,
        )
        extracted = time.perf_counter()
        result = load_customers(engine, extract)
        finished = time.perf_counter()
    figures = {
        "rows": extract.fetched,
        "wall_s": finished - started,
        "fetch_validate_s": extracted - started,
        "load_s": finished - extracted,
        "inserted": result.counts.inserted,
        "updated": result.counts.updated,
        "unchanged": result.counts.unchanged,
    }
    return figures, extract.rows


def _ours(crm_url: str, database_url: str, customers: int, repeats: int) -> dict[str, Any]:
    """Our pull into a fresh database (empty table), then again (every row exists), `repeats` times.

    Each figure is the median over the repeats: a pull well under a second is at the mercy of this machine's
    moment-to-moment speed, so one sample of it says little.
    """
    from resources.crm_factory import shared_engine
    from resources.customer_store import upsert_customers

    _warm_up(crm_url, database_url)
    freeze_startup_heap()
    runs: list[dict[str, Any]] = []
    for i in range(repeats):
        url = database_url.removesuffix(".db") + f"-{i}.db"
        _migrated(url)
        engine = shared_engine(url)
        settings = _settings(crm_url, url, customers)
        empty = _timed_pull(crm_url, engine, settings, customers)[0]
        existing, rows = _timed_pull(crm_url, engine, settings, customers)
        runs.append({"empty": empty, "existing": existing})
    out = _median(runs)
    out["repeats"] = repeats
    # The upsert phase alone, into an empty table, on the rows the floor inserts.
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM customers")
    started = time.perf_counter()
    with engine.begin() as conn:
        upsert_customers(conn, rows)
    out["upsert_only_s"] = time.perf_counter() - started
    return out


def scenario_ours(crm_url: str, database_url: str, customers: int) -> dict[str, Any]:
    """Our pull (the functions the assets call) into an empty table, then again when every row exists."""
    return _ours(crm_url, database_url, customers, repeats=1)


def scenario_dagster(crm_url: str, database_url: str, customers: int) -> dict[str, Any]:
    """The same full pull as a real Dagster run of customer_sync_job (in-process executor)."""
    import dagster as dg

    from pipelines.definitions import build_defs
    from resources.dagster_resources import CRMResource, DatabaseResource, TelemetryResource

    _migrated(database_url)
    os.environ["ENTERPRISE_CRM_URL"] = crm_url
    database = DatabaseResource(database_url=database_url)
    defs = build_defs(
        {
            "database": database,
            "crm": CRMResource(database=database, base_url=crm_url, sync_cap=customers, full_sync_ceiling=customers),
            "telemetry": TelemetryResource(),
        },
    )
    with dg.instance_for_test() as instance:
        freeze_startup_heap()
        started = time.perf_counter()
        result = defs.resolve_job_def("customer_sync_job").execute_in_process(
            instance=instance, run_config={"ops": {"crm_customers": {"config": {"mode": "full"}}}}
        )
        wall = time.perf_counter() - started
    assert result.success
    return {"rows": customers, "wall_s": wall}


_LEGACY_TABLE = (
    "CREATE TABLE customers (id INTEGER PRIMARY KEY, crm_id INTEGER, name TEXT, email TEXT UNIQUE, "
    "phone TEXT, company TEXT, industry TEXT, revenue REAL, updated_at TEXT)"
)
_LEGACY_UPDATE = (
    "UPDATE customers SET crm_id=:crm_id, name=:name, phone=:phone, company=:company, industry=:industry, "
    "revenue=:revenue, updated_at=:updated_at WHERE id=:id"
)
_LEGACY_INSERT = (
    "INSERT INTO customers (crm_id, name, email, phone, company, industry, revenue, updated_at) "
    "VALUES (:crm_id, :name, :email, :phone, :company, :industry, :revenue, :updated_at)"
)


def _legacy_pull(engine: Any, crm_url: str, customers: int) -> float:
    """The original shop's pull, page by page; returns the seconds spent fetching."""
    import httpx
    from sqlalchemy import text

    fetch_s = 0.0
    with httpx.Client(base_url=crm_url, timeout=60) as http:
        offset = 0
        while offset < customers:
            limit = min(PAGE, customers - offset)
            fetch_started = time.perf_counter()
            page = http.get("/api/customers", params={"limit": limit, "offset": offset}).json()["customers"]
            fetch_s += time.perf_counter() - fetch_started
            with engine.begin() as conn:  # one transaction per page
                for record in page:
                    email = (record.get("email") or "").strip().lower()
                    found = conn.execute(
                        text("SELECT id FROM customers WHERE lower(email) = :email"), {"email": email}
                    ).first()
                    values = {
                        "crm_id": record.get("id"),
                        "name": record.get("name"),
                        "email": email,
                        "phone": record.get("phone"),
                        "company": record.get("company"),
                        "industry": record.get("industry"),
                        "revenue": record.get("revenue"),
                        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    }
                    if found:
                        conn.execute(text(_LEGACY_UPDATE), {**values, "id": found.id})
                    else:
                        conn.execute(text(_LEGACY_INSERT), values)
            if len(page) < limit:
                break
            offset += limit
    return fetch_s


def scenario_legacy(crm_url: str, database_url: str, customers: int) -> dict[str, Any]:
    """The original shop: email UNIQUE, no index on lower(email); per record SELECT, then UPDATE or INSERT."""
    from sqlalchemy import create_engine, text

    engines = {}
    for name, url in (("scratch", _scratch_url(database_url)), ("measured", database_url)):
        engines[name] = create_engine(url)
        with engines[name].begin() as conn:
            conn.execute(text(_LEGACY_TABLE))
    _legacy_pull(engines["scratch"], crm_url, WARM_UP_CUSTOMERS)
    freeze_startup_heap()
    out: dict[str, Any] = {}
    for label in ("empty", "existing"):
        started = time.perf_counter()
        fetch_s = _legacy_pull(engines["measured"], crm_url, customers)
        wall = time.perf_counter() - started
        out[label] = {"rows": customers, "wall_s": wall, "fetch_s": fetch_s, "db_s": wall - fetch_s}
    return out


def scenario_ours_small(crm_url: str, database_url: str, customers: int) -> dict[str, Any]:
    """Our pull at the legacy comparison's size, both passes, five times (medians)."""
    return _ours(crm_url, database_url, customers, repeats=SMALL_REPEATS)


SCENARIOS: dict[str, Callable[[str, str, int], dict[str, Any]]] = {
    "floor": scenario_floor,
    "ours": scenario_ours,
    "dagster": scenario_dagster,
    "legacy": scenario_legacy,
    "ours_small": scenario_ours_small,
}


# -- driver -------------------------------------------------------------------------------------------


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over repeated runs (peak memory: the largest)."""
    merged: dict[str, Any] = {}
    for key, first in results[0].items():
        values = [r[key] for r in results]
        if isinstance(first, dict):
            merged[key] = _median(values)
        elif key == "peak_rss_mib":
            merged[key] = max(values)
        elif isinstance(first, int | float) and not isinstance(first, bool):
            merged[key] = statistics.median(values)
        else:
            merged[key] = first
    return merged


def _run_scenario(name: str, crm_url: str, customers: int, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{workdir / f'{name}.db'}"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.customer_sync",
            "--worker",
            name,
            "--crm-url",
            crm_url,
            "--database-url",
            database_url,
            "--customers",
            str(customers),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"scenario {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _worker(args: argparse.Namespace) -> None:
    result = SCENARIOS[args.worker](args.crm_url, args.database_url, args.customers)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def _start_sandbox(customers: int) -> tuple[subprocess.Popen[bytes], str]:
    from tests.support.net import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--host", "127.0.0.1", "--port", str(port), "--customers", str(customers)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_ok(f"{url}/health")
    return proc, url


# Each ratio: a figure of one scenario over a figure of another, as paths into their results.
RATIOS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ours_empty_vs_floor": (("ours", "empty", "wall_s"), ("floor", "wall_s")),
    "ours_existing_vs_floor": (("ours", "existing", "wall_s"), ("floor", "wall_s")),
    "upsert_vs_plain_insert_speed": (("floor", "insert_s"), ("ours", "upsert_only_s")),
    "dagster_run_vs_floor": (("dagster", "wall_s"), ("floor", "wall_s")),
    "legacy_vs_ours_empty": (("legacy", "empty", "wall_s"), ("ours_small", "empty", "wall_s")),
    "legacy_vs_ours_existing": (("legacy", "existing", "wall_s"), ("ours_small", "existing", "wall_s")),
    "legacy_vs_ours_db_empty": (("legacy", "empty", "db_s"), ("ours_small", "empty", "load_s")),
    "legacy_vs_ours_db_existing": (("legacy", "existing", "db_s"), ("ours_small", "existing", "load_s")),
}


def _round_ratios(
    rounds: dict[str, list[dict[str, Any]]], numerator: tuple[str, ...], denominator: tuple[str, ...]
) -> list[float]:
    """The ratio within each round, so that a slow spell of the machine sits on both sides of it."""

    def figure(path: tuple[str, ...], i: int) -> float:
        value: Any = rounds[path[0]][i]
        for key in path[1:]:
            value = value[key]
        return float(value)

    return [figure(numerator, i) / figure(denominator, i) for i in range(len(rounds[numerator[0]]))]


def _rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds else "-"


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, print a table of rows/s, wall time, peak RSS and ratios, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000, help="customers for the main comparison")
    parser.add_argument("--legacy-customers", type=int, default=10_000, help="customers for the legacy comparison")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of every scenario (default 5)")
    parser.add_argument("--worker", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--crm-url", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args)
        return 0

    results: dict[str, Any] = {
        "customers": args.customers,
        "legacy_customers": args.legacy_customers,
        "repeat": args.repeat,
    }
    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        workdir = Path(tmp)
        sandbox, url = _start_sandbox(args.customers)
        try:
            # Interleaved rounds, so a slow spell of the machine hits every scenario alike.
            rounds: dict[str, list[dict[str, Any]]] = {}
            for i in range(args.repeat):
                for name in ("floor", "ours", "dagster", "legacy", "ours_small"):
                    size = args.legacy_customers if name in ("legacy", "ours_small") else args.customers
                    rounds.setdefault(name, []).append(_run_scenario(name, url, size, workdir / f"{name}-{i}"))
            for name, runs in rounds.items():
                results[name] = _median(runs)
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)

    floor, ours, legacy, small = results["floor"], results["ours"], results["legacy"], results["ours_small"]
    n, m = args.customers, args.legacy_customers
    per_round = {name: _round_ratios(rounds, *paths) for name, paths in RATIOS.items()}
    ratios = {name: statistics.median(values) for name, values in per_round.items()}
    results["ratios_per_round"] = per_round
    results["ratios"] = ratios
    rows = [
        ("floor: fetch+parse pages, no DB", n, floor["fetch_s"], floor["peak_rss_mib"]),
        ("floor: plain executemany INSERT", n, floor["insert_s"], floor["peak_rss_mib"]),
        ("floor: total", n, floor["wall_s"], floor["peak_rss_mib"]),
        ("ours: end to end, empty table", n, ours["empty"]["wall_s"], ours["peak_rss_mib"]),
        ("ours: end to end, every row exists", n, ours["existing"]["wall_s"], ours["peak_rss_mib"]),
        ("ours: upsert phase alone, empty", n, ours["upsert_only_s"], ours["peak_rss_mib"]),
        ("ours: as a Dagster run, empty", n, results["dagster"]["wall_s"], results["dagster"]["peak_rss_mib"]),
        ("original shop method, empty", m, legacy["empty"]["wall_s"], legacy["peak_rss_mib"]),
        ("original shop method, every row exists", m, legacy["existing"]["wall_s"], legacy["peak_rss_mib"]),
        ("original shop method, its DB work, empty", m, legacy["empty"]["db_s"], legacy["peak_rss_mib"]),
        ("ours, empty", m, small["empty"]["wall_s"], small["peak_rss_mib"]),
        ("ours, every row exists", m, small["existing"]["wall_s"], small["peak_rss_mib"]),
        ("ours, load phase (DB), empty", m, small["empty"]["load_s"], small["peak_rss_mib"]),
    ]
    print(f"{'scenario':42} {'rows':>8} {'wall s':>8} {'rows/s':>10} {'peak RSS MiB':>13}")
    for label, count, seconds, rss in rows:
        print(f"{label:42} {count:>8,} {seconds:>8.2f} {_rate(count, seconds):>10} {rss:>13.0f}")
    print()
    print("ratios within each round (scenarios run back to back), median of the rounds [each round]:")
    for name, label, target in (
        ("ours_empty_vs_floor", "ours end to end / floor, empty", "<= 2.0"),
        ("ours_existing_vs_floor", "ours end to end / floor, every row exists", "<= 2.0"),
        ("upsert_vs_plain_insert_speed", "upsert speed / plain INSERT speed", ">= 0.6"),
        ("dagster_run_vs_floor", "Dagster run / floor", ""),
        ("legacy_vs_ours_empty", f"original method / ours at {m:,}, empty", ">= 20"),
        ("legacy_vs_ours_existing", f"original method / ours at {m:,}, every row exists", ">= 20"),
        ("legacy_vs_ours_db_empty", "  its database work / our load, empty", ""),
        ("legacy_vs_ours_db_existing", "  its database work / our load, every row exists", ""),
    ):
        rounds_text = ", ".join(f"{value:.2f}" for value in per_round[name])
        print(f"{label:50} {ratios[name]:6.2f}  [{rounds_text}]  {'target ' + target if target else ''}")
    print(f"\nsaved {save_results('customer_sync', results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
