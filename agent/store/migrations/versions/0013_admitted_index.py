"""Admission reads the customer's admitted jobs from an index alone; a decision no longer locks its customer's row.

``ix_admission_decision_admitted``: the red-flag decision sums a customer's admitted jobs over the
customer-wide window (``customer_aggregate_window_days``) on every review of a Tier 2 customer. With only
``ix_admission_decision_related`` that was a bitmap scan visiting one heap page per decision of the
customer in the window, refused ones included: linear in the customer's history, and on a warm store of
~50 decisions a customer already the costliest statement of a review (~0.3 ms). This partial index holds
only admitted rows with an estimate and carries the columns the sum reads, so PostgreSQL answers it with an
index-only scan (0.04 ms). SQLite has no INCLUDE: the same key, partial, without the carried columns.
On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction (the migration runner
gives each migration its own transaction and lets one process migrate at a time): a plain build would hold
every decision insert for its duration, about a second per million decisions, while the running release's
pods keep answering reviews.

``admission_decision.customer_id`` loses its foreign key. A decision is an append-only record of what was
decided for whom (``customer_name`` is what it records; parties are never deleted), and the key's check took
a ``FOR KEY SHARE`` row lock on the customer's ``party`` row for every decision recorded: a WAL record and a
dirtied page per decision, 60 of the ~100 µs its insert cost, and a multixact whenever two replicas decided
for one customer at once.

Revision ID: 0013_admitted_index
Revises: 0003_cases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_admitted_index"
down_revision = "0003_cases"
branch_labels = None
depends_on = None

_WHERE = sa.text("allowed IS TRUE AND run_operations IS NOT NULL")
# SQLite's foreign keys have no name: batch mode reflects them under this convention to drop one.
_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    index = dict(unique=False, postgresql_include=["job_ref", "run_operations", "model_key"],
                 postgresql_where=_WHERE, sqlite_where=_WHERE)
    if pg:
        # Built CONCURRENTLY, outside the migration's transaction: a plain build would make every decision
        # insert wait for it (~1 s per million decisions), while pods of the running release keep answering.
        with op.get_context().autocommit_block():
            # A build that failed part way leaves an invalid index of that name behind: drop it, build anew.
            op.execute(sa.text(
                "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_index WHERE NOT indisvalid AND indexrelid = "
                "to_regclass('ix_admission_decision_admitted')) THEN DROP INDEX ix_admission_decision_admitted; "
                "END IF; END $$"))
            op.create_index("ix_admission_decision_admitted", "admission_decision", ["customer_name", "decided_at"],
                            postgresql_concurrently=True, if_not_exists=True, **index)
    else:
        op.create_index("ix_admission_decision_admitted", "admission_decision", ["customer_name", "decided_at"],
                        **index)
    if pg:
        op.drop_constraint("admission_decision_customer_id_fkey", "admission_decision", type_="foreignkey")
    else:
        with op.batch_alter_table("admission_decision", naming_convention=_NAMES) as batch:
            batch.drop_constraint("fk_admission_decision_customer_id_party", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key("admission_decision_customer_id_fkey", "admission_decision", "party",
                              ["customer_id"], ["id"])
    else:
        with op.batch_alter_table("admission_decision", naming_convention=_NAMES) as batch:
            batch.create_foreign_key("fk_admission_decision_customer_id_party", "party", ["customer_id"], ["id"])
    op.drop_index("ix_admission_decision_admitted", table_name="admission_decision")
