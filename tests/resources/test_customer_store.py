"""The customer table, rejects and sync state on real SQLite and PostgreSQL; Oracle SQL compiled."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, inspect, select
from sqlalchemy.dialects import oracle, sqlite

from domain.customers import Rejected, validate_customers
from resources.crm_factory import shared_engine
from resources.customer_store import (
    BulkStatement,
    UpsertCounts,
    duplicate_crm_ids,
    get_sync_state,
    oracle_merge_statement,
    record_rejects,
    record_sync_success,
    resolve_rejects,
    upsert_customers,
    upsert_statement,
)
from resources.db import customer_rejects, customers
from resources.migrations import alembic_config

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _rows(n: int, **changes: object) -> list[dict]:
    records = [
        {
            "id": i,
            "name": f"Customer {i}",
            "email": f"Person{i}@Example.com",
            "revenue": float(i),
            "updated_at": "2026-12-01T10:00:00",
            **changes,
        }
        for i in range(1, n + 1)
    ]
    return validate_customers(records).rows


def test_upsert_inserts_then_is_idempotent_then_updates_only_changes(db_url: str) -> None:
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        assert upsert_customers(conn, _rows(2500), now=T0, chunk_size=1000) == UpsertCounts(2500, 0, 0)
    with engine.begin() as conn:
        assert upsert_customers(conn, _rows(2500), now=T0 + timedelta(minutes=5)) == UpsertCounts(0, 0, 2500)
    changed = _rows(2500)
    changed[10]["name"] = "Renamed"
    changed[20]["revenue"] = None
    with engine.begin() as conn:
        counts = upsert_customers(conn, changed, now=T0 + timedelta(minutes=10))
    assert counts == UpsertCounts(0, 2, 2498)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(customers)).scalar_one() == 2500
        renamed = conn.execute(select(customers).where(customers.c.crm_id == "11")).mappings().one()
        untouched = conn.execute(select(customers).where(customers.c.crm_id == "12")).mappings().one()
        nulled = conn.execute(select(customers.c.revenue).where(customers.c.crm_id == "21")).scalar_one()
    assert renamed["name"] == "Renamed"
    assert renamed["email_normalized"] == "person11@example.com"
    assert renamed["email"] == "Person11@Example.com"
    assert renamed["created_at"] == T0
    assert renamed["updated_at"] == T0 + timedelta(minutes=10)
    assert untouched["updated_at"] == T0
    assert untouched["last_synced_at"] == T0 + timedelta(minutes=10)
    assert untouched["crm_updated_at"] == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert nulled is None


def test_crm_timestamps_in_any_zone_or_without_fractions_compare_unchanged(db_url: str) -> None:
    # SQLite's stored timestamps are compared as text: whole seconds and other zones must still match.
    stamps = ["2026-12-01T10:00:00", "2026-12-01T12:00:00+02:00", "2026-12-01T10:00:00.000001Z", ""]
    records = [
        {"id": i, "email": f"p{i}@x.io", "updated_at": stamp, "created_at": stamp} for i, stamp in enumerate(stamps)
    ]
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        assert upsert_customers(conn, validate_customers(records).rows, now=T0) == UpsertCounts(4, 0, 0)
    with engine.begin() as conn:
        again = upsert_customers(conn, validate_customers(records).rows, now=T0 + timedelta(minutes=5))
    assert again == UpsertCounts(0, 0, 4)
    records[1]["updated_at"] = "2026-12-01T12:00:01+02:00"
    with engine.begin() as conn:
        changed = upsert_customers(conn, validate_customers(records).rows, now=T0 + timedelta(minutes=10))
    assert changed == UpsertCounts(0, 1, 3)
    with engine.connect() as conn:
        stored = conn.execute(select(customers.c.crm_id, customers.c.crm_updated_at).order_by(customers.c.crm_id)).all()
    assert stored == [
        ("0", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ("1", datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC)),
        ("2", datetime(2026, 12, 1, 10, 0, 0, 1, tzinfo=UTC)),
        ("3", None),
    ]


def test_email_case_change_in_the_crm_updates_the_same_row(db_url: str) -> None:
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        upsert_customers(conn, _rows(1), now=T0)
    with engine.begin() as conn:
        counts = upsert_customers(conn, _rows(1, email=" PERSON1@example.COM "), now=T0)
    assert counts == UpsertCounts(0, 1, 0)
    with engine.connect() as conn:
        assert conn.execute(select(customers.c.email)).scalars().all() == ["PERSON1@example.COM"]


def test_rejects_are_kept_counted_and_resolved(db_url: str) -> None:
    engine = shared_engine(db_url)
    bad = [Rejected({"id": 5, "email": "nope"}, "email_normalized is not a valid email address", "5", "nope")]
    with engine.begin() as conn:
        record_rejects(conn, bad, run_id="r1", now=T0)
    with engine.begin() as conn:
        record_rejects(conn, bad, run_id="r2", now=T0 + timedelta(minutes=5))
    with engine.begin() as conn:
        resolve_rejects(conn, ["5"], now=T0 + timedelta(minutes=10))
    with engine.connect() as conn:
        row = conn.execute(select(customer_rejects)).mappings().one()
    assert row["seen_count"] == 2
    assert row["last_run_id"] == "r2"
    assert row["first_seen_at"] == T0
    assert row["resolved_at"] == T0 + timedelta(minutes=10)
    assert '"email": "nope"' in row["record"]


def test_many_rejects_seen_again_are_updated_together_and_reopened(db_url: str) -> None:
    engine = shared_engine(db_url)
    first = [Rejected({"id": i, "email": "x"}, "bad", str(i), "x") for i in range(1200)]
    with engine.begin() as conn:
        record_rejects(conn, first, run_id="r1", now=T0)
    with engine.begin() as conn:
        resolve_rejects(conn, ["3"], now=T0 + timedelta(minutes=1))
    again = [Rejected({"id": i, "email": "y"}, "worse", str(i), "y") for i in range(1000, 2500)]
    with engine.begin() as conn:
        record_rejects(conn, [*again, first[3]], run_id="r2", now=T0 + timedelta(minutes=5))
    with engine.connect() as conn:
        rows = {row.crm_id: row for row in conn.execute(select(customer_rejects))}
    assert len(rows) == 2500
    seen_twice = rows["1100"]
    assert (seen_twice.seen_count, seen_twice.reason, seen_twice.last_run_id) == (2, "worse", "r2")
    assert (seen_twice.first_seen_at, seen_twice.last_seen_at) == (T0, T0 + timedelta(minutes=5))
    assert '"email": "y"' in seen_twice.record
    assert (rows["5"].seen_count, rows["5"].reason, rows["5"].last_run_id) == (1, "bad", "r1")
    assert (rows["2400"].seen_count, rows["2400"].first_seen_at) == (1, T0 + timedelta(minutes=5))
    assert (rows["3"].seen_count, rows["3"].resolved_at) == (2, None)


def test_unsynced_stream_starts_at_offset_zero(db_url: str) -> None:
    with shared_engine(db_url).connect() as conn:
        state = get_sync_state(conn)
    assert (state.cursor_offset, state.last_success_at, state.last_error) == (0, None, None)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    with shared_engine(sqlite_url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_migrations_match_the_table_definitions(db_url: str) -> None:
    command.check(alembic_config(db_url))
    names = set(inspect(shared_engine(db_url)).get_table_names())
    assert {"customers", "customer_rejects", "sync_state", "sync_runs", "circuit_breakers"} <= names


def test_oracle_upsert_is_one_merge_keyed_by_normalized_email() -> None:
    sql = str(oracle_merge_statement().compile(dialect=oracle.dialect()))
    assert sql.startswith("MERGE INTO customers t USING (SELECT :email_normalized AS email_normalized")
    assert "FROM dual) s ON (t.email_normalized = s.email_normalized)" in sql
    assert "WHEN MATCHED THEN UPDATE SET t.crm_id = s.crm_id" in sql
    assert "t.created_at" not in sql.split("WHEN NOT MATCHED")[0]
    assert "WHEN NOT MATCHED THEN INSERT (email_normalized, crm_id" in sql


def test_bulk_upserts_compile_once_in_each_drivers_parameter_style() -> None:
    merge = BulkStatement.compile(oracle_merge_statement(), oracle.dialect())
    assert merge.sql.startswith("MERGE INTO customers t USING (SELECT :email_normalized AS email_normalized")
    assert not merge.positional and merge.stamp_positions == ()
    assert set(merge.names) == {column.name for column in customers.columns} - {"id"}
    upsert = BulkStatement.compile(upsert_statement("sqlite"), sqlite.dialect())
    assert "ON CONFLICT (email_normalized) DO UPDATE" in upsert.sql
    assert upsert.positional and upsert.sql.count("?") == len(upsert.names) == len(customers.columns) - 1
    stamped = [upsert.names[i] for i in upsert.stamp_positions]
    assert stamped == ["crm_created_at", "crm_updated_at", "created_at", "updated_at", "last_synced_at"]


def test_oracle_ddl_uses_identity_and_zoned_timestamps() -> None:
    buffer = io.StringIO()
    config = alembic_config("oracle+oracledb://user:pw@localhost/db")
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    ddl = buffer.getvalue()
    assert "CREATE TABLE customers" in ddl
    assert "id INTEGER GENERATED BY DEFAULT AS IDENTITY" in ddl
    assert "updated_at TIMESTAMP WITH TIME ZONE NOT NULL" in ddl
    assert "CONSTRAINT uq_customers_email_normalized UNIQUE (email_normalized)" in ddl
    assert "email_normalized VARCHAR2(320 CHAR) NOT NULL" in ddl


def test_a_crm_email_change_moves_the_customer_instead_of_leaving_a_ghost(db_url: str) -> None:
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        upsert_customers(conn, _rows(3), now=T0)
    changed = _rows(3)
    changed[1] = validate_customers([{"id": 2, "name": "Customer 2", "email": "renamed@example.com"}]).rows[0]
    with engine.begin() as conn:
        counts = upsert_customers(conn, changed, now=T0 + timedelta(minutes=5))
    assert counts == UpsertCounts(inserted=1, updated=0, unchanged=2, superseded=1)
    with engine.connect() as conn:
        rows = conn.execute(select(customers.c.crm_id, customers.c.email_normalized).order_by(customers.c.crm_id)).all()
    assert rows == [("1", "person1@example.com"), ("2", "renamed@example.com"), ("3", "person3@example.com")]


@pytest.mark.parametrize("chunk_size", [1000, 1], ids=["one chunk", "across chunks"])
def test_two_customers_swapping_emails_keep_their_rows(db_url: str, chunk_size: int) -> None:
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        upsert_customers(conn, _rows(3), now=T0)
        before = dict(conn.execute(select(customers.c.email_normalized, customers.c.id)).all())
    swapped = validate_customers(
        [
            {"id": 1, "name": "Customer 1", "email": "Person2@Example.com", "revenue": 1.0},
            {"id": 2, "name": "Customer 2", "email": "Person1@Example.com", "revenue": 2.0},
        ]
    ).rows
    with engine.begin() as conn:
        counts = upsert_customers(conn, swapped, now=T0 + timedelta(minutes=5), chunk_size=chunk_size)
    assert counts == UpsertCounts(inserted=0, updated=2, unchanged=0, superseded=0)
    with engine.connect() as conn:
        rows = conn.execute(select(customers.c.email_normalized, customers.c.id, customers.c.crm_id)).all()
    # Identity is the email (D2): each email keeps its local row and now carries the other CRM id.
    assert sorted(rows) == [
        ("person1@example.com", before["person1@example.com"], "2"),
        ("person2@example.com", before["person2@example.com"], "1"),
        ("person3@example.com", before["person3@example.com"], "3"),
    ]


@pytest.mark.parametrize("chunk_size", [1000, 1], ids=["one chunk", "across chunks"])
def test_one_crm_id_under_two_emails_in_a_window_keeps_both_rows_for_the_check(db_url: str, chunk_size: int) -> None:
    # The CRM changed customer 1's email while we paged: both emails arrive. Neither row may be deleted
    # after being counted, wherever the chunk boundary falls; the duplicate-CRM-id asset check names it.
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        upsert_customers(conn, validate_customers([{"id": 1, "email": "a@example.com"}]).rows, now=T0)
    both = validate_customers([{"id": 1, "email": "a@example.com"}, {"id": 1, "email": "c@example.com"}]).rows
    with engine.begin() as conn:
        counts = upsert_customers(conn, both, now=T0 + timedelta(minutes=5), chunk_size=chunk_size)
        assert counts == UpsertCounts(inserted=1, updated=0, unchanged=1, superseded=0)
        assert duplicate_crm_ids(conn) == ["1"]
    with engine.connect() as conn:
        emails = conn.execute(select(customers.c.email_normalized).order_by(customers.c.email_normalized)).scalars()
        assert list(emails) == ["a@example.com", "c@example.com"]


def test_customers_without_a_crm_id_never_supersede_each_other(db_url: str) -> None:
    engine = shared_engine(db_url)
    first = validate_customers([{"email": "a@example.com"}, {"email": "b@example.com"}]).rows
    assert [row["crm_id"] for row in first] == [None, None]
    # Rows handed in directly may carry '' where the CRM gave no id: that is no id either.
    blank = [
        {**row, "crm_id": ""}
        for row in validate_customers([{"email": "c@example.com"}, {"email": "d@example.com"}]).rows
    ]
    with engine.begin() as conn:
        assert upsert_customers(conn, first, now=T0) == UpsertCounts(inserted=2, updated=0, unchanged=0)
        assert upsert_customers(conn, blank[:1], now=T0) == UpsertCounts(inserted=1, updated=0, unchanged=0)
        assert upsert_customers(conn, blank[1:], now=T0) == UpsertCounts(inserted=1, updated=0, unchanged=0)
    with engine.connect() as conn:
        emails = conn.execute(select(customers.c.email_normalized).order_by(customers.c.email_normalized)).scalars()
        assert list(emails) == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]


def test_the_cursor_moves_only_if_no_other_sync_moved_it(db_url: str) -> None:
    engine = shared_engine(db_url)
    with engine.begin() as conn:
        record_sync_success(
            conn,
            stream="customers",
            run_id="a",
            cursor_offset=500,
            expected_cursor=0,
            fetched=500,
            valid=500,
            invalid=0,
            counts=UpsertCounts(500),
        )
    with engine.begin() as conn:
        # A slower sync that also started at 0 finishes second: its counts are recorded, the cursor stays.
        record_sync_success(
            conn,
            stream="customers",
            run_id="b",
            cursor_offset=300,
            expected_cursor=0,
            fetched=500,
            valid=500,
            invalid=0,
            counts=UpsertCounts(0, 0, 500),
        )
    with engine.connect() as conn:
        state = get_sync_state(conn)
    assert (state.cursor_offset, state.last_run_id, state.last_unchanged) == (500, "b", 500)


def test_oracle_sessions_are_set_to_utc() -> None:
    from sqlalchemy import event

    from resources.db import _oracle_session_utc, make_engine

    engine = make_engine("oracle+oracledb://user:pw@127.0.0.1:1/db")
    assert event.contains(engine, "connect", _oracle_session_utc)


def test_two_crm_customers_swapping_emails_stay_two_rows(db_url: str) -> None:
    engine = shared_engine(db_url)
    first = validate_customers(
        [{"id": 1, "email": "a@example.com", "name": "A"}, {"id": 2, "email": "b@example.com", "name": "B"}]
    ).rows
    swapped = validate_customers(
        [{"id": 1, "email": "b@example.com", "name": "A"}, {"id": 2, "email": "c@example.com", "name": "B"}]
    ).rows
    with engine.begin() as conn:
        upsert_customers(conn, first, now=T0)
    with engine.begin() as conn:
        upsert_customers(conn, swapped, now=T0 + timedelta(minutes=5))
    with engine.connect() as conn:
        rows = conn.execute(select(customers.c.crm_id, customers.c.email_normalized).order_by(customers.c.crm_id)).all()
    assert rows == [("1", "b@example.com"), ("2", "c@example.com")]
