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
    with op.batch_alter_table("collector_run") as batch:
        batch.drop_column("reactivated")
