"""Change marker for the admission path's directory snapshot (``agent.directory``).

``change_marker('parties')`` counts changes to ``party`` and ``party_namespace``: triggers bump it on every
insert, update and delete (and TRUNCATE on PostgreSQL), whoever writes, so a webhook process that holds
the namespace → customer directory in memory reloads it after any change instead of querying per review.

Revision ID: 0010_directory
Revises: 0001_core
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_directory"
down_revision = "0001_core"
branch_labels = ("directory",)
depends_on = None

_TABLES = ("party", "party_namespace")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION veu_bump_parties() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE change_marker SET n = n + 1 WHERE name = 'parties';
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "change_marker",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute("INSERT INTO change_marker (name, n) VALUES ('parties', 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        for t in _TABLES:
            op.execute(f"CREATE TRIGGER {t}_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION veu_bump_parties()")
    else:
        # SQLite has row triggers only: one per table and event.
        for t in _TABLES:
            for ev in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {t}_{ev.lower()}_changed AFTER {ev} ON {t} BEGIN "
                           "UPDATE change_marker SET n = n + 1 WHERE name = 'parties'; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_changed ON {t}")
        op.execute("DROP FUNCTION IF EXISTS veu_bump_parties()")
    else:
        for t in _TABLES:
            for ev in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {t}_{ev}_changed")
    op.drop_table("change_marker")
