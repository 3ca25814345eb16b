"""Session 23t: upgrading a production store to this release (migrations 0024 and 0025) while the previous release
keeps admitting jobs.

The ``…-migrate`` Job runs before any pod is replaced, and the old webhook pods keep serving while it does
(docs/operations.md, "Upgrade"). Migration 0024 adds ``admission_decision.runs_until`` and backfills it from every
admitted decision's detail. Done in the migration's own transaction, the backfill held the ``ADD COLUMN``'s lock on
the table (ACCESS EXCLUSIVE) until it ended: every decision the running release recorded meanwhile waited for it
(34 s for 300,000 decisions), past the API server's webhook timeout, so training jobs were refused for the length
of the upgrade. The column is committed first; the backfill then runs in short transactions of its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from agent.store.db import _alembic_config, make_engine, migrate
from agent.store.tables.core import as_utc

BEFORE = ("0013_admitted_index", "0021_run_withdrawal")  # the previous release's heads of the cases and ledger branches
# Held by the test; a trigger on admission_decision makes the backfill's UPDATE wait for it.
PAUSE_KEY = 232323
AT = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
COLUMNS = ("uid, decided_at, as_of, namespace, kind, name, operation, job_ref, customer_name, model_key, code, "
           "allowed, mode, chips, run_operations, message, pack_versions, detail")


def _previous_release(url: str) -> None:
    """The store as the previous release left it: every migration up to its heads, none of 0024 and 0025."""
    from alembic import command

    eng = make_engine(url)
    cfg = _alembic_config()
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            for rev in BEFORE:
                command.downgrade(cfg, rev)
            conn.commit()
    finally:
        eng.dispose()


def _record(conn: psycopg.Connection[Any], name: str, detail: dict[str, Any], at: datetime = AT) -> None:
    """A decision as the previous release's webhook records it (no runs_until)."""
    conn.execute(
        f"INSERT INTO admission_decision ({COLUMNS}) VALUES (%(n)s, %(at)s, '2026-11-02', 'tenant-ae', 'Job', %(n)s, "
        "'CREATE', %(ref)s, 'Emirates AI', 'm', 'ALLOW', true, 'enforce', 8, 5e25, '', '{}', %(d)s)",
        {"n": name, "at": at, "ref": f"tenant-ae/Job/{name}", "d": json.dumps(detail)})


@pytest.fixture()
def old_store(pg_url: str) -> Iterator[str]:
    _previous_release(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _record(conn, "declared-hours", {"hours": 8000})
        _record(conn, "before-hours", {"asked": {"annotations": {"expected-hours": "8000"}}})
    yield pg_url


def _runs_until(url: str) -> dict[str, datetime | None]:
    with psycopg.connect(url) as conn:
        return {str(n): u for n, u in conn.execute("SELECT name, runs_until FROM admission_decision").fetchall()}


def _revisions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return _applied({str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version").fetchall()})


def _applied(heads: set[str]) -> set[str]:
    """The revisions applied given alembic_version's heads: each head and every revision it revises (a later
    migration on a branch, such as 0027 on the ledger's, is that branch's head once applied)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    return {str(r.revision) for r in script.iterate_revisions(sorted(heads), "base")} if heads else set()


def _migrate_in_background(url: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        eng = make_engine(url)
        try:
            migrate(eng)
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            eng.dispose()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def _wait_for_backfill_to_pause(admin: psycopg.Connection[Any], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND "
                                "objid = %(k)s", {"k": PAUSE_KEY}).fetchone()
        if waiting and waiting[0]:
            return
        time.sleep(0.05)
    raise AssertionError("the migration never reached the backfill")


@pytest.mark.postgres
def test_the_previous_release_keeps_recording_decisions_while_0024_backfills(old_store: str) -> None:
    """An old webhook pod records a decision while the migrate Job is in 0024's backfill: the insert is not held
    behind the backfill (it waits at most 3 s here; the API server's webhook timeout is 10 s by default)."""
    with psycopg.connect(old_store, autocommit=True) as admin:
        admin.execute("CREATE FUNCTION qa_pause() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                      f"PERFORM pg_advisory_xact_lock({PAUSE_KEY}); RETURN NEW; END $$")
        admin.execute("CREATE TRIGGER qa_pause BEFORE UPDATE ON admission_decision FOR EACH ROW "
                      "EXECUTE FUNCTION qa_pause()")
        admin.execute("SELECT pg_advisory_lock(%(k)s)", {"k": PAUSE_KEY})
        thread, errors = _migrate_in_background(old_store)
        try:
            _wait_for_backfill_to_pause(admin)
            with psycopg.connect(old_store, autocommit=True) as pod:
                pod.execute("SET lock_timeout = '3s'")
                try:
                    _record(pod, "admitted-during-upgrade", {"hours": 720}, at=datetime.now(UTC))
                    recorded = True
                except psycopg.errors.LockNotAvailable:
                    recorded = False
        finally:
            admin.execute("SELECT pg_advisory_unlock(%(k)s)", {"k": PAUSE_KEY})
            thread.join(120)
    assert not thread.is_alive() and errors == []
    assert recorded, "a decision of the running release waited more than 3 s for the 0024 backfill"
    ends = _runs_until(old_store)
    assert ends["declared-hours"] == AT + timedelta(hours=8000)
    assert ends["before-hours"] == AT + timedelta(hours=8000)
    assert {"0024_decision_runs_until", "0025_job_ref_width"} <= _revisions(old_store)


FAIL_TRIGGER = {
    "postgresql": ("CREATE FUNCTION qa_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'qa: the store went away'; END $$",
                   "CREATE TRIGGER qa_fail BEFORE UPDATE ON admission_decision FOR EACH ROW "
                   "EXECUTE FUNCTION qa_fail()"),
    "sqlite": ("CREATE TRIGGER qa_fail BEFORE UPDATE ON admission_decision BEGIN "
               "SELECT RAISE(ABORT, 'qa: the store went away'); END",),
}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_upgrade_whose_backfill_failed_part_way_completes_when_run_again(
        backend: str, request: pytest.FixtureRequest) -> None:
    """A backfill that fails (the Job killed, the store restarted) leaves the column behind without the revision:
    PostgreSQL commits it before the backfill (above), SQLite's driver runs an ALTER TABLE outside any
    transaction. The next `veuctl db upgrade` finds it there and backfills on; it failed with "column runs_until
    already exists"."""
    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    _previous_release(url)
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            _insert(conn, "before-hours", {"asked": {"annotations": {"expected-hours": "8000"}}})
            for sql in FAIL_TRIGGER[backend]:
                conn.exec_driver_sql(sql)
        with pytest.raises(Exception, match="qa: the store went away"):
            migrate(eng)
        with eng.begin() as conn:
            revisions = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
            assert "0024_decision_runs_until" not in revisions
            conn.exec_driver_sql("DROP TRIGGER qa_fail" + (" ON admission_decision" if backend == "postgresql" else ""))
        migrate(eng)
        with eng.connect() as conn:
            revisions = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
            end = conn.execute(text("SELECT runs_until FROM admission_decision")).scalar()
            if backend == "postgresql":
                assert conn.execute(text("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                         "'ix_admission_decision_running'::regclass")).scalar() is True
    finally:
        eng.dispose()
    assert {"0024_decision_runs_until", "0025_job_ref_width"} <= _applied(revisions)
    assert end is not None and as_utc(datetime.fromisoformat(end) if isinstance(end, str) else end) == \
        AT + timedelta(hours=8000)


def _insert(conn: Any, name: str, detail: dict[str, Any]) -> None:
    """A decision as the previous release records it, through SQLAlchemy (either store)."""
    conn.execute(text(
        f"INSERT INTO admission_decision ({COLUMNS}) VALUES (:n, :at, '2026-11-02', 'tenant-ae', 'Job', :n, "
        "'CREATE', :ref, 'Emirates AI', 'm', 'ALLOW', true, 'enforce', 8, 5e25, '', '{}', :d)"),
        {"n": name, "at": AT if conn.dialect.name == "postgresql" else AT.strftime("%Y-%m-%d %H:%M:%S.%f"),
         "ref": f"tenant-ae/Job/{name}", "d": json.dumps(detail)})


# ------------------------------------------------------------------------------------- packs that do not load


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_decisions_left_without_an_end_because_the_packs_did_not_load_are_reported(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A decision from before detail recorded hours is given the default maximum of the packs in force; when they do
    not load, the upgrade goes on and such rows keep the window alone (0024's docstring). That was silent: the
    migrate Job's log said nothing, and the long runs 0024 is for were left out of the sums for good. The log says
    how many decisions were left so, why, and what to do."""
    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    _previous_release(url)
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            _insert(conn, "before-hours", {"asked": {"annotations": {"expected-hours": "8000"}}})
            _insert(conn, "declared-hours", {"hours": 8000})
        broken = tmp_path / "packs"
        broken.mkdir()
        (broken / "site.yaml").write_text("id: site-overrides\nprovisions: [unclosed\n")
        monkeypatch.setenv("VEU_POLICY_DIRS", str(broken))
        with caplog.at_level(logging.WARNING):
            migrate(eng)
        with eng.connect() as conn:
            ends = dict(conn.execute(text("SELECT name, runs_until FROM admission_decision")).all())
    finally:
        eng.dispose()
    assert ends["before-hours"] is None and ends["declared-hours"] is not None
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "runs_until" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "1 admitted decision" in warned[0] and "policy packs" in warned[0] and "VEU_POLICY_DIRS" in warned[0]
