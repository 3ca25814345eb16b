"""Namespace → customer mappings over time: ``party_namespace_period`` (one row per mapping and period).

An "as of DATE" review (``veuctl admission review --as-of``, the exports) asks whose jobs ran in a namespace on that
date. ``party_namespace`` keeps only the current mapping: a namespace moved from customer X to customer Y on day D
was read as Y's on every date, and a past decision re-evaluated named Y with Y's tier. Each mapping's periods are
now kept with ``valid_from`` and ``valid_to`` (NULL: still valid); ``party_namespace`` stays the current state the
admission path reads for today, and the periods are read only for dates before a mapping's latest change (see
``agent.directory``).

Backfill: one open period per existing mapping, valid from 0001-01-01, which means "always" (``ALWAYS``,
``datetime.date.min``). The store never recorded since when a mapping named its customer (``created_at`` is the
row's, and a reassignment kept it), and every decision so far was taken with today's mapping: dating the backfill
"always" keeps every existing decision, for every date, exactly as it was.

Rows are added and closed by ``agent.parties`` (registrations, reassignments, the namespace-label sync); triggers
bump ``change_marker('parties')`` on writes to the table, as 0010's do for ``party_namespace``, so a process's
directory snapshot (which holds each mapping's latest change) reloads after a write by any writer.

A new table on both stores (no batch rebuild: nothing existing is altered).

Revision ID: 0026_namespace_periods
Revises: 0023_ownership_date_index
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0026_namespace_periods"
down_revision = "0023_ownership_date_index"
branch_labels = None
depends_on = None

_INDEX = "ix_party_namespace_period_namespace_cluster"


def upgrade() -> None:
    op.create_table(
        "party_namespace_period",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("namespace", sqlmodel.sql.sqltypes.AutoString(length=253), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(["party_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(_INDEX, "party_namespace_period", ["namespace", "cluster"])
    op.execute("INSERT INTO party_namespace_period (cluster, namespace, party_id, source, valid_from, valid_to, "
               "recorded_at, recorded_by) SELECT cluster, namespace, party_id, source, '0001-01-01', NULL, "
               "created_at, 'migration 0026' FROM party_namespace")
    if op.get_bind().dialect.name == "postgresql":
        # veu_bump_parties() is 0010's function: the same marker as party and party_namespace.
        op.execute("CREATE TRIGGER party_namespace_period_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "
                   "party_namespace_period FOR EACH STATEMENT EXECUTE FUNCTION veu_bump_parties()")
    else:
        for ev in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER party_namespace_period_{ev.lower()}_changed AFTER {ev} ON "
                       "party_namespace_period BEGIN UPDATE change_marker SET n = n + 1 WHERE name = 'parties'; END")


def downgrade() -> None:
    # Dropping the table drops its triggers on both stores; party_namespace keeps the current mappings.
    op.drop_index(_INDEX, table_name="party_namespace_period")
    op.drop_table("party_namespace_period")
