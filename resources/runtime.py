"""Process-level tuning for the processes that run syncs."""

from __future__ import annotations

import gc
from functools import cache


@cache
def freeze_startup_heap() -> int:
    """Take every object alive after start-up out of the cyclic garbage collector's view, once per process.

    A code location's process holds Dagster, pandas and SQLAlchemy: about 200,000 tracked objects that live
    as long as the process. A sync allocates a dict per customer, so the collector soon runs a full
    collection, and each one walks that whole start-up heap (about 0.1 s here). Frozen, they are skipped;
    objects created later are collected as before. Garbage is collected first, so nothing unreachable is
    frozen. Returns how many objects the first call froze (later calls return that cached count).

    It runs wherever `pipelines.definitions` is imported: the code server, run workers and the daemon, and
    also pytest and an API process with the in-process run launcher. The cost there is bounded and paid
    once: objects alive at that moment that later become cyclic garbage stay in memory until the process
    ends (objects freed by reference counting are freed as usual).
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
