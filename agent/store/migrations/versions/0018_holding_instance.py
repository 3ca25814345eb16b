"""The cloud VM behind a holding: ``holding.instance`` (``aws:i-…``, ``gcp:PROJECT/ZONE/NAME``; "" if none).

A Kubernetes node on an EC2 or Compute Engine VM is also an instance the ``aws``/``gcp`` collector lists.
With the VM named on both holdings, the sync keeps one: the cloud collector's. Existing holdings start with
"" and get their VM on their source's next sync.

Revision ID: 0018_holding_instance
Revises: 0004_inventory
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_holding_instance"
down_revision = "0004_inventory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("holding", sa.Column("instance", sa.String(length=300), nullable=False, server_default=""))
    op.create_index("ix_holding_instance", "holding", ["instance"])


def downgrade() -> None:
    op.drop_index("ix_holding_instance", table_name="holding")
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode rebuilt the table, and its DROP
    # TABLE failed ("FOREIGN KEY constraint failed") once a row of another table referred to one of its rows.
    op.drop_column("holding", "instance")  # its index is gone: SQLite can drop it
