"""A migration's lock timeout names the table really waited for, and a sub-millisecond bound is a bound (session 24M).

Review R3 found two defects in the bounded lock waits (``agent/store/migrations/lock_timeout.py``):

- The table named was the first word after ``ON``/``UPDATE``/``INTO``/``FROM``/...: for ``CREATE TRIGGER ... AFTER
  INSERT OR UPDATE OR DELETE ON party`` it was ``OR``, and for ``INSERT INTO a ... SELECT ... FROM b`` it was ``a``
  though the wait was on ``b``: the holder looked up was nobody, and the error said "another session". Every table
  the statement names is looked up (keywords skipped), and the message names the one(s) someone holds.
- ``VEU_MIGRATION_LOCK_TIMEOUT=0.0004`` became ``lock_timeout = '0ms'``, which PostgreSQL reads as no limit: the
  bound is rounded up to whole milliseconds, at least 1 ms.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from agent.store.db import make_engine
from agent.store.migrations.lock_timeout import LockWait, MigrationLockTimeout, _tables, bounded, lock_wait


@pytest.mark.parametrize(("statement", "tables"), [
    ("CREATE TRIGGER party_audit AFTER INSERT OR UPDATE OR DELETE ON party FOR EACH ROW EXECUTE FUNCTION f()",
     ["party"]),
    ("CREATE TRIGGER t BEFORE INSERT OR UPDATE ON party FOR EACH ROW EXECUTE FUNCTION f()", ["party"]),
    ("INSERT INTO ledger_run_new (id, job_ref) SELECT id, job_ref FROM ledger_run", ["ledger_run_new", "ledger_run"]),
    ("ALTER TABLE ONLY ledger_run ALTER COLUMN job_ref TYPE VARCHAR(620)", ["ledger_run"]),
    ('ALTER TABLE "admission_decision" ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES party (id) '
     "ON DELETE CASCADE", ["admission_decision", "party"]),
    ("UPDATE admission_decision SET runs_until = NULL FROM ledger_run WHERE ledger_run.id = 1",
     ["admission_decision", "ledger_run"]),
    ("INSERT INTO a (x) VALUES (1) ON CONFLICT (x) DO UPDATE SET x = 2", ["a"]),
    ("SELECT 1", []),
])
def test_every_table_a_statement_names_is_found_and_no_keyword_is_taken_for_one(
        statement: str, tables: list[str]) -> None:
    assert _tables(statement) == tables


@pytest.mark.parametrize("setting", ["0.0004", "0.0000001", "0.0015"])
def test_a_lock_timeout_under_a_millisecond_is_still_a_bound(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    """PostgreSQL reads lock_timeout = 0 as no limit: 0.0004 s must be 1 ms, never 0 ms."""
    monkeypatch.setenv("VEU_MIGRATION_LOCK_TIMEOUT", setting)
    wait = lock_wait()
    eng = make_engine(pg_url)
    seen: list[str] = []
    try:
        with eng.connect() as conn:
            def run() -> None:
                with conn.begin():
                    seen.append(str(conn.execute(text("SHOW lock_timeout")).scalar()))

            bounded(conn, wait, run)
    finally:
        eng.dispose()
    expected = {"0.0004": "1ms", "0.0000001": "1ms", "0.0015": "2ms"}[setting]
    assert seen == [expected]


@pytest.fixture()
def two_tables(pg_url: str) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE TABLE copy_target (id int)")
        c.execute("CREATE TABLE copy_source (id int)")
    yield pg_url


def test_the_error_names_the_table_read_from_when_its_lock_is_the_one_held(two_tables: str) -> None:
    """``INSERT INTO copy_target SELECT ... FROM copy_source`` waits on copy_source, held by another session: the
    error names copy_source and that session, not copy_target and "another session"."""
    holder: psycopg.Connection[Any] = psycopg.connect(two_tables, application_name="qa-lock-holder")
    holder.execute("LOCK TABLE copy_source IN ACCESS EXCLUSIVE MODE")
    pid = holder.info.backend_pid
    eng = make_engine(two_tables)
    try:
        with eng.connect() as conn:
            def run(c: Connection = conn) -> None:
                with c.begin():
                    c.execute(text("INSERT INTO copy_target (id) SELECT id FROM copy_source"))

            with pytest.raises(MigrationLockTimeout) as caught:
                bounded(conn, LockWait(0.2, 0), run)
    finally:
        eng.dispose()
        holder.close()
    message = str(caught.value)
    assert "copy_source" in message and "qa-lock-holder" in message, message
    assert f"pid {pid}" in message, message
    assert "copy_target" not in message, message
