"""``ledger_run.job_ref`` and ``metered_usage.job_ref`` hold any job reference Kubernetes names allow.

A job reference is ``NAMESPACE/KIND/NAME`` (a 63-character namespace, a kind with its API group, a 253-character
name): the admission decision has kept up to 620 characters of it since 0003, the ledger only 300. Metering files a
pod's usage under ``<job>#<pod>`` (a pod name may have 253 more), and a key cut to 300 lost either the pod's part
(replicas of one job merged into one interval) or the ``<job>#`` prefix by which a pod's usage meets its job's
declared run and its case (counted twice toward 10^26). The run's column takes 620, as the decision's; the metered
column 880 (620, "#", 253).

PostgreSQL: widening a ``varchar`` is a catalog change, no table rewrite, and the indexes stay. SQLite enforces no
length but declares one: its two tables are rebuilt in batch mode (no other table refers to them, and they carry
no partial index a rebuild could lose), so the declared types match the models as on a new store.

Revision ID: 0025_job_ref_width
Revises: 0021_run_withdrawal
"""

from __future__ import annotations

import sqlmodel
from alembic import op

revision = "0025_job_ref_width"
down_revision = "0021_run_withdrawal"
branch_labels = None
depends_on = None

_WIDTHS = {"ledger_run": (300, 620), "metered_usage": (300, 880)}


def _alter(to_new: bool) -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for table, (old, new) in _WIDTHS.items():
        frm, to = (old, new) if to_new else (new, old)
        kw = {"type_": sqlmodel.sql.sqltypes.AutoString(length=to),
              "existing_type": sqlmodel.sql.sqltypes.AutoString(length=frm), "existing_nullable": False}
        if pg:
            op.alter_column(table, "job_ref", **kw)
        else:
            with op.batch_alter_table(table) as b:
                b.alter_column("job_ref", **kw)


def upgrade() -> None:
    _alter(True)


def downgrade() -> None:
    # Narrowing fails on PostgreSQL while a longer reference is stored: shorten or remove those rows first.
    _alter(False)
