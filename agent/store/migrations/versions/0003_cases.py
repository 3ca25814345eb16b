"""Red-flag-28 admission decisions and inquiry cases.

Revision ID: 0003_cases
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003_cases"
down_revision = "0001_core"
branch_labels = ("cases",)
depends_on = None

S = sqlmodel.sql.sqltypes.AutoString
T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "redflag_case",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("customer_name", S(length=200), nullable=False),
        sa.Column("model_key", S(length=300), nullable=False),
        sa.Column("status", S(length=20), nullable=False),
        sa.Column("source", S(length=20), nullable=False),
        sa.Column("estimate_operations", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("jobs", sa.Text(), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=False),
        sa.Column("export_intent", sa.Boolean(), nullable=True),
        sa.Column("licence_number", S(length=100), nullable=False),
        sa.Column("licence_scope", S(length=500), nullable=False),
        sa.Column("customer_informed", sa.Boolean(), nullable=False),
        sa.Column("notes", S(length=2000), nullable=False),
        sa.Column("resolved_by", S(length=200), nullable=False),
        sa.Column("resolved_at", T(), nullable=True),
        sa.Column("expires_at", T(), nullable=True),
        sa.Column("opened_at", T(), nullable=False),
        sa.Column("updated_at", T(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_redflag_case_lookup", "redflag_case", ["customer_name", "model_key", "status"], unique=False)
    op.create_index(op.f("ix_redflag_case_customer_id"), "redflag_case", ["customer_id"], unique=False)
    op.create_index(op.f("ix_redflag_case_status"), "redflag_case", ["status"], unique=False)
    op.create_index(op.f("ix_redflag_case_opened_at"), "redflag_case", ["opened_at"], unique=False)
    op.create_table(
        "admission_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", S(length=100), nullable=False),
        sa.Column("decided_at", T(), nullable=False),
        sa.Column("as_of", S(length=10), nullable=False),
        sa.Column("namespace", S(length=253), nullable=False),
        sa.Column("kind", S(length=100), nullable=False),
        sa.Column("name", S(length=253), nullable=False),
        sa.Column("operation", S(length=20), nullable=False),
        sa.Column("job_ref", S(length=620), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("customer_name", S(length=200), nullable=False),
        sa.Column("model_key", S(length=300), nullable=False),
        sa.Column("code", S(length=40), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("mode", S(length=10), nullable=False),
        sa.Column("chips", sa.Float(), nullable=False),
        sa.Column("run_operations", sa.Float(), nullable=True),
        sa.Column("lineage_operations", sa.Float(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("pack_versions", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["party.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["redflag_case.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admission_decision_related", "admission_decision",
                    ["customer_name", "model_key", "decided_at"], unique=False)
    op.create_index(op.f("ix_admission_decision_decided_at"), "admission_decision", ["decided_at"], unique=False)
    op.create_index(op.f("ix_admission_decision_job_ref"), "admission_decision", ["job_ref"], unique=False)
    op.create_index(op.f("ix_admission_decision_code"), "admission_decision", ["code"], unique=False)
    op.create_index(op.f("ix_admission_decision_case_id"), "admission_decision", ["case_id"], unique=False)


def downgrade() -> None:
    op.drop_table("admission_decision")
    op.drop_table("redflag_case")
