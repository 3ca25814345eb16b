"""Session 24B: a migration's DDL waits a bounded time for its lock on PostgreSQL, so the running release is not held.

The ``…-migrate`` Job runs while the previous release keeps serving (docs/operations.md, "Upgrade"). An ``ALTER TABLE``
needs ACCESS EXCLUSIVE: when another session holds any lock on the table (a report left in an open transaction, a
``pg_dump`` taking the backup), the ALTER waits in the table's lock queue, and every later statement on that table
(the metering writes, the webhook's decisions) queues behind the ALTER, for as long as the holder keeps its lock.
Migrations run with a bounded ``lock_timeout`` (VEU_MIGRATION_LOCK_TIMEOUT, retried VEU_MIGRATION_LOCK_RETRIES
times): the queue drains when the ALTER gives up, nothing of that migration is applied, and the error says which
session held the lock and how to run the upgrade again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from agent.store.db import _alembic_config, make_engine, migrate
from agent.store.migrations.lock_timeout import MigrationLockTimeout, MigrationSettingError

BEFORE = ("0013_admitted_index", "0021_run_withdrawal")  # the previous release's heads (cases and ledger branches)
LEDGER_REVISION = "0025_job_ref_width"

pytestmark = pytest.mark.postgres


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


@pytest.fixture()
def old_store(pg_url: str) -> Iterator[str]:
    _previous_release(pg_url)
    yield pg_url


@pytest.fixture()
def report(old_store: str) -> Iterator[psycopg.Connection[Any]]:
    """A reporting session that read ``ledger_run`` and left its transaction open (AccessShareLock held)."""
    conn = psycopg.connect(old_store, application_name="qa-nightly-report")
    conn.execute("SELECT count(*) FROM ledger_run").fetchone()
    yield conn
    conn.close()


def _revisions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return _applied({str(r[0]) for r in conn.execute("SELECT version_num FROM alembic_version").fetchall()})


def _applied(heads: set[str]) -> set[str]:
    """The revisions applied given alembic_version's heads: each head and every revision it revises (a later
    migration on a branch, such as 0027 on the ledger's, is that branch's head once applied)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    return {str(r.revision) for r in script.iterate_revisions(sorted(heads), "base")} if heads else set()


def _job_ref_width(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT character_maximum_length FROM information_schema.columns WHERE "
                           "table_name = 'ledger_run' AND column_name = 'job_ref'").fetchone()
    assert row is not None
    return int(row[0])


def _migrate(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate(eng)
    finally:
        eng.dispose()


def _in_background(url: str) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _migrate(url)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def _wait_for_queued_alter(admin: psycopg.Connection[Any], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        row = admin.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock' AND "
                            "relation = to_regclass('ledger_run')").fetchone()
        if row and row[0]:
            return
        time.sleep(0.02)
    raise AssertionError("the migration never queued for ledger_run")


def test_a_held_lock_fails_the_migration_with_the_holder_named_and_nothing_applied(
        old_store: str, report: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """0025 widens ``ledger_run.job_ref`` (ALTER TABLE, ACCESS EXCLUSIVE) while a report holds the table: the
    upgrade fails after its bounded waits, the column and the revision are as before, and the error names the
    table, the session holding it (pid, application) and how to run the upgrade again."""
    monkeypatch.setenv("VEU_MIGRATION_LOCK_TIMEOUT", "0.2")
    monkeypatch.setenv("VEU_MIGRATION_LOCK_RETRIES", "1")
    holder = report.info.backend_pid
    with pytest.raises(MigrationLockTimeout) as caught:
        _migrate(old_store)
    message = str(caught.value)
    assert "ledger_run" in message
    assert f"pid {holder}" in message and "qa-nightly-report" in message
    assert "VEU_MIGRATION_LOCK_TIMEOUT" in message and "veuctl db upgrade" in message
    assert "\n" not in message
    assert LEDGER_REVISION not in _revisions(old_store)
    assert _job_ref_width(old_store) == 300
    report.rollback()  # the report ends: the next attempt goes through
    _migrate(old_store)
    assert {LEDGER_REVISION, "0024_decision_runs_until"} <= _revisions(old_store)
    assert _job_ref_width(old_store) == 620


def test_the_running_release_is_not_held_behind_a_queued_alter_table(
        old_store: str, report: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """While the ALTER waits for the report's lock, a statement of the running release on the same table (here a
    read, as the metering controller's) queues behind it. It goes through once the ALTER gives up (1 s), not when
    the report ends (never, here): before, it waited past its own 5 s limit."""
    monkeypatch.setenv("VEU_MIGRATION_LOCK_TIMEOUT", "1")
    monkeypatch.setenv("VEU_MIGRATION_LOCK_RETRIES", "0")
    with psycopg.connect(old_store, autocommit=True) as admin:
        thread, errors = _in_background(old_store)
        try:
            _wait_for_queued_alter(admin)
            with psycopg.connect(old_store, autocommit=True) as pod:
                pod.execute("SET lock_timeout = '5s'")
                started = time.monotonic()
                try:
                    pod.execute("SELECT count(*) FROM ledger_run").fetchone()
                    waited: float | None = time.monotonic() - started
                except psycopg.errors.LockNotAvailable:
                    waited = None
        finally:
            report.rollback()
            thread.join(60)
    assert not thread.is_alive()
    assert waited is not None, "the running release waited more than 5 s behind the migration's ALTER TABLE"
    assert waited < 4
    assert len(errors) == 1 and isinstance(errors[0], MigrationLockTimeout), errors


def test_a_lock_released_between_attempts_lets_the_upgrade_complete(
        old_store: str, report: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The holder ends within the retries: the upgrade completes on its own, and the log says what it waited for."""
    monkeypatch.setenv("VEU_MIGRATION_LOCK_TIMEOUT", "0.3")
    monkeypatch.setenv("VEU_MIGRATION_LOCK_RETRIES", "20")
    releaser = threading.Timer(1.0, report.rollback)
    releaser.start()
    try:
        _migrate(old_store)
    finally:
        releaser.join()
    assert {LEDGER_REVISION, "0024_decision_runs_until"} <= _revisions(old_store)
    assert _job_ref_width(old_store) == 620
    waited = [r.getMessage() for r in caplog.records if "ledger_run" in r.getMessage()]
    assert waited and "qa-nightly-report" in waited[0], caplog.text


def test_the_lock_timeout_does_not_stay_on_the_pooled_connection(old_store: str, pg_url: str) -> None:
    """The migration's bound is for its own DDL: the connection it used goes back to the pool, and a pod's queries
    on it must wait as long as the server's setting says (here the default, no limit)."""
    eng = make_engine(pg_url)
    try:
        migrate(eng)
        with eng.connect() as conn:
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
    finally:
        eng.dispose()


@pytest.mark.parametrize(("name", "value"), [("VEU_MIGRATION_LOCK_TIMEOUT", "2 minutes"),
                                             ("VEU_MIGRATION_LOCK_TIMEOUT", "-1"),
                                             ("VEU_MIGRATION_LOCK_RETRIES", "1.5"),
                                             ("VEU_MIGRATION_LOCK_RETRIES", "-2")])
def test_a_malformed_lock_setting_is_refused_naming_it(
        old_store: str, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(MigrationSettingError, match=name):
        _migrate(old_store)
    assert LEDGER_REVISION not in _revisions(old_store)


def test_rebuilding_an_index_a_stopped_upgrade_left_invalid_does_not_hold_the_running_release(
        old_store: str) -> None:
    """A Job stopped at its deadline during 0024's concurrent build leaves the index invalid (and the column
    committed); the next upgrade drops and builds it again. The drop ran as a plain DROP INDEX outside the bounded
    transaction: queued behind a report's lock on admission_decision, it held every decision of the running release
    behind it. Dropped CONCURRENTLY, the decision goes through while the report is open."""
    with psycopg.connect(old_store, autocommit=True) as admin:
        admin.execute("ALTER TABLE admission_decision ADD COLUMN runs_until timestamp with time zone")
        for name in ("a", "b"):
            admin.execute(
                "INSERT INTO admission_decision (uid, decided_at, as_of, namespace, kind, name, operation, job_ref, "
                "customer_name, model_key, code, allowed, mode, chips, run_operations, message, pack_versions, detail) "
                "VALUES (%(n)s, now(), '2026-11-02', 'tenant-ae', 'Job', %(n)s, 'CREATE', %(n)s, 'Emirates AI', 'm', "
                "'ALLOW', true, 'enforce', 8, 5e25, '', '{}', '{\"hours\": 10}')", {"n": name})
        with pytest.raises(psycopg.errors.UniqueViolation):
            admin.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_admission_decision_running "
                          "ON admission_decision (customer_name)")
        report = psycopg.connect(old_store, application_name="qa-nightly-report")
        try:
            report.execute("SELECT count(*) FROM admission_decision").fetchone()
            thread, errors = _in_background(old_store)
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and not admin.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE "
                        "'%ix_admission_decision_running%'").fetchone()[0]:  # type: ignore[index]
                    time.sleep(0.02)
                with psycopg.connect(old_store, autocommit=True) as pod:
                    pod.execute("SET lock_timeout = '3s'")
                    try:
                        pod.execute(
                            "INSERT INTO admission_decision (uid, decided_at, as_of, namespace, kind, name, operation, "
                            "job_ref, customer_name, model_key, code, allowed, mode, chips, run_operations, message, "
                            "pack_versions, detail) VALUES ('c', now(), '2026-11-02', 'tenant-ae', 'Job', 'c', "
                            "'CREATE', 'c', 'Emirates AI', 'm', 'ALLOW', true, 'enforce', 8, 5e25, '', '{}', '{}')")
                        recorded = True
                    except psycopg.errors.LockNotAvailable:
                        recorded = False
            finally:
                report.rollback()
                thread.join(60)
        finally:
            report.close()
        valid = admin.execute("SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = "
                              "'ix_admission_decision_running'::regclass").fetchone()
    assert not thread.is_alive() and errors == []
    assert recorded, "a decision of the running release waited more than 3 s behind the migration's DROP INDEX"
    assert valid == (True, False)
    assert "0024_decision_runs_until" in _revisions(old_store)
