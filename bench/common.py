"""What every benchmark here shares: readiness waits and result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.net import wait_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def wait_until_ok(url: str, *, timeout: float = 120) -> None:
    """Wait (bounded) until GET url answers 200."""

    def ok() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ok, timeout=timeout, interval=0.2, what=url)


def save_results(name: str, results: dict[str, Any]) -> Path:
    """Write results to bench/results/<name>.json and return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    return path
