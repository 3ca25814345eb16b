"""``admission_decision.runs_until``: the admission sums count a job until its run ends, not only for the window.

The anti-evasion sums (a customer's related jobs for one lineage over ``related_jobs_window_days``, its
customer-wide or corporate-group sum over ``customer_aggregate_window_days``) read the admitted decisions of
their window. A job approved longer ago but still running (declared ``expected-hours`` 8000, or a default
maximum longer than the window) left both sums while it ran, and a second part of the run was admitted
although together they reach the threshold. Each admitted decision with an estimate records when its run ends
by its own reckoning, approval plus the hours its bound used (already in ``detail`` as ``hours``), and the
sums count it until then.

The backfill gives existing admitted rows that end from their ``detail``. Decisions written before ``detail``
carried ``hours`` (the long runs already going at the upgrade, the ones this is for) are given the longer of the
job's declared ``expected-hours`` (``detail.asked.annotations``) and the packs' ``default_max_hours`` today, the
bound the webhook applied to a job that declared less or nothing: counting a job a little longer errs on the
held side. Only when the packs do not load does such a row stay NULL (the window alone), with a warning in the
migration's log giving their number and the packs' error, as do rows that pods of the previous release write during
a rolling upgrade. Hours past the calendar a store keeps end on 9999-01-01 (the job runs on, as far as any review
can tell).

On PostgreSQL the column is committed before the backfill, which then runs ``_BATCH`` rows per transaction: the
previous release keeps serving while the migration runs, and the ``ADD COLUMN``'s lock held through the whole
backfill kept every decision it recorded waiting (34 s for 300,000 decisions, past the API server's webhook
timeout). A run that fails part way leaves the column without the revision (so does SQLite, whose driver runs an
``ALTER TABLE`` outside the transaction); the next upgrade finds it and backfills the rows still without an end.

``ix_admission_decision_running`` (customer, runs_until), partial on the admitted rows with an end, carries
what the sums read (PostgreSQL INCLUDE), so the running jobs approved before the window are a second index
range scan beside the window's (``ix_admission_decision_admitted``). On PostgreSQL it is built CONCURRENTLY, as
0013's: a plain build would hold every decision insert for its duration while the running release answers.

Revision ID: 0024_decision_runs_until
Revises: 0013_admitted_index
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0024_decision_runs_until"
down_revision = "0013_admitted_index"
branch_labels = None
depends_on = None

_INDEX = "ix_admission_decision_running"
_WHERE = "allowed IS TRUE AND run_operations IS NOT NULL AND runs_until IS NOT NULL"
_COLUMNS = ["customer_name", "runs_until"]
_INCLUDE = ["decided_at", "job_ref", "run_operations", "model_key"]
_LAST = datetime(9999, 1, 1, tzinfo=UTC)
_BATCH = 5000
_log = logging.getLogger("agent.store.migrations")

# The decision's hours from its detail, NULL where the detail is no JSON object or holds no finite number of
# hours: a row the backfill cannot read keeps the window alone rather than failing the upgrade.
_PG_HOURS = """
CREATE OR REPLACE FUNCTION pg_temp.veu_decision_hours(detail text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v jsonb;
BEGIN
    v := detail::jsonb -> 'hours';
    IF v IS NULL OR jsonb_typeof(v) <> 'number' THEN
        RETURN NULL;
    END IF;
    RETURN GREATEST((v #>> '{}')::double precision, 0);
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$
"""
_PG_BACKFILL = """
UPDATE admission_decision d SET runs_until = CASE
    WHEN h.hours * 3600 >= extract(epoch FROM (timestamptz '9999-01-01 00:00:00+00' - d.decided_at))
        THEN timestamptz '9999-01-01 00:00:00+00'
    ELSE d.decided_at + make_interval(secs => h.hours * 3600) END
FROM (SELECT id, pg_temp.veu_decision_hours(detail) AS hours FROM admission_decision
      WHERE id > :low AND id <= :high AND allowed IS TRUE AND run_operations IS NOT NULL AND runs_until IS NULL
        AND detail LIKE '%"hours"%') h
WHERE d.id = h.id AND h.hours IS NOT NULL
"""


def _number(v: Any) -> float | None:
    """A finite, non-negative number of hours from a JSON value or an annotation's text, else None."""
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v):
        return None
    return max(float(v), 0.0)


def _default_hours() -> tuple[float | None, str]:
    """``admission-settings.default_max_hours`` of the packs in force today (the operator's included); or None and
    why, when they do not load: the upgrade must not fail on a pack, and such rows then keep the window alone."""
    try:
        from agent.packs import registry
        from policies.redflag import AdmissionSettings

        return float(AdmissionSettings.from_packs(registry(), datetime.now(UTC).date()).default_max_hours), ""
    except Exception as exc:  # any failure to read the packs: leave such rows as they are, and say so
        lines = str(exc).strip().splitlines()
        return None, f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _hours(detail: str | None, default: float | None = None) -> float | None:
    """The hours a decision's bound used: ``detail.hours`` when recorded; else, for a decision from before it was,
    the longer of its declared ``expected-hours`` and ``default`` (None: unknown, the row keeps the window alone)."""
    try:
        d = json.loads(detail or "")
    except (ValueError, RecursionError):
        d = None
    if isinstance(d, dict) and "hours" in d and _number(d.get("hours")) is not None:
        return _number(d.get("hours"))
    if default is None:
        return None
    asked = d.get("asked") if isinstance(d, dict) else None
    annotations = asked.get("annotations") if isinstance(asked, dict) else None
    declared = _number(annotations.get("expected-hours")) if isinstance(annotations, dict) else None
    return max(declared or 0.0, default)


def _end(decided_at: datetime, hours: float) -> datetime:
    at = decided_at if decided_at.tzinfo else decided_at.replace(tzinfo=UTC)
    if hours * 3600 >= (_LAST - at).total_seconds():
        return _LAST
    return at + timedelta(hours=hours)


def _backfill_rest() -> None:
    """Row by row in Python, the rows the SQL backfill left (all of them on SQLite): the ends are written by the
    column's own type, in the text SQLite compares."""
    T = sqlmodel.sql.sqltypes.UTCDateTime
    d = sa.table("admission_decision", sa.column("id", sa.Integer()), sa.column("decided_at", T()),
                 sa.column("detail", sa.Text()), sa.column("allowed", sa.Boolean()),
                 sa.column("run_operations", sa.Float()), sa.column("runs_until", T()))
    conn = op.get_bind()
    default, why = _default_hours()
    after = left = 0
    while True:
        rows = conn.execute(sa.select(d.c.id, d.c.decided_at, d.c.detail).where(
            d.c.id > after, d.c.allowed.is_(True), d.c.run_operations.is_not(None), d.c.runs_until.is_(None),
            ).order_by(d.c.id).limit(_BATCH)).all()
        if not rows:
            break
        ends: list[dict[str, Any]] = []
        for row_id, decided_at, detail in rows:
            hours = _hours(detail, default)
            if hours is not None and decided_at is not None:
                ends.append({"row_id": row_id, "end": _end(decided_at, hours)})
            else:
                left += 1
        if ends:
            conn.execute(d.update().where(d.c.id == sa.bindparam("row_id")).values(runs_until=sa.bindparam("end")),
                         ends)
        after = rows[-1][0]
    if left and default is None:
        # The revision is recorded all the same and the backfill is not run again: without this line the migrate
        # Job's log never said that these runs count only inside the window.
        _log.warning(
            "migration 0024: %d admitted decision%s from before their detail recorded hours kept no end "
            "(admission_decision.runs_until NULL): they count in the admission sums only inside the window, as "
            "before this release; the policy packs did not load (%s): correct them (VEU_POLICY_DIRS) before "
            "upgrading, or restore the backup and upgrade again", left, "" if left == 1 else "s", why)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    # Present already when an earlier run of this migration failed after adding it (see the module's doc).
    if "runs_until" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("admission_decision")}:
        op.add_column("admission_decision",
                      sa.Column("runs_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    if pg:
        with op.get_context().autocommit_block():
            # The column is committed here, and with it the ADD COLUMN's lock on the table released: held through
            # the backfill, it kept the running release's decisions waiting until the backfill ended. Each batch
            # below is a short transaction of its own.
            _pg_backfill()
            _backfill_rest()  # the decisions from before detail carried hours
            index = dict(unique=False, postgresql_include=_INCLUDE, postgresql_where=sa.text(_WHERE))
            # A build that failed part way leaves an invalid index of that name behind: drop it, build anew.
            # CONCURRENTLY: a plain DROP INDEX takes ACCESS EXCLUSIVE on the table, here outside the migration's
            # bounded transaction (agent.store.migrations.lock_timeout), and queued the decisions behind it.
            if op.get_bind().execute(sa.text("SELECT 1 FROM pg_index WHERE NOT indisvalid AND indexrelid = "
                                             "to_regclass(:name)"), {"name": _INDEX}).first() is not None:
                op.execute(sa.text(f"DROP INDEX CONCURRENTLY IF EXISTS {_INDEX}"))
            op.create_index(_INDEX, "admission_decision", _COLUMNS, postgresql_concurrently=True,
                            if_not_exists=True, **index)
    else:
        _backfill_rest()
        op.create_index(_INDEX, "admission_decision", _COLUMNS, unique=False, sqlite_where=sa.text(_WHERE))


def _pg_backfill() -> None:
    """The rows whose detail records their hours, in SQL, ``_BATCH`` ids at a time (each its own transaction)."""
    conn = op.get_bind()
    conn.execute(sa.text(_PG_HOURS))
    top = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM admission_decision")).scalar_one()
    low = conn.execute(sa.text("SELECT coalesce(min(id), 1) - 1 FROM admission_decision")).scalar_one()
    while low < top:
        conn.execute(sa.text(_PG_BACKFILL), {"low": low, "high": low + _BATCH})
        low += _BATCH
    conn.execute(sa.text("DROP FUNCTION pg_temp.veu_decision_hours(text)"))


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="admission_decision")
    # A plain DROP COLUMN (SQLite 3.35+ once the index is gone): batch mode would rebuild the table and could lose
    # the partial indexes' predicates.
    op.drop_column("admission_decision", "runs_until")
