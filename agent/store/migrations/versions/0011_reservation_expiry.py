"""Reservations can expire: ``reservation.expires_on`` (NULL: held until released or installed).

Revision ID: 0011_reservation_expiry
Revises: 0005_caps
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_reservation_expiry"
down_revision = "0005_caps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("reservation", sa.Column("expires_on", sa.Date(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode rebuilt the table, and its DROP
    # TABLE failed ("FOREIGN KEY constraint failed") once a row of another table referred to one of its rows.
    op.drop_column("reservation", "expires_on")
