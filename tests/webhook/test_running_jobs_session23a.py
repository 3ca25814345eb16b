"""Session 23a: a job admitted for a long run counts in the admission sums until its run ends, not only while its
approval is inside the window.

Red flag 28's anti-evasion sums (a customer's related jobs for one lineage over ``related_jobs_window_days``, the
customer-wide / corporate-group sum over ``customer_aggregate_window_days``) read the admitted decisions of the
window. A job approved longer ago than the window but still running (declared ``expected-hours`` 8000, or the
default maximum when that is longer than the window) left both sums while it ran: a second part of the same run
was admitted although together they reach 10^26. Each admitted decision records ``runs_until`` (approval plus
the hours its bound used) and the sums count it until then. A row without one (written by a pod of the previous
release during a rolling upgrade, or before migration 0024 when its detail held no hours) keeps the window
alone. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from agent import cases
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.cases import AdmissionDecision
from agent.store.tables.core import as_utc, utcnow
from policies import redflag

from .conftest import M, job, review

# 256 pods × 8 H100 × 8000 h ≈ 0.585e26 operations: one part is under 10^26, two are over it.
PODS_8000H = 256
# The same operations declared over 720 hours (30 days: the default maximum), ten times the pods and more.
PODS_720H = 2845


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


def _decide(url: str, name: str, model: str, *, hours: int = 8000, as_of: date | None = None,
            now: datetime | None = None, dry_run: bool = False, ns: str = "tenant-ae") -> Outcome:
    pods = PODS_8000H if hours == 8000 else PODS_720H
    body = review(job(name, ns, annotations={M + "model": model, M + "expected-hours": str(hours)}, pods=pods),
                  dry_run=dry_run)
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body, as_of, now=now)


def _rows(url: str) -> list[tuple[Any, ...]]:
    d = AdmissionDecision.__table__  # type: ignore[attr-defined]
    with session_scope(url) as s:
        return [tuple(r) for r in s.execute(select(d.c.name, d.c.allowed, d.c.run_operations, d.c.decided_at,
                                                   d.c.runs_until, d.c.detail).order_by(d.c.id)).all()]


# ------------------------------------------------------------------------------------------------ the sums


def test_job_declared_for_8000_hours_still_counts_in_related_sum_after_window(url: str) -> None:
    # Approved 100 days ago (outside the 90-day window), declared to run 8000 hours (333 days): running today.
    assert _decide(url, "part-1", "frontier-1", now=utcnow() - timedelta(days=100)).code == redflag.ALLOW
    second = _decide(url, "part-2", "frontier-1", dry_run=True)
    # The lineage itself reaches 10^26 (both parts): held on the lineage, not on the customer-wide sum.
    assert second.code == redflag.HOLD_FOR_INQUIRY, second.message
    assert second.decision is not None and second.decision.case_subject == "frontier-1", second.message
    assert second.estimate is not None and second.estimate >= 1e26


def test_customer_wide_sum_counts_running_job_past_window(url: str) -> None:
    assert _decide(url, "part-1", "frontier-1", now=utcnow() - timedelta(days=100)).code == redflag.ALLOW
    other = _decide(url, "part-2", "frontier-2", dry_run=True)
    assert other.code == redflag.HOLD_FOR_INQUIRY and "model name" in other.message, other.message


def test_a_corporate_group_sum_counts_a_siblings_running_job_past_window(url: str) -> None:
    from agent import directory, parties

    with session_scope(url) as s:
        parties.add_party(s, "Emirates AI Labs", "AE", "Emirates AI", ["tenant-ae-labs"])
    directory.clear()
    assert _decide(url, "part-1", "frontier-1", now=utcnow() - timedelta(days=100)).code == redflag.ALLOW
    other = _decide(url, "part-2", "frontier-2", dry_run=True, ns="tenant-ae-labs")
    assert other.code == redflag.HOLD_FOR_INQUIRY and "corporate group" in other.message, other.message


def test_a_job_whose_run_has_ended_leaves_the_sums_with_the_window(url: str) -> None:
    # Approved 100 days ago for 720 hours: its run ended 70 days ago.
    assert _decide(url, "part-1", "frontier-1", hours=720, now=utcnow() - timedelta(days=100)).code == redflag.ALLOW
    assert _decide(url, "part-2", "frontier-1", hours=720, dry_run=True).code == redflag.ALLOW
    assert _decide(url, "part-3", "frontier-2", hours=720, dry_run=True).code == redflag.ALLOW


def test_a_running_job_is_counted_once_at_its_largest_estimate(url: str) -> None:
    """A running job decided again (an UPDATE inside the window) is one job: not summed with its earlier decision."""
    long_ago = utcnow() - timedelta(days=100)
    assert _decide(url, "part-1", "frontier-1", now=long_ago).code == redflag.ALLOW
    assert _decide(url, "part-1", "frontier-1", now=utcnow() - timedelta(days=5)).code == redflag.ALLOW
    # part-1 counts once (0.585e26); a third job of a tenth of the size stays under 10^26 with it.
    small = review(job("part-2", annotations={M + "model": "frontier-1", M + "expected-hours": "8000"}, pods=25),
                   dry_run=True)
    with session_scope(url) as s:
        out = cases.evaluate_review(s, registry(), small)
    assert out.code == redflag.ALLOW, out.message
    assert out.estimate is not None and out.estimate < 0.7e26


def test_a_running_job_of_an_answered_lineage_is_not_summed_customer_wide_again(url: str) -> None:
    long_ago = utcnow() - timedelta(days=100)
    assert _decide(url, "part-1", "frontier-1", now=long_ago).code == redflag.ALLOW
    body = review(job("big", annotations={M + "model": "frontier-1", M + "expected-hours": "8000"}, pods=512))
    with session_scope(url) as s:
        held = cases.evaluate_review(s, registry(), body)
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None, held.message
    with session_scope(url) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance")
    # frontier-1's inquiry is on record: its running part is not summed again with frontier-2's.
    other = _decide(url, "part-2", "frontier-2", dry_run=True)
    assert other.code == redflag.ALLOW, other.message


@pytest.mark.parametrize(("days", "counted"), [(80, True), (100, False)])
def test_row_without_runs_until_counts_only_inside_window(url: str, days: int, counted: bool) -> None:
    """A decision an older pod wrote (no runs_until) keeps today's reading: counted while inside the window."""
    assert _decide(url, "part-1", "frontier-1", now=utcnow() - timedelta(days=days)).code == redflag.ALLOW
    with session_scope(url) as s:
        s.execute(text("UPDATE admission_decision SET runs_until = NULL"))
    expected = redflag.HOLD_FOR_INQUIRY if counted else redflag.ALLOW
    assert _decide(url, "part-2", "frontier-1", dry_run=True).code == expected
    assert _decide(url, "part-3", "frontier-2", dry_run=True).code == expected


def test_a_review_as_of_an_earlier_day_counts_a_job_running_then(url: str) -> None:
    # Approved 400 days ago for 8000 hours (333 days): its run ended 67 days ago.
    assert _decide(url, "part-1", "frontier-1", now=utcnow() - timedelta(days=400)).code == redflag.ALLOW
    assert _decide(url, "part-2", "frontier-1", dry_run=True).code == redflag.ALLOW
    # 100 days ago it had been approved 300 days before (outside both windows) and was running.
    then = (utcnow() - timedelta(days=100)).date()
    lineage = _decide(url, "part-2", "frontier-1", as_of=then, dry_run=True)
    assert lineage.code == redflag.HOLD_FOR_INQUIRY, lineage.message
    other = _decide(url, "part-3", "frontier-2", as_of=then, dry_run=True)
    assert other.code == redflag.HOLD_FOR_INQUIRY and "model name" in other.message, other.message


def test_a_review_as_of_a_later_day_counts_a_job_still_running_then(url: str) -> None:
    now = utcnow()
    assert _decide(url, "long", "frontier-1", now=now - timedelta(days=80)).code == redflag.ALLOW
    # Decided 80 days ago for 8000 hours: outside the windows of a day 15 days from now, but running on it.
    later = _decide(url, "part-2", "frontier-1", as_of=(now + timedelta(days=15)).date(), dry_run=True)
    assert later.code == redflag.HOLD_FOR_INQUIRY, later.message


def test_a_review_as_of_a_later_day_leaves_out_a_job_whose_run_ended_before_it(url: str) -> None:
    now = utcnow()
    assert _decide(url, "short", "frontier-1", hours=720, now=now - timedelta(days=80)).code == redflag.ALLOW
    later = _decide(url, "part-2", "frontier-1", hours=720, as_of=(now + timedelta(days=15)).date(), dry_run=True)
    assert later.code == redflag.ALLOW, later.message


# ------------------------------------------------------------------------------------------------ the writers


def test_an_admitted_decision_records_when_its_run_ends(url: str) -> None:
    assert _decide(url, "part-1", "frontier-1").code == redflag.ALLOW
    _decide(url, "part-2", "frontier-1")  # held: refused in enforce mode
    (n1, ok1, ops1, at1, until1, d1), (n2, ok2, _o, _a, until2, _d) = _rows(url)
    assert (n1, bool(ok1), n2, bool(ok2)) == ("part-1", True, "part-2", False)
    assert json.loads(d1)["hours"] == 8000 and ops1 is not None
    assert as_utc(until1) - as_utc(at1) == timedelta(hours=8000)
    # A refused job does not run: nothing to count until.
    assert until2 is None


def test_a_tier1_decision_records_when_its_run_ends(url: str) -> None:
    """Counted in the customer's sums should it leave Tier 1 while the job runs (session 22i)."""
    out = _decide(url, "us-1", "frontier-1", hours=720, ns="tenant-us")
    assert out.code == redflag.ALLOW and "Tier 1" in out.message
    ((_n, _ok, _ops, at, until, _d),) = _rows(url)
    assert as_utc(until) - as_utc(at) == timedelta(hours=720)


def test_a_tier1_decision_without_a_hardware_bound_still_records_when_its_run_ends(url: str) -> None:
    """An H100 job declared at FP4 (no H100 rate to bound it by; not refused for a Tier 1 customer) runs for its
    declared hours at least, the default maximum if longer: without an end it would count in no sum once outside
    the window, should the customer leave Tier 1."""
    ann = {M + "model": "m", M + "expected-hours": "2000", M + "precision": "FP4", M + "operations": "1e24"}
    with session_scope(url) as s:
        out = cases.evaluate_review(s, registry(), review(job("us-fp4", "tenant-us", annotations=ann)))
    assert out.code == redflag.ALLOW, out.message
    ((_n, _ok, ops, at, until, _d),) = _rows(url)
    assert ops is not None and as_utc(until) - as_utc(at) == timedelta(hours=2000)


def test_veuctl_admission_review_records_when_the_run_ends(
        url: str, tmp_path: Path, veuctl: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEU_DATABASE_URL", url)
    f = tmp_path / "review.json"
    f.write_text(json.dumps(review(job("cli-1", annotations={M + "model": "m", M + "expected-hours": "100"}))))
    r = veuctl("admission", "review", str(f), "--json")
    assert r.returncode == 0, r.stderr
    ((_n, _ok, _ops, at, until, _d),) = _rows(url)
    assert as_utc(until) - as_utc(at) == timedelta(hours=100)


def test_hours_beyond_the_calendar_record_the_latest_end_a_store_keeps(url: str) -> None:
    body = review(job("forever", "tenant-us", annotations={M + "model": "m", M + "expected-hours": "1e12"}, pods=1))
    with session_scope(url) as s:
        out = cases.evaluate_review(s, registry(), body)
    assert out.allowed, out.message
    ((_n, _ok, _ops, _at, until, _d),) = _rows(url)
    assert as_utc(until) >= datetime(9999, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------------ the migration


REV = "0024_decision_runs_until"


def _cfg() -> Any:
    from alembic.config import Config

    from agent.store.db import _MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def test_alembic_has_one_head_per_branch_and_0024_is_the_decision_tables() -> None:
    """The migrations branch by area (docs/architecture.md): a new column revises its table's branch head, and no
    revision has two children (a fork leaves two heads on one branch, and ``upgrade heads`` then runs both)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_cfg())
    revs = list(script.walk_revisions())
    children: dict[str, list[str]] = {}
    for r in revs:
        for parent in (r.down_revision,) if isinstance(r.down_revision, str) else (r.down_revision or ()):
            children.setdefault(parent, []).append(r.revision)
    forked = {p: c for p, c in children.items() if len(c) > 1 and p != "0001_core"}
    assert forked == {}
    # Every branch off 0001_core ends in one head: as many heads as branches.
    assert len(script.get_heads()) == len(children["0001_core"])
    assert REV in script.get_heads()
    assert script.get_revision(REV).down_revision == "0013_admitted_index"
    numbers = [r.revision.split("_", 1)[0] for r in revs]
    assert len(numbers) == len(set(numbers)), sorted(numbers)


def test_migration_0024_backfills_runs_until_from_decision_hours(url: str) -> None:
    from alembic import command

    from agent.store.db import dispose_all, make_engine

    dispose_all()
    eng = make_engine(url)
    cfg = _cfg()
    # Long before any window: only a row still running by its runs_until is counted.
    at = datetime(2020, 1, 10, 12, 30, 15, 123456, tzinfo=UTC)

    def insert(conn: Any, name: str, allowed: bool, ops: float | None, detail: dict[str, Any] | str) -> None:
        conn.execute(text(
            "INSERT INTO admission_decision (uid, decided_at, as_of, namespace, kind, name, operation, job_ref, "
            "customer_name, model_key, code, allowed, mode, chips, run_operations, message, pack_versions, detail) "
            "VALUES (:n, :at, '2020-01-10', 'tenant-ae', 'Job', :n, 'CREATE', :ref, 'Emirates AI', 'm', 'ALLOW', "
            ":ok, 'enforce', 8, :ops, '', '{}', :d)"),
            {"n": name, "at": at if conn.dialect.name == "postgresql" else at.strftime("%Y-%m-%d %H:%M:%S.%f"),
             "ref": f"tenant-ae/Job/{name}", "ok": allowed, "ops": ops,
             "d": detail if isinstance(detail, str) else json.dumps(detail)})

    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            command.downgrade(cfg, "0013_admitted_index")
            conn.commit()
            insert(conn, "long", True, 5e25, {"hours": 8000, "code": "ALLOW"})
            insert(conn, "fraction", True, 5e25, {"hours": 0.5})
            insert(conn, "no-hours", True, 5e25, {"code": "ALLOW"})
            insert(conn, "null-hours", True, 5e25, {"hours": None})
            insert(conn, "refused", False, 5e25, {"hours": 8000})
            insert(conn, "no-estimate", True, None, {"hours": 720})
            insert(conn, "huge", True, 5e25, {"hours": 1e12})
            insert(conn, "not-json", True, 5e25, "{not json")
            # Before detail carried hours: the declared expected-hours (or the default maximum, if longer).
            insert(conn, "declared", True, 5e25, {"asked": {"annotations": {"expected-hours": "8000"}}})
            insert(conn, "declared-short", True, 5e25, {"asked": {"annotations": {"expected-hours": "24"}}})
            insert(conn, "quoted-hours", True, 5e25, {"hours": "8000"})
            conn.commit()
            command.upgrade(cfg, "heads")
            conn.commit()
            got = {n: u for n, u in conn.execute(text("SELECT name, runs_until FROM admission_decision")).all()}
    finally:
        eng.dispose()

    def read(v: Any) -> datetime | None:
        if v is None:
            return None
        return as_utc(datetime.fromisoformat(v) if isinstance(v, str) else v).astimezone(UTC)

    assert read(got["long"]) == at + timedelta(hours=8000)
    assert read(got["fraction"]) == at + timedelta(minutes=30)
    assert read(got["huge"]) == datetime(9999, 1, 1, tzinfo=UTC)
    # A decision from before detail carried hours ran for the longer of its declared hours and the default
    # maximum (720 h in the shipped packs): the bound the webhook applied to it.
    assert read(got["declared"]) == at + timedelta(hours=8000)
    assert read(got["quoted-hours"]) == at + timedelta(hours=8000)
    for name in ("declared-short", "no-hours", "null-hours", "not-json"):
        assert read(got[name]) == at + timedelta(hours=720), name
    for name in ("refused", "no-estimate"):
        assert got[name] is None, name
    # The backfilled store answers as a new one: the long job counts after its window.
    dispose_all()
    d = AdmissionDecision.__table__  # type: ignore[attr-defined]
    with session_scope(url) as s:
        s.execute(d.delete().where(d.c.name != "long"))
        s.execute(d.update().values(decided_at=utcnow() - timedelta(days=100), runs_until=None))
    _backfill_again(url)
    out = _decide(url, "part-2", "m", dry_run=True)
    assert out.code == redflag.HOLD_FOR_INQUIRY, out.message


def _backfill_again(url: str) -> None:
    """Down to 0013 and up again: 0024 backfills the row (its decided_at moved 100 days back) once more."""
    from alembic import command

    from agent.store.db import dispose_all, make_engine

    dispose_all()
    eng = make_engine(url)
    cfg = _cfg()
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0013_admitted_index")
            conn.commit()
            command.upgrade(cfg, "heads")
            conn.commit()
    finally:
        eng.dispose()
    dispose_all()


# ------------------------------------------------------------------------------------------------ the read's plan


@pytest.mark.postgres
def test_running_jobs_past_the_window_are_read_from_their_own_index(pg_store: str) -> None:
    """The running jobs decided before the window come from an index of their own (ix_admission_decision_running),
    beside the window's index-only scan, not from an OR that reads neither index well."""
    from sqlmodel import Session

    from agent.cases import related_query
    from agent.store.db import _bind, get_engine

    now = datetime.now(UTC)
    stmt, params = related_query("acme", "llm", now - timedelta(days=90), now - timedelta(days=90), "ns/Job/x", 90,
                                 now)
    with Session(get_engine(pg_store)) as s:
        conn = s.connection()
        sql, bound = _bind(conn, stmt, params)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, bound).all())
    assert "Index Only Scan using ix_admission_decision_admitted" in plan, plan
    assert "Index Only Scan using ix_admission_decision_running" in plan, plan
