"""Writes and reads of the local customer table, the reject list and the per-stream sync state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    Engine,
    Insert,
    Integer,
    String,
    TextClause,
    bindparam,
    cast,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from domain.customers import TRACKED_FIELDS, Rejected
from resources.db import customer_rejects, customers, sync_runs, sync_state, utcnow

CUSTOMERS_STREAM = "customers"
DEFAULT_CHUNK_SIZE = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class UpsertCounts:
    """What one write did to the customer table."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    #: Stored rows removed because their CRM id now belongs to another email (the CRM changed it).
    superseded: int = 0


@dataclass(frozen=True)
class SyncState:
    """The stored progress and outcome of a stream's last syncs."""

    stream: str
    cursor_offset: int
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    last_run_id: str | None
    last_fetched: int | None
    last_valid: int | None
    last_invalid: int | None
    last_inserted: int | None
    last_updated: int | None
    last_unchanged: int | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view with ISO timestamps."""
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


def _chunks(items: Sequence[T], size: int = DEFAULT_CHUNK_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


_UPSERT_COLUMNS = ("email_normalized", *TRACKED_FIELDS, "created_at", "updated_at", "last_synced_at")
_UPDATE_ON_CONFLICT = (*TRACKED_FIELDS, "updated_at", "last_synced_at")
_TIMESTAMP_COLUMNS = frozenset(("crm_created_at", "crm_updated_at", "created_at", "updated_at", "last_synced_at"))


def upsert_statement(dialect_name: str) -> Insert | TextClause:
    """One statement that inserts a chunk of customers or updates them by normalized email (D2, D11)."""
    if dialect_name in ("sqlite", "postgresql"):
        module = sqlite if dialect_name == "sqlite" else postgresql
        stmt = module.insert(customers)
        return stmt.on_conflict_do_update(
            index_elements=[customers.c.email_normalized],
            set_={name: stmt.excluded[name] for name in _UPDATE_ON_CONFLICT},
        )
    if dialect_name == "oracle":
        return oracle_merge_statement()
    raise NotImplementedError(f"no customer upsert for database dialect {dialect_name!r}")


def oracle_merge_statement() -> TextClause:
    """Oracle has no ON CONFLICT and SQLAlchemy has no MERGE construct, so the MERGE is written out."""
    source = ", ".join(f":{name} AS {name}" for name in _UPSERT_COLUMNS)
    sets = ", ".join(f"t.{name} = s.{name}" for name in _UPDATE_ON_CONFLICT)
    cols = ", ".join(_UPSERT_COLUMNS)
    values = ", ".join(f"s.{name}" for name in _UPSERT_COLUMNS)
    sql = (
        # Identifiers come from our own table definition, values are bound parameters.
        f"MERGE INTO customers t USING (SELECT {source} FROM dual) s "  # noqa: S608
        "ON (t.email_normalized = s.email_normalized) "
        f"WHEN MATCHED THEN UPDATE SET {sets} "
        f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})"
    )
    return text(sql).bindparams(*(bindparam(name, type_=customers.c[name].type) for name in _UPSERT_COLUMNS))


@lru_cache(maxsize=65_536)
def _sqlite_timestamp(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime stores ("YYYY-MM-DD HH:MM:SS.ffffff"), so UTCDateTime reads it
    # back unchanged; isoformat is the fast way to write it. Cached: a sync stamps every row with one
    # instant, and CRM bulk writes give many customers the same update time.
    if value.utcoffset():
        value = value.astimezone(UTC)
    text_value = value.replace(tzinfo=None).isoformat(" ")
    return text_value if value.microsecond else text_value + ".000000"


@dataclass(frozen=True)
class BulkStatement:
    """A statement compiled once, then run for many rows straight through the DB driver.

    SQLAlchemy's per-value bind processing costs several times SQLite's own insert (bench/customer_sync.py);
    the values here are already clean Python objects, so only SQLite's timestamps need converting.
    """

    sql: str
    #: Parameter names in the order the driver takes them (positional), or the names to pass (named).
    names: tuple[str, ...]
    positional: bool
    #: Positions of timestamps to turn into SQLite's stored text; empty on other databases.
    stamp_positions: tuple[int, ...]

    @classmethod
    def compile(cls, statement: Insert | TextClause, dialect: Any) -> BulkStatement:
        """Compile `statement` for `dialect`, taking the customer columns as its parameters."""
        compiled = statement.compile(dialect=dialect, column_keys=list(_UPSERT_COLUMNS))
        names = tuple(compiled.positiontup or ()) if compiled.positional else _UPSERT_COLUMNS
        stamps = tuple(i for i, name in enumerate(names) if name in _TIMESTAMP_COLUMNS)
        return cls(str(compiled), names, compiled.positional, stamps if dialect.name == "sqlite" else ())

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement once per row, in one driver call."""
        if not self.positional:
            conn.exec_driver_sql(self.sql, [{name: row[name] for name in self.names} for row in rows])
            return
        values = itemgetter(*self.names)
        if not self.stamp_positions:
            conn.exec_driver_sql(self.sql, [values(row) for row in rows])
            return
        positions = self.stamp_positions
        conn.exec_driver_sql(self.sql, [_with_sqlite_stamps(values(row), positions) for row in rows])


def executemany(conn: Connection, statement: Insert | TextClause, rows: Sequence[dict[str, Any]]) -> None:
    """Run one statement for many rows straight through the DB driver (see BulkStatement)."""
    BulkStatement.compile(statement, conn.dialect).execute(conn, rows)


def _with_sqlite_stamps(values: tuple[Any, ...], positions: Sequence[int]) -> tuple[Any, ...]:
    """The values with the timestamps at `positions` turned into SQLite's stored text."""
    record = list(values)
    for position in positions:
        stamp = record[position]
        if stamp is not None:
            record[position] = _sqlite_timestamp(stamp)
    return tuple(record)


_fingerprint = itemgetter(*TRACKED_FIELDS)
_TRACKED_STAMP_POSITIONS = tuple(i for i, name in enumerate(TRACKED_FIELDS) if name in _TIMESTAMP_COLUMNS)


def _stored_form(dialect_name: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A row's tracked values in the form the stored-rows read returns them, for comparing the two."""
    if dialect_name != "sqlite":
        return _fingerprint
    # The read returns SQLite's timestamps as their stored text (see _chunk_statements).
    return lambda row: _with_sqlite_stamps(_fingerprint(row), _TRACKED_STAMP_POSITIONS)


# Expanding parameters: the statements compile once and the lists are bound as they are, instead of
# SQLAlchemy coercing every element of a 1,000-item IN list on every chunk.
_JSON_LIST_DIALECTS = frozenset({"sqlite", "postgresql"})


def _in_list(column: Any, name: str, dialect_name: str) -> Any:
    """`column IN (list)` with the list bound as one JSON parameter where the database can unpack it.

    An expanding IN renders one bind per element on every execution, which costs more than the query
    itself for 1,000-item lists; other databases keep it.
    """
    if dialect_name == "sqlite":
        values = func.json_each(bindparam(name, type_=String)).table_valued("value")
    elif dialect_name == "postgresql":
        values = func.json_array_elements_text(cast(bindparam(name, type_=String), JSON)).table_valued("value")
        if isinstance(column.type, Integer):
            # The elements come out as text, and PostgreSQL does not compare integers with text.
            return column.in_(select(cast(values.c.value, Integer)))
    else:
        return column.in_(bindparam(name, expanding=True))
    return column.in_(select(values.c.value))


def _list_param(dialect_name: str, values: Sequence[Any]) -> Any:
    return json.dumps(values) if dialect_name in _JSON_LIST_DIALECTS else values


@lru_cache(maxsize=8)
def _chunk_statements(dialect_name: str) -> tuple[Any, Any, Any]:
    """The per-chunk statements, built once per dialect: stored rows by email, then by CRM id, and the touch."""
    # SQLite's timestamps are read as the text they are stored as and compared as text (_stored_form):
    # converting two timestamps of every stored row cost more than reading the row.
    tracked = [
        type_coerce(customers.c[name], String).label(name)
        if dialect_name == "sqlite" and name in _TIMESTAMP_COLUMNS
        else customers.c[name]
        for name in TRACKED_FIELDS
    ]
    stored = select(customers.c.id, customers.c.crm_id, customers.c.email_normalized, *tracked)
    by_email = stored.where(_in_list(customers.c.email_normalized, "emails", dialect_name))
    by_crm_id = stored.where(_in_list(customers.c.crm_id, "crm_ids", dialect_name))
    # By primary key: cheaper than finding each row again through the email index.
    touch = (
        update(customers).where(_in_list(customers.c.id, "ids", dialect_name)).values(last_synced_at=bindparam("now"))
    )
    return by_email, by_crm_id, touch


def upsert_customers(
    conn: Connection,
    rows: Sequence[dict[str, Any]],
    *,
    now: datetime | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> UpsertCounts:
    """Insert new customers, update changed ones, and only touch last_synced_at on unchanged ones.

    Per chunk: one SELECT of the rows stored under the chunk's emails, one upsert statement, one UPDATE for
    the unchanged, and, only for CRM ids that arrive under an email not stored with them: one SELECT of the
    rows filed under those ids and, when one of those has another email, one DELETE of the row the
    customer's email change leaves behind.
    """
    now = now or utcnow()
    dialect_name = conn.dialect.name
    upsert = BulkStatement.compile(upsert_statement(dialect_name), conn.dialect)
    inserted = updated = unchanged = superseded = 0
    by_email, by_crm_id, touch = _chunk_statements(dialect_name)
    stored_form = _stored_form(dialect_name)
    # Every email of the batch: a row under one of them is rewritten by the upsert, never left behind.
    arriving: set[str] | None = None
    for chunk in _chunks(rows, chunk_size):
        emails = [row["email_normalized"] for row in chunk]
        stored = {found[2]: found for found in conn.execute(by_email, {"emails": _list_param(dialect_name, emails)})}
        writes: list[dict[str, Any]] = []
        same: list[int] = []
        # CRM id -> the email it arrives with, for ids not stored under that email (new, or the email changed).
        moved: dict[str, str] = {}
        for row in chunk:
            found = stored.get(row["email_normalized"])
            if found is None:
                inserted += 1
                moved[row["crm_id"]] = row["email_normalized"]
            elif found[3:] == stored_form(row):
                same.append(found[0])
                continue
            else:
                updated += 1
                if found[1] != row["crm_id"]:
                    moved[row["crm_id"]] = row["email_normalized"]
            writes.append({**row, "created_at": now, "updated_at": now, "last_synced_at": now})
        moved = {crm_id: email for crm_id, email in moved.items() if crm_id}  # no id, nothing to follow
        if moved:
            # Rows filed under one of those CRM ids with another email than the id arrives with: that
            # customer's email changed in the CRM, and the row under the old email must go, unless that
            # email arrives in this batch too, in any chunk (two customers swapped emails): then the upsert
            # rewrites it.
            filed = conn.execute(by_crm_id, {"crm_ids": _list_param(dialect_name, list(moved))}).all()
            if arriving is None:
                arriving = {row["email_normalized"] for row in rows}
            stale = [
                found[0]
                for found in filed
                if found[1] in moved and found[2] != moved[found[1]] and found[2] not in arriving
            ]
            if stale:
                conn.execute(customers.delete().where(customers.c.id.in_(stale)))
                superseded += len(stale)
        if writes:
            upsert.execute(conn, writes)
        if same:
            conn.execute(touch, {"ids": _list_param(dialect_name, same), "now": now})
            unchanged += len(same)
    return UpsertCounts(inserted, updated, unchanged, superseded)


def _reject_key(stream: str, rejected: Rejected) -> str:
    identity = rejected.crm_id or json.dumps(rejected.record, sort_keys=True, default=str)
    return hashlib.sha256(f"{stream}\0{identity}".encode()).hexdigest()


def record_rejects(
    conn: Connection,
    rejected: Sequence[Rejected],
    *,
    run_id: str | None,
    now: datetime | None = None,
    stream: str = CUSTOMERS_STREAM,
) -> None:
    """Keep every invalid CRM record with its reason; a record seen again updates its row."""
    if not rejected:
        return
    now = now or utcnow()
    by_key: dict[str, dict[str, Any]] = {}
    for item in rejected:
        key = _reject_key(stream, item)
        by_key[key] = {
            "reject_key": key,
            "crm_id": (item.crm_id or "")[:64] or None,
            "email": (item.email or "")[:320] or None,
            "reason": item.reason,
            "record": json.dumps(item.record, sort_keys=True, default=str),
        }
    table = customer_rejects
    seen: set[str] = set()
    for keys in _chunks(list(by_key)):
        seen.update(conn.execute(select(table.c.reject_key).where(table.c.reject_key.in_(keys))).scalars())
    new = [
        {**values, "first_seen_at": now, "last_seen_at": now, "seen_count": 1, "last_run_id": run_id}
        for key, values in by_key.items()
        if key not in seen
    ]
    if new:
        conn.execute(insert(table), new)
    if seen:
        # One statement for every record seen before, run for each of them by the driver.
        again = [{"key": key, "new_reason": by_key[key]["reason"], "new_record": by_key[key]["record"]} for key in seen]
        conn.execute(_seen_again_statement(), [{**values, "now": now, "run_id": run_id} for values in again])


@lru_cache(maxsize=1)
def _seen_again_statement() -> Any:
    table = customer_rejects
    return (
        update(table)
        .where(table.c.reject_key == bindparam("key"))
        .values(
            reason=bindparam("new_reason"),
            record=bindparam("new_record"),
            last_seen_at=bindparam("now", type_=table.c.last_seen_at.type),
            last_run_id=bindparam("run_id"),
            seen_count=table.c.seen_count + 1,
            resolved_at=None,
        )
    )


def resolve_rejects(conn: Connection, crm_ids: Sequence[str], *, now: datetime | None = None) -> None:
    """Mark open rejects resolved once the same CRM record arrives valid."""
    ids = [crm_id for crm_id in crm_ids if crm_id]
    table = customer_rejects
    if not ids or conn.execute(select(table.c.id).where(table.c.resolved_at.is_(None)).limit(1)).first() is None:
        return
    for chunk in _chunks(ids):
        conn.execute(
            update(table)
            .where(table.c.crm_id.in_(chunk), table.c.resolved_at.is_(None))
            .values(resolved_at=now or utcnow())
        )


def get_sync_state(conn: Connection, stream: str = CUSTOMERS_STREAM) -> SyncState:
    """The stream's stored state; a stream never synced starts at offset 0."""
    row = conn.execute(select(sync_state).where(sync_state.c.stream == stream)).mappings().first()
    if row is None:
        return SyncState(stream, 0, *([None] * 11))
    return SyncState(**{name: row[name] for name in SyncState.__dataclass_fields__})


def _save_state(conn: Connection, stream: str, values: dict[str, Any]) -> None:
    values = {**values, "updated_at": utcnow()}
    changed = conn.execute(update(sync_state).where(sync_state.c.stream == stream).values(**values)).rowcount
    if not changed:
        conn.execute(insert(sync_state).values(**{"stream": stream, "cursor_offset": 0, **values}))


def record_sync_success(
    conn: Connection,
    *,
    stream: str,
    run_id: str | None,
    cursor_offset: int,
    expected_cursor: int | None = None,
    fetched: int,
    valid: int,
    invalid: int,
    counts: UpsertCounts,
    now: datetime | None = None,
) -> None:
    """Store a successful sync's counts and move the cursor, in the caller's transaction.

    With `expected_cursor` the cursor moves only if no other sync moved it since this one read it
    (compare-and-set), so two overlapping syncs cannot send the rotation backwards.
    """
    now = now or utcnow()
    _save_state(
        conn,
        stream,
        {
            "last_attempt_at": now,
            "last_success_at": now,
            "last_error": None,
            "last_run_id": run_id,
            "last_fetched": fetched,
            "last_valid": valid,
            "last_invalid": invalid,
            "last_inserted": counts.inserted,
            "last_updated": counts.updated,
            "last_unchanged": counts.unchanged,
        },
    )
    query = update(sync_state).where(sync_state.c.stream == stream)
    if expected_cursor is not None:
        query = query.where(sync_state.c.cursor_offset == expected_cursor)
    conn.execute(query.values(cursor_offset=cursor_offset))


def record_sync_failure(engine: Engine, *, stream: str, run_id: str | None, error: str) -> None:
    """Store why a sync failed; the cursor and the last success stay as they were."""
    now = utcnow()
    with engine.begin() as conn:
        _save_state(
            conn,
            stream,
            {"last_attempt_at": now, "last_error": error[:4000], "last_error_at": now, "last_run_id": run_id},
        )


def start_sync_run(engine: Engine, *, run_id: str, stream: str, mode: str) -> None:
    """Register a run so the API can report on it; a re-executed run id starts over."""
    with engine.begin() as conn:
        conn.execute(sync_runs.delete().where(sync_runs.c.run_id == run_id))
        conn.execute(
            insert(sync_runs).values(run_id=run_id, stream=stream, mode=mode, status="started", started_at=utcnow())
        )


def register_queued_run(engine: Engine, *, run_id: str, stream: str, mode: str) -> None:
    """Note a run the API just submitted, unless the run already registered itself."""
    try:
        with engine.begin() as conn:
            if conn.execute(select(sync_runs.c.run_id).where(sync_runs.c.run_id == run_id)).first() is None:
                conn.execute(
                    insert(sync_runs).values(
                        run_id=run_id, stream=stream, mode=mode, status="queued", started_at=utcnow()
                    )
                )
    except IntegrityError:
        pass  # the run registered itself in between


def run_in_flight(conn: Connection, *, stream: str, max_age: float) -> str | None:
    """The id of a queued or running sync of the stream younger than max_age seconds, if any."""
    since = utcnow() - timedelta(seconds=max_age)
    query = (
        select(sync_runs.c.run_id)
        .where(sync_runs.c.stream == stream, sync_runs.c.status.in_(("queued", "started")))
        .where(sync_runs.c.started_at >= since)
        .order_by(sync_runs.c.started_at.desc())
        .limit(1)
    )
    return conn.execute(query).scalar()


def finish_sync_run(conn: Connection, *, run_id: str, status: str, **values: Any) -> None:
    """Record a run's outcome and counts."""
    conn.execute(
        update(sync_runs).where(sync_runs.c.run_id == run_id).values(status=status, finished_at=utcnow(), **values)
    )


def get_sync_run(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """One run's recorded outcome, or None."""
    row = conn.execute(select(sync_runs).where(sync_runs.c.run_id == run_id)).mappings().first()
    return dict(row) if row else None


def list_customers(conn: Connection, limit: int) -> list[dict[str, Any]]:
    """The most recently updated local customers first."""
    query = select(customers).order_by(customers.c.updated_at.desc(), customers.c.id.desc()).limit(limit)
    return [dict(row) for row in conn.execute(query).mappings()]


def duplicate_crm_ids(conn: Connection) -> list[str]:
    """CRM ids stored on more than one row (a missed email change would leave one behind)."""
    key = customers.c.crm_id
    query = select(key).where(key.is_not(None)).group_by(key).having(func.count() > 1).limit(20)
    return list(conn.execute(query).scalars())


def duplicate_emails(conn: Connection) -> list[str]:
    """Normalized emails stored more than once (the unique index should make this empty)."""
    key = customers.c.email_normalized
    query = select(key).group_by(key).having(func.count() > 1).limit(20)
    return list(conn.execute(query).scalars())
