"""Where a namespace mapping came from: ``party_namespace.source`` (``registry`` or ``label``).

``registry`` mappings are the operator's (``veuctl parties add NAME --namespace NS``, the API); ``label``
mappings are kept in step with a namespace label (``compute.veu-governor.io/customer`` by default) by the
agent's namespace sync (``controllers.namespaces``). The sync adds, changes and removes only its own rows, so
a label can never displace what an operator registered. Existing rows are the operator's.

Revision ID: 0014_namespace_source
Revises: 0010_directory
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_namespace_source"
down_revision = "0010_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("party_namespace", sa.Column("source", sa.String(length=20), nullable=False,
                                               server_default="registry"))


def downgrade() -> None:
    # A plain DROP COLUMN on both stores (SQLite has it since 3.35): batch mode would rebuild the table
    # and lose the change-marker triggers 0010 put on it. Label mappings become plain mappings.
    op.drop_column("party_namespace", "source")
