"""customers, rejects, sync state, sync runs, circuit breakers

Revision ID: 0001
Revises:
Create Date: 2026-12-03 17:18:01.130637
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import oracle

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Oracle DATE would drop fractions of a second and the zone (STACK-NOTES).
UTC_TIMESTAMP = sa.DateTime(timezone=True).with_variant(oracle.TIMESTAMP(timezone=True), "oracle")


def upgrade() -> None:
    op.create_table(
        "circuit_breakers",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fail_counter", sa.Integer(), nullable=False),
        sa.Column("success_counter", sa.Integer(), nullable=False),
        sa.Column("opened_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("probe_owner", sa.String(length=64), nullable=True),
        sa.Column("probe_started_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_circuit_breakers")),
    )
    op.create_table(
        "customer_rejects",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("reject_key", sa.String(length=64), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("last_seen_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", UTC_TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_rejects")),
        sa.UniqueConstraint("reject_key", name=op.f("uq_customer_rejects_reject_key")),
    )
    with op.batch_alter_table("customer_rejects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_rejects_crm_id"), ["crm_id"], unique=False)

    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_normalized", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("company", sa.String(length=255), nullable=True),
        sa.Column("industry", sa.String(length=128), nullable=True),
        sa.Column("revenue", sa.Float(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("crm_created_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("crm_updated_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("created_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("last_synced_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("email_normalized", name=op.f("uq_customers_email_normalized")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customers_crm_id"), ["crm_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_customers_updated_at"), ["updated_at"], unique=False)

    op.create_table(
        "sync_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTC_TIMESTAMP, nullable=False),
        sa.Column("finished_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("window_start", sa.Integer(), nullable=True),
        sa.Column("next_cursor", sa.Integer(), nullable=True),
        sa.Column("wrapped", sa.Boolean(), nullable=True),
        sa.Column("fetched", sa.Integer(), nullable=True),
        sa.Column("valid", sa.Integer(), nullable=True),
        sa.Column("invalid", sa.Integer(), nullable=True),
        sa.Column("inserted", sa.Integer(), nullable=True),
        sa.Column("updated", sa.Integer(), nullable=True),
        sa.Column("unchanged", sa.Integer(), nullable=True),
        sa.Column("crm_latency_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_sync_runs")),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index("ix_sync_runs_stream_started", ["stream", "started_at"], unique=False)

    op.create_table(
        "sync_state",
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("cursor_offset", sa.Integer(), nullable=False),
        sa.Column("last_attempt_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("last_success_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTC_TIMESTAMP, nullable=True),
        sa.Column("last_run_id", sa.String(length=64), nullable=True),
        sa.Column("last_fetched", sa.Integer(), nullable=True),
        sa.Column("last_valid", sa.Integer(), nullable=True),
        sa.Column("last_invalid", sa.Integer(), nullable=True),
        sa.Column("last_inserted", sa.Integer(), nullable=True),
        sa.Column("last_updated", sa.Integer(), nullable=True),
        sa.Column("last_unchanged", sa.Integer(), nullable=True),
        sa.Column("updated_at", UTC_TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_sync_state")),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_runs_stream_started")

    op.drop_table("sync_runs")
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_updated_at"))
        batch_op.drop_index(batch_op.f("ix_customers_crm_id"))

    op.drop_table("customers")
    with op.batch_alter_table("customer_rejects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_rejects_crm_id"))

    op.drop_table("customer_rejects")
    op.drop_table("circuit_breakers")
