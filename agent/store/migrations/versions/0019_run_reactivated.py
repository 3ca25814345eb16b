"""Holdings a collector run brought back after a retirement: ``collector_run.reactivated``.

They were counted in ``added``, while the sync's own summary lists them apart. Earlier runs keep their
count in ``added`` and read 0 here.

Revision ID: 0019_run_reactivated
Revises: 0018_holding_instance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_run_reactivated"
down_revision = "0018_holding_instance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("collector_run", sa.Column("reactivated", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode rebuilt the table, and its DROP
    # TABLE failed ("FOREIGN KEY constraint failed") once a row of another table referred to one of its rows.
    op.drop_column("collector_run", "reactivated")
