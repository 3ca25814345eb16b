"""Each party's HQ and parent over time: ``party_ownership`` (one row per change, with the date it took effect).

An "as of DATE" question (an admission review, a party's tier, a cap) must see a customer that re-domiciled
or was acquired on date D with its earlier HQ and parent before D. ``party`` keeps the current state (the
admission path reads it as it did); ``party_ownership`` keeps every state with ``effective_from``, read only
for dates before a party's latest change (see ``agent.parties.ownership_as_of``).

Backfill: one row per existing party with its current HQ and parent, effective from 0001-01-01, which means
"always" (``agent.parties.ALWAYS``, ``datetime.date.min``). The store never recorded when a party got its HQ
or parent, and every decision so far was taken with today's; dating the backfill "always" keeps every
existing decision, for every date, exactly as it was (a backfill dated the upgrade day would be the same,
since a party's first row also applies before it, but would send every earlier date down the history path).

Rows are inserted (never updated) by ``agent.parties.add_party``; triggers bump ``change_marker('parties')``
on writes to the table, as 0010's do for ``party``, so a process's directory snapshot (which holds each
party's latest ``effective_from``) reloads after a history write by any writer.

Revision ID: 0020_party_ownership
Revises: 0016_party_address
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0020_party_ownership"
down_revision = "0016_party_address"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "party_ownership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("hq", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(["party_id"], ["party.id"]),
        sa.ForeignKeyConstraint(["parent_id"], ["party.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_party_ownership_party_id_effective_from", "party_ownership",
                    ["party_id", "effective_from"])
    op.execute("INSERT INTO party_ownership (party_id, hq, parent_id, effective_from, recorded_at, recorded_by) "
               "SELECT id, hq, parent_id, '0001-01-01', updated_at, 'migration 0020' FROM party")
    if op.get_bind().dialect.name == "postgresql":
        # veu_bump_parties() is 0010's function: the same marker as party and party_namespace.
        op.execute("CREATE TRIGGER party_ownership_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "
                   "party_ownership FOR EACH STATEMENT EXECUTE FUNCTION veu_bump_parties()")
    else:
        for ev in ("INSERT", "UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER party_ownership_{ev.lower()}_changed AFTER {ev} ON party_ownership BEGIN "
                       "UPDATE change_marker SET n = n + 1 WHERE name = 'parties'; END")


def downgrade() -> None:
    # Dropping the table drops its triggers on both stores; the party rows keep the current state.
    op.drop_index("ix_party_ownership_party_id_effective_from", table_name="party_ownership")
    op.drop_table("party_ownership")
