"""inventory: collector runs, collector errors, holding periods

Revision ID: 0004_inventory
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004_inventory"
down_revision = "0001_core"
branch_labels = ("inventory",)
depends_on = None

_dt = sqlmodel.sql.sqltypes.UTCDateTime
_s = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "collector_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", _s(length=40), nullable=False),
        sa.Column("started_at", _dt(), nullable=False),
        sa.Column("finished_at", _dt(), nullable=True),
        sa.Column("status", _s(length=20), nullable=False),
        sa.Column("observed", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("retired", sa.Integer(), nullable=False),
        sa.Column("scopes_ok", sa.Integer(), nullable=False),
        sa.Column("scopes_failed", sa.Integer(), nullable=False),
        sa.Column("host", _s(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("collector_run", schema=None) as b:
        b.create_index(b.f("ix_collector_run_source"), ["source"], unique=False)
        b.create_index(b.f("ix_collector_run_started_at"), ["started_at"], unique=False)
        b.create_index(b.f("ix_collector_run_status"), ["status"], unique=False)

    op.create_table(
        "collector_error",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("source", _s(length=40), nullable=False),
        sa.Column("scope", _s(length=200), nullable=False),
        sa.Column("message", _s(length=2000), nullable=False),
        sa.Column("at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["collector_run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("collector_error", schema=None) as b:
        b.create_index(b.f("ix_collector_error_run_id"), ["run_id"], unique=False)

    op.create_table(
        "holding_period",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("holding_id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("accelerator", _s(length=80), nullable=False),
        sa.Column("count", sa.Float(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("valid_from", _dt(), nullable=False),
        sa.Column("valid_to", _dt(), nullable=True),
        sa.ForeignKeyConstraint(["holding_id"], ["holding.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["party.id"]),
        sa.ForeignKeyConstraint(["operator_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("holding_period", schema=None) as b:
        b.create_index(b.f("ix_holding_period_holding_id"), ["holding_id"], unique=False)
        b.create_index(b.f("ix_holding_period_site_id"), ["site_id"], unique=False)
        b.create_index(b.f("ix_holding_period_valid_from"), ["valid_from"], unique=False)
        b.create_index(b.f("ix_holding_period_valid_to"), ["valid_to"], unique=False)


def downgrade() -> None:
    op.drop_table("holding_period")
    op.drop_table("collector_error")
    op.drop_table("collector_run")
