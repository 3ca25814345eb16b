"""ledger: models, training runs, synthetic-data inputs, determinations, metered usage

Revision ID: 0002_ledger
Revises: 0001_core
"""
from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002_ledger"
down_revision = "0001_core"
branch_labels = ("ledger",)
depends_on = None

_dt = sqlmodel.sql.sqltypes.UTCDateTime
_s = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "ledger_model",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", _s(length=200), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("base_id", sa.Integer(), nullable=True),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("published_on", sa.Date(), nullable=True),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["base_id"], ["ledger_model.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_model", schema=None) as b:
        b.create_index(b.f("ix_ledger_model_name"), ["name"], unique=True)
        b.create_index(b.f("ix_ledger_model_owner_id"), ["owner_id"], unique=False)
        b.create_index(b.f("ix_ledger_model_base_id"), ["base_id"], unique=False)

    op.create_table(
        "ledger_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("operations", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("method", _s(length=40), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("site", _s(length=200), nullable=False),
        sa.Column("job_ref", _s(length=300), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("recorded_by", _s(length=200), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["ledger_model.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_run", schema=None) as b:
        b.create_index(b.f("ix_ledger_run_model_id"), ["model_id"], unique=False)
        b.create_index(b.f("ix_ledger_run_period_start"), ["period_start"], unique=False)
        b.create_index(b.f("ix_ledger_run_job_ref"), ["job_ref"], unique=False)

    op.create_table(
        "ledger_synthetic_input",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("generator_id", sa.Integer(), nullable=False),
        sa.Column("fraction", sa.Float(), nullable=False),
        sa.Column("generation_operations", sa.Float(), nullable=False),
        sa.Column("since", sa.Date(), nullable=True),
        sa.Column("recorded_by", _s(length=200), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["generator_id"], ["ledger_model.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["ledger_model.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "generator_id"),
    )
    with op.batch_alter_table("ledger_synthetic_input", schema=None) as b:
        b.create_index(b.f("ix_ledger_synthetic_input_model_id"), ["model_id"], unique=False)
        b.create_index(b.f("ix_ledger_synthetic_input_generator_id"), ["generator_id"], unique=False)

    op.create_table(
        "ledger_determination",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("less_capable", sa.Boolean(), nullable=False),
        sa.Column("determined_by", _s(length=200), nullable=False),
        sa.Column("determined_on", sa.Date(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("recorded_by", _s(length=200), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["ledger_model.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ledger_determination", schema=None) as b:
        b.create_index(b.f("ix_ledger_determination_model_id"), ["model_id"], unique=False)

    op.create_table(
        "metered_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("job_ref", _s(length=300), nullable=False),
        sa.Column("accelerator", _s(length=80), nullable=False),
        sa.Column("precision", _s(length=8), nullable=False),
        sa.Column("chip_seconds", sa.Float(), nullable=False),
        sa.Column("utilization", sa.Float(), nullable=False),
        sa.Column("operations", sa.Float(), nullable=False),
        sa.Column("operations_upper", sa.Float(), nullable=False),
        sa.Column("period_start", _dt(), nullable=False),
        sa.Column("period_end", _dt(), nullable=False),
        sa.Column("source", _s(length=40), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["party.id"]),
        sa.ForeignKeyConstraint(["model_id"], ["ledger_model.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job_ref", "accelerator", "period_start"),
    )
    with op.batch_alter_table("metered_usage", schema=None) as b:
        b.create_index(b.f("ix_metered_usage_customer_id"), ["customer_id"], unique=False)
        b.create_index(b.f("ix_metered_usage_model_id"), ["model_id"], unique=False)
        b.create_index(b.f("ix_metered_usage_job_ref"), ["job_ref"], unique=False)
        b.create_index(b.f("ix_metered_usage_period_start"), ["period_start"], unique=False)


def downgrade() -> None:
    op.drop_table("metered_usage")
    op.drop_table("ledger_determination")
    op.drop_table("ledger_synthetic_input")
    op.drop_table("ledger_run")
    op.drop_table("ledger_model")
