"""The CRM circuit breaker (D7), with its state in the app database so every process shares it.

pybreaker drives the state machine; this module adds the storage and one rule pybreaker cannot enforce
across processes: in half-open exactly one caller, anywhere, may probe the CRM.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pybreaker
from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from resources.db import circuit_breakers, utcnow

T = TypeVar("T")
CLOSED, OPEN, HALF_OPEN = pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN


class ProbeInProgress(pybreaker.CircuitBreakerError):
    """Half-open, and another caller holds the single probe."""


class DatabaseBreakerStorage(pybreaker.CircuitBreakerStorage):
    """pybreaker storage backed by the `circuit_breakers` table; counters change atomically in SQL."""

    def __init__(self, engine: Engine, name: str, *, probe_lease: float) -> None:
        super().__init__(name)
        self._engine = engine
        self._probe_lease = timedelta(seconds=probe_lease)
        # Per guarded call and thread: a token naming the caller (the probe belongs to one call, not to
        # a process) and the row, which pybreaker reads several times per call; any write drops the row.
        self._call = threading.local()
        self._ensure_row()

    def _ensure_row(self) -> None:
        table = circuit_breakers
        with self._engine.begin() as conn:
            if conn.execute(select(table.c.name).where(table.c.name == self.name)).first():
                return
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(table).values(
                        name=self.name, state=CLOSED, fail_counter=0, success_counter=0, updated_at=utcnow()
                    )
                )
        except IntegrityError:
            pass  # another process created it first

    def row(self) -> Any:
        """The stored breaker row (read once per guarded call)."""
        cached = getattr(self._call, "row", None)
        if cached is not None:
            return cached
        with self._engine.connect() as conn:
            row = conn.execute(select(circuit_breakers).where(circuit_breakers.c.name == self.name)).one()
        if getattr(self._call, "active", False):
            self._call.row = row
        return row

    @contextmanager
    def guarded_call(self) -> Iterator[None]:
        """Scope one guarded call in this thread: its caller token and its cached row (re-entrant)."""
        depth = getattr(self._call, "depth", 0)
        if depth == 0:
            self._call.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
            self._call.active, self._call.row = True, None
        self._call.depth = depth + 1
        try:
            yield
        finally:
            self._call.depth = depth
            if depth == 0:
                self._call.active, self._call.row, self._call.token = False, None, None

    @property
    def caller(self) -> str | None:
        """The token of the guarded call running in this thread, if any."""
        return getattr(self._call, "token", None)

    def _write(self, *conditions: Any, **values: Any) -> int:
        self._call.row = None
        table = circuit_breakers
        with self._engine.begin() as conn:
            return conn.execute(
                update(table).where(table.c.name == self.name, *conditions).values(updated_at=utcnow(), **values)
            ).rowcount

    @property
    def state(self) -> str:
        return self.row().state

    @state.setter
    def state(self, state: str) -> None:
        if state != HALF_OPEN:
            self._write(state=state, probe_owner=None, probe_started_at=None)
            return
        # Compare-and-set: only the call that flips an open breaker whose timeout has really elapsed (a
        # probe that just failed re-opened it) or takes over a probe whose owner vanished may probe.
        table = circuit_breakers
        now = utcnow()
        took = self._write(
            or_(
                and_(
                    table.c.state == OPEN,
                    or_(table.c.opened_at.is_(None), table.c.opened_at <= now - self._probe_lease),
                ),
                and_(table.c.state == HALF_OPEN, table.c.probe_started_at < now - self._probe_lease),
            ),
            state=HALF_OPEN,
            probe_owner=self.caller,
            probe_started_at=now,
        )
        if not took:
            raise ProbeInProgress("circuit half-open: another caller is probing the CRM")

    def probe_is_mine_or_stale(self) -> bool:
        """Whether this caller may act in half-open: it owns the probe, or the probe's owner vanished."""
        row = self.row()
        if row.state != HALF_OPEN or (self.caller is not None and row.probe_owner == self.caller):
            return True
        return row.probe_started_at is None or row.probe_started_at < utcnow() - self._probe_lease

    def increment_counter(self) -> None:
        self._write(fail_counter=circuit_breakers.c.fail_counter + 1)

    def reset_counter(self) -> None:
        # Every successful call lands here; skip the write when there is nothing to reset.
        if self.row().fail_counter:
            self._write(fail_counter=0)

    def increment_success_counter(self) -> None:
        self._write(success_counter=circuit_breakers.c.success_counter + 1)

    def reset_success_counter(self) -> None:
        self._write(success_counter=0)

    @property
    def counter(self) -> int:
        return int(self.row().fail_counter)

    @property
    def success_counter(self) -> int:
        return int(self.row().success_counter)

    @property
    def opened_at(self) -> datetime | None:
        return self.row().opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._write(opened_at=value)


class SharedCircuitBreaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker whose state lives in the database and whose half-open allows one probe."""

    def __init__(self, storage: DatabaseBreakerStorage, **kwargs: Any) -> None:
        super().__init__(state_storage=storage, name=storage.name, **kwargs)
        self.storage = storage

    @property
    def state(self) -> Any:
        """The local state object, brought in line with the stored state without resetting counters.

        pybreaker "enters" a state it notices late with notify=True, and entering closed resets the shared
        failure counter: a process that last saw the breaker open would wipe the failures others counted.
        """
        stored = self.current_state
        if stored != self._state.name:
            self._state = self._create_new_state(stored, prev_state=self._state, notify=False)
        return self._state

    @state.setter
    def state(self, state_str: str) -> None:
        pybreaker.CircuitBreaker.state.fset(self, state_str)  # type: ignore[attr-defined]

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run func under the breaker; unlike pybreaker's, no process-wide lock is held during the call."""
        with self.storage.guarded_call():
            if self.current_state == HALF_OPEN:
                if not self.storage.probe_is_mine_or_stale():
                    raise ProbeInProgress("circuit half-open: another caller is probing the CRM")
                if self.storage.row().probe_owner != self.storage.caller:
                    self.half_open()
            return self.state.call(func, *args, **kwargs)

    def snapshot(self) -> dict[str, Any]:
        """State, failure count and opening time, for health output and span attributes."""
        row = self.storage.row()
        return {
            "state": row.state,
            "fail_counter": int(row.fail_counter),
            "opened_at": row.opened_at.isoformat() if row.opened_at else None,
        }


def make_breaker(engine: Engine, *, name: str, fail_max: int, reset_timeout: float) -> SharedCircuitBreaker:
    """The breaker for one downstream service; 4xx, 429 and business errors do not count (D7)."""
    storage = DatabaseBreakerStorage(engine, name, probe_lease=reset_timeout)
    return SharedCircuitBreaker(
        storage,
        fail_max=fail_max,
        reset_timeout=reset_timeout,
        exclude=[lambda exc: not getattr(exc, "counts_as_outage", True)],
    )
