"""A party's postal address: ``party.address`` (free text, '' when not recorded).

A Data Center VEU's semi-annual report names each end user to whom eligible items were exported, reexported
or transferred together with its address (§ 748.15(f)(1)(i)(A)); the shipments export reads it from here.
Existing parties get '' (no address recorded), which the export shows as an empty cell.

Revision ID: 0016_party_address
Revises: 0014_namespace_source
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016_party_address"
down_revision = "0014_namespace_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("party", sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False,
                                     server_default=""))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode would rebuild the table
    # and lose the change-marker triggers 0010 put on it.
    op.drop_column("party", "address")
