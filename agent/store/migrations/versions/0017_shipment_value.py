"""A shipment's value: ``shipment.value_usd`` (US dollars; NULL: not recorded).

A Data Center VEU's semi-annual report gives the value of the items of each export, reexport or transfer
(§ 748.15(f)(1)(i)(D)); the shipments export reads it from here. Existing shipments keep NULL: their value
was never recorded, which is not the same as zero.

Revision ID: 0017_shipment_value
Revises: 0011_reservation_expiry
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_shipment_value"
down_revision = "0011_reservation_expiry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("shipment", sa.Column("value_usd", sa.Float(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode rebuilt the table, and its DROP
    # TABLE failed ("FOREIGN KEY constraint failed") once a row of another table referred to one of its rows.
    op.drop_column("shipment", "value_usd")
