"""The application database: one SQLAlchemy Core schema for SQLite, PostgreSQL and Oracle (D11)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.dialects import oracle
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

from domain.customers import FIELD_LIMITS
from resources.telemetry import instrument_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes in and out, on every backend (D10).

    SQLite has no zone type and hands back naive values; Oracle's plain DATE drops fractions, so the
    column is a TIMESTAMP WITH TIME ZONE there.
    """

    impl = DateTime(timezone=True).with_variant(oracle.TIMESTAMP(timezone=True), "oracle")
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("crm_id", String(FIELD_LIMITS["crm_id"]), index=True),
    Column("email", String(FIELD_LIMITS["email"]), nullable=False),
    Column("email_normalized", String(FIELD_LIMITS["email"]), nullable=False, unique=True),
    Column("name", String(FIELD_LIMITS["name"])),
    Column("phone", String(FIELD_LIMITS["phone"])),
    Column("company", String(FIELD_LIMITS["company"])),
    Column("industry", String(FIELD_LIMITS["industry"])),
    Column("revenue", Float),
    Column("notes", Text),
    Column("crm_created_at", UTCDateTime),
    Column("crm_updated_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False, index=True),
    Column("last_synced_at", UTCDateTime, nullable=False),
)

customer_rejects = Table(
    "customer_rejects",
    metadata,
    Column("id", Integer, Identity(), primary_key=True),
    Column("reject_key", String(64), nullable=False, unique=True),
    Column("crm_id", String(FIELD_LIMITS["crm_id"]), index=True),
    Column("email", String(FIELD_LIMITS["email"])),
    Column("reason", Text, nullable=False),
    Column("record", Text, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("seen_count", Integer, nullable=False),
    Column("last_run_id", String(64)),
    Column("resolved_at", UTCDateTime),
)

sync_state = Table(
    "sync_state",
    metadata,
    Column("stream", String(64), primary_key=True),
    Column("cursor_offset", Integer, nullable=False),
    Column("last_attempt_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("last_run_id", String(64)),
    Column("last_fetched", Integer),
    Column("last_valid", Integer),
    Column("last_invalid", Integer),
    Column("last_inserted", Integer),
    Column("last_updated", Integer),
    Column("last_unchanged", Integer),
    Column("updated_at", UTCDateTime, nullable=False),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("stream", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("window_start", Integer),
    Column("next_cursor", Integer),
    Column("wrapped", Boolean),
    Column("fetched", Integer),
    Column("valid", Integer),
    Column("invalid", Integer),
    Column("inserted", Integer),
    Column("updated", Integer),
    Column("unchanged", Integer),
    Column("superseded", Integer),
    Column("crm_latency_ms", Float),
    Column("error", Text),
    Index("ix_sync_runs_stream_started", "stream", "started_at"),
)

circuit_breakers = Table(
    "circuit_breakers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("fail_counter", Integer, nullable=False),
    Column("success_counter", Integer, nullable=False),
    Column("opened_at", UTCDateTime),
    Column("probe_owner", String(64)),
    Column("probe_started_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
)


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while a sync writes; the busy timeout makes writers queue instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _oracle_session_utc(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("ALTER SESSION SET TIME_ZONE = 'UTC'")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the app database; SQLite files get WAL, a busy timeout and their folder created.

    Statement parameters are left out of error messages (they carry emails), and the engine gets database
    spans when telemetry is set up in this process.
    """
    engine = _create(url, **{"hide_parameters": True, **kwargs})
    instrument_engine(engine)
    return engine


def _create(url: str, **kwargs: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "oracle":
        engine = sqlalchemy.create_engine(url, pool_pre_ping=True, **kwargs)
        # Timestamps bound without a zone (the bulk upsert goes straight to the driver) must mean UTC.
        event.listen(engine, "connect", _oracle_session_utc)
        return engine
    if parsed.drivername == "postgresql":
        # psycopg 3 is the installed driver; say so rather than rely on the dialect's default.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return sqlalchemy.create_engine(url, pool_pre_ping=True, **kwargs)
