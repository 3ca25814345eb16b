"""An index on ``party_ownership.effective_from``: whether any ownership changed after a review's date.

A corporate group read for a past date (``veuctl admission review --as-of``) reads the directory as of that
date when some party's HQ or parent changed after it, since that party may have joined or left the group
since. Above ``VEU_CUSTOMER_SNAPSHOT_MAX`` parties that question is a statement per customer and cache
period, answered from this index instead of a scan of the whole history.

Revision ID: 0023_ownership_date_index
Revises: 0022_party_parent_index
"""

from __future__ import annotations

from alembic import op

revision = "0023_ownership_date_index"
down_revision = "0022_party_parent_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_party_ownership_effective_from", "party_ownership", ["effective_from"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_party_ownership_effective_from", table_name="party_ownership")
