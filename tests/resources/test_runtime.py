"""Process-level tuning: the start-up heap is frozen out of the garbage collector's view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


def test_loading_the_code_location_freezes_its_start_up_heap() -> None:
    frozen = int(_run("import gc, pipelines.definitions; print(gc.get_freeze_count())"))
    # Dagster, pandas and SQLAlchemy: far more than 50,000 tracked objects.
    assert frozen > 50_000


def test_freezing_collects_garbage_first_runs_once_and_leaves_the_collector_on() -> None:
    code = """
import gc, weakref
from resources.runtime import freeze_startup_heap

class Node:
    pass

cycle = Node()
cycle.me = cycle
collected = []
weakref.finalize(cycle, collected.append, "collected")
del cycle
first = freeze_startup_heap()
second = freeze_startup_heap()
print(collected, first == second == gc.get_freeze_count() > 0, gc.isenabled())
"""
    assert _run(code) == "['collected'] True True"
