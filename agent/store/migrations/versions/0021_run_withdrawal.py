"""A training run withdrawn as recorded in error: ``ledger_run.withdrawn_at``, ``withdrawn_by``, ``withdrawn_reason``.

An operator who typed ``--operations 1e30`` (an exponent too many) made the lineage 4E091 for good: every later
job of the customer's model was held at admission. ``veuctl models withdraw-run`` now withdraws such a run: the
row stays (the audit trail and the exports show it, marked withdrawn with the reason) and no total, status or
admission review counts it, for any date (a correction, not a change that took effect on a day). Existing runs
read NULL: none was withdrawn.

Revision ID: 0021_run_withdrawal
Revises: 0002_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0021_run_withdrawal"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: a plain ADD COLUMN on both stores, no table rebuild.
    op.add_column("ledger_run", sa.Column("withdrawn_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column("ledger_run", sa.Column("withdrawn_by", sqlmodel.sql.sqltypes.AutoString(length=200),
                                          nullable=True))
    op.add_column("ledger_run", sa.Column("withdrawn_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode rebuilt the table, and its DROP
    # TABLE failed ("FOREIGN KEY constraint failed") once a row of another table referred to one of its rows.
    for column in ("withdrawn_reason", "withdrawn_by", "withdrawn_at"):
        op.drop_column("ledger_run", column)
