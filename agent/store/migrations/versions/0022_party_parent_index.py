"""An index on ``party.parent_id``: the corporate group's walk down from an ultimate parent probes it.

Red flag 28's customer-wide sum over a corporate group (``admission-settings.customer_aggregate_scope``) reads
every party under the customer's ultimate parent. Above ``VEU_CUSTOMER_SNAPSHOT_MAX`` parties (and with
``VEU_CUSTOMER_CACHE_SECONDS=0``) that is a recursive statement per customer and cache period whose every
level looked up children by ``parent_id``: without an index, a scan of the whole table per level (18 ms at
200,000 parties, 0.5 ms with it).

Revision ID: 0022_party_parent_index
Revises: 0020_party_ownership
"""

from __future__ import annotations

from alembic import op

revision = "0022_party_parent_index"
down_revision = "0020_party_ownership"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_party_parent_id", "party", ["parent_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_party_parent_id", table_name="party")
