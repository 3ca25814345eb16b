"""``ledger_model.name_key``: one ledger entry per model name a reader can tell apart, held by a unique index.

"Zoë 70B" typed with a composed and with a decomposed ë, with two spaces or a no-break space, or in full-width
letters reads as one name, and two ledger entries of such names split one lineage's operations (4E091's 10^26) in
two. Registration refused a look-alike by comparing against every name read into memory (a cache that went stale
after a rolled-back registration on SQLite, and was read again in full after each new model); two registrations at
the same moment both passed the check and both committed; and the admission webhook looked a job's model up by the
annotation's exact text, so the decomposed spelling of a lineage at the threshold was admitted. Each model now
carries its key, ``agent.store.tables.ledger.model_name_key`` (SHA-256 of the name in Unicode compatibility form,
runs of blanks as one, case kept), under a unique index: registration and metering look names up by it, the
webhook's one lineage statement matches the exact name or the key, and a concurrent look-alike insert fails.

Backfill: every existing model gets its key, in id order. A store may already hold look-alikes (registered before
cd2b7ff refused them, or by the race): the earliest of each set keeps the key, the later ones are left without
one (NULL), so the index builds and nothing is renamed or lost. The migration's log names each of them and the
model it reads as; they stay separate entries, each found by its exact name, until an operator reconciles them.
Models that pods of the previous release register while the upgrade rolls out have no key either; the next
registration of a model keys them (``agent.ledger``).

PostgreSQL: the column (nullable, no default: a catalog change) is committed first, within the migration's bounded
lock wait; the backfill then runs ``_BATCH`` rows per statement, each its own transaction, and the index is built
CONCURRENTLY, as 0024's: the running release reads ``ledger_model`` on every admission review, and the ADD COLUMN's
lock held through the backfill and a plain index build would have queued those reviews. SQLite: a plain ``ADD
COLUMN`` (a nullable column needs no table rebuild, and a batch-mode rebuild's DROP TABLE fails once another table's
rows refer to a model), declared as the model declares it, then the same backfill and a unique index.

Revision ID: 0027_model_name_key
Revises: 0025_job_ref_width
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0027_model_name_key"
down_revision = "0025_job_ref_width"
branch_labels = None
depends_on = None

_INDEX = "ix_ledger_model_name_key"
_BATCH = 5000
_SHOWN = 20  # look-alikes named one per line in the log; the rest counted
_log = logging.getLogger("agent.store.migrations")

_PG_UPDATE = sa.text(
    "UPDATE ledger_model m SET name_key = v.k FROM unnest(CAST(:ids AS integer[]), CAST(:keys AS text[])) AS v(id, k) "
    "WHERE m.id = v.id AND m.name_key IS NULL")


def _key(name: str) -> str:
    """``model_name_key`` as of this revision (a later change to it needs a migration of its own, not this one)."""
    text = " ".join(unicodedata.normalize("NFKC", name).split())
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _backfill(pg: bool) -> None:
    """Key every model without a key, in id order; a later look-alike of a keyed model keeps none (logged)."""
    conn = op.get_bind()
    m = sa.table("ledger_model", sa.column("id", sa.Integer()), sa.column("name", sa.String()),
                 sa.column("name_key", sa.String()))
    # Keys already given (an earlier run that stopped part way), each with the model holding it.
    holder: dict[str, tuple[int, str]] = {
        str(k): (int(i), str(n)) for i, n, k in conn.execute(
            sa.select(m.c.id, m.c.name, m.c.name_key).where(m.c.name_key.is_not(None)))}
    alike: list[tuple[int, str, int, str]] = []
    after = 0
    while True:
        rows = conn.execute(sa.select(m.c.id, m.c.name).where(m.c.id > after, m.c.name_key.is_(None))
                            .order_by(m.c.id).limit(_BATCH)).all()
        if not rows:
            break
        ids: list[int] = []
        keys: list[str] = []
        for row_id, name in rows:
            key = _key(str(name))
            first = holder.get(key)
            if first is not None:
                alike.append((int(row_id), str(name), *first))
                continue
            holder[key] = (int(row_id), str(name))
            ids.append(int(row_id))
            keys.append(key)
        if ids and pg:
            conn.execute(_PG_UPDATE, {"ids": ids, "keys": keys})
        elif ids:
            conn.execute(m.update().where(m.c.id == sa.bindparam("row_id")).values(name_key=sa.bindparam("key")),
                         [{"row_id": i, "key": k} for i, k in zip(ids, keys, strict=True)])
        after = rows[-1][0]
    if alike:
        _log.warning(
            "migration 0027: %d model%s read%s as an earlier model's name (differing only in Unicode form or "
            "spacing) and %s left without a name key (ledger_model.name_key NULL): nothing was renamed or removed, "
            "each is still found by its exact name, and its runs and metered usage are summed apart from the "
            "earlier model's; reconcile them (record the training under one model) and review the lineages' "
            "totals:\n%s", len(alike), "" if len(alike) == 1 else "s", "s" if len(alike) == 1 else "",
            "was" if len(alike) == 1 else "were", _listing(alike))


def _listing(alike: list[tuple[int, str, int, str]]) -> str:
    lines = [f"  model {name!r} (id {i}) reads as {first!r} (id {fi})" for i, name, fi, first in alike[:_SHOWN]]
    if len(alike) > _SHOWN:
        lines.append(f"  … and {len(alike) - _SHOWN} more (SELECT id, name FROM ledger_model WHERE name_key IS NULL)")
    return "\n".join(lines)


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    # Present already when an earlier run on PostgreSQL failed after committing it (see the module's doc).
    if "name_key" not in {c["name"] for c in sa.inspect(bind).get_columns("ledger_model")}:
        op.add_column("ledger_model", sa.Column("name_key", sqlmodel.sql.sqltypes.AutoString(length=64),
                                                nullable=True))
    # Alembic run on a connection whose transaction its caller began (a script, a test) cannot step out of it:
    # everything then runs in that transaction, the index built plainly.
    outside = pg and not getattr(op.get_context(), "_in_external_transaction", False)
    if outside:
        with op.get_context().autocommit_block():
            # The column is committed here and the ADD COLUMN's lock released; each backfill batch is a short
            # transaction of its own.
            _backfill(pg)
            # A build that failed part way leaves an invalid index behind: drop it (CONCURRENTLY: a plain DROP INDEX
            # takes ACCESS EXCLUSIVE outside the migration's bounded transaction), build anew.
            if bind.execute(sa.text("SELECT 1 FROM pg_index WHERE NOT indisvalid AND indexrelid = "
                                    "to_regclass(:name)"), {"name": _INDEX}).first() is not None:
                op.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}"))
            op.create_index(_INDEX, "ledger_model", ["name_key"], unique=True, postgresql_concurrently=True,
                            if_not_exists=True)
    else:
        _backfill(pg)
        op.create_index(_INDEX, "ledger_model", ["name_key"], unique=True, if_not_exists=True)


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="ledger_model")
    # A plain DROP COLUMN on both stores (SQLite 3.35+): a batch rebuild's DROP TABLE fails once rows refer to a model.
    op.drop_column("ledger_model", "name_key")

