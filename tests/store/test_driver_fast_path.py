"""The driver fast path on PostgreSQL (fetch_all, fetch_each, write_each): what runs as its own transaction,
what stays in the caller's, and that nothing is lost."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, insert, select, text
from sqlmodel import Session

from agent.store import get_engine
from agent.store.db import fetch_all, fetch_each, lock_key, write_each

META = MetaData()
T = Table("fast_path_probe", META, Column("id", Integer, primary_key=True), Column("v", String(20)))
_INSERT = text("INSERT INTO fast_path_probe (v) VALUES (:v) RETURNING id")
_BAD = text("INSERT INTO fast_path_probe (id, v) VALUES (:id, :v) RETURNING id")


@pytest.fixture()
def engine(pg_url: str) -> Any:
    eng = get_engine(pg_url)
    META.create_all(eng)
    return eng


def _status(s: Session) -> TransactionStatus:
    return TransactionStatus(s.connection().connection.driver_connection.pgconn.transaction_status)


def _committed(pg_url: str) -> list[str]:
    with psycopg.connect(pg_url) as c:
        return [r[0] for r in c.execute("SELECT v FROM fast_path_probe ORDER BY id").fetchall()]


def test_a_first_read_opens_no_transaction_on_the_server(engine: Any) -> None:
    with Session(engine) as s:
        s.connection()
        assert fetch_all(s, select(T.c.id), {}) == []
        assert _status(s) == TransactionStatus.IDLE  # no BEGIN was sent for it
        assert s.connection().connection.driver_connection.autocommit is False


def test_a_locking_read_stays_in_the_callers_transaction(engine: Any) -> None:
    with Session(engine) as s:
        fetch_all(s, select(T.c.id).with_for_update(), {})
        assert _status(s) == TransactionStatus.INTRANS  # the row locks last until the caller commits
        s.rollback()


def test_writes_committed_with_commit_true_are_durable_on_return(engine: Any, pg_url: str) -> None:
    with Session(engine) as s:
        write_each(s, [(_INSERT, [{"v": "alone"}])], commit=True)
        assert _status(s) == TransactionStatus.IDLE
        assert _committed(pg_url) == ["alone"]  # visible to another connection before the session commits
        s.commit()
    assert _committed(pg_url) == ["alone"]


def test_writes_after_earlier_writes_commit_them_together(engine: Any, pg_url: str) -> None:
    with Session(engine) as s:
        s.connection().execute(insert(T).values(v="first"))
        rows = write_each(s, [(_INSERT, [{"v": "second"}, {"v": "third"}]), (_INSERT, [{"v": "fourth"}])],
                          commit=True)
        assert _status(s) == TransactionStatus.IDLE and len(rows) == 1  # the last statement's rows
        assert _committed(pg_url) == ["first", "second", "third", "fourth"]


def test_an_earlier_write_is_rolled_back_with_a_failed_last_write(engine: Any, pg_url: str) -> None:
    with Session(engine) as s:
        ((row,),) = write_each(s, [(_INSERT, [{"v": "kept"}])], commit=True)
        s.connection().execute(insert(T).values(v="lost"))
        with pytest.raises(Exception, match="duplicate key"):
            write_each(s, [(_INSERT, [{"v": "lost too"}]), (_BAD, [{"id": row, "v": "clash"}])], commit=True)
        s.rollback()
    assert _committed(pg_url) == ["kept"]


def test_a_failed_write_leaves_the_connection_usable(engine: Any, pg_url: str) -> None:
    with Session(engine) as s:
        ((row,),) = write_each(s, [(_INSERT, [{"v": "one"}])], commit=True)
        with pytest.raises(Exception, match="duplicate key"):
            write_each(s, [(_BAD, [{"id": row, "v": "two"}])], commit=True)
        raw = s.connection().connection.driver_connection
        assert raw.autocommit is False
        s.rollback()
        write_each(s, [(_INSERT, [{"v": "three"}])], commit=True)
        s.commit()
    assert _committed(pg_url) == ["one", "three"]


def test_under_repeatable_read_a_read_keeps_the_transactions_snapshot(engine: Any) -> None:
    rr = engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(rr) as s:
        fetch_all(s, select(T.c.id), {})
        assert _status(s) == TransactionStatus.INTRANS  # the first statement fixes the snapshot: not on its own
        s.rollback()


def test_reads_sent_together_each_get_their_own_rows(engine: Any) -> None:
    with Session(engine) as s:
        write_each(s, [(_INSERT, [{"v": "a"}, {"v": "b"}])], commit=True)
        ids, vs = fetch_each(s, [(select(T.c.id).order_by(T.c.id), {}),
                                 (select(T.c.v).where(T.c.v == bindparam("v")), {"v": "b"})])
        assert [r[0] for r in ids] == [1, 2] and vs == [("b",)]
        assert _status(s) == TransactionStatus.IDLE  # sent on their own: no BEGIN


def test_reads_sent_together_inside_a_transaction_see_its_writes(engine: Any) -> None:
    with Session(engine) as s:
        s.connection().execute(insert(T).values(v="uncommitted"))
        (rows,) = fetch_each(s, [(select(T.c.v), {})])
        assert rows == [("uncommitted",)]
        assert _status(s) == TransactionStatus.INTRANS
        s.rollback()


def test_a_locking_read_is_not_sent_with_others(engine: Any) -> None:
    with Session(engine) as s, pytest.raises(ValueError, match="only reads that lock nothing"):
        fetch_each(s, [(select(T.c.id).with_for_update(), {})])


def test_reads_sent_together_on_sqlite_run_one_by_one(db_url: str) -> None:
    from sqlalchemy import create_engine

    eng = create_engine(db_url)
    META.create_all(eng)
    with Session(eng) as s:
        s.connection().execute(insert(T).values(v="x"))
        assert fetch_each(s, [(select(T.c.v), {}), (select(T.c.id), {})]) == [[("x",)], [(1,)]]


def test_reads_after_a_lock_hold_it_until_the_transaction_ends(engine: Any, pg_url: str) -> None:
    key = lock_key("customer", "acme")
    with Session(engine) as s, psycopg.connect(pg_url, autocommit=True) as other:
        (rows,) = fetch_each(s, [(select(T.c.id), {})], locks=[key])
        assert rows == [] and _status(s) == TransactionStatus.INTRANS
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (False,)
        s.commit()
        assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)


def test_several_locks_in_one_statement_are_all_held_until_the_transaction_ends(engine: Any, pg_url: str) -> None:
    keys = [lock_key("customer", name) for name in ("acme", "globex", "initech", "acme")]
    with Session(engine) as s, psycopg.connect(pg_url, autocommit=True) as other:
        (rows,) = fetch_each(s, [(select(T.c.id), {})], locks=keys)
        assert rows == []
        for key in set(keys):
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (False,)
        s.commit()
        for key in set(keys):
            assert other.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)


def test_two_transactions_locking_the_same_keys_in_any_order_do_not_deadlock(engine: Any) -> None:
    import threading

    keys = [lock_key("customer", str(i)) for i in range(20)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def lock(order: list[int]) -> None:
        try:
            for _ in range(20):
                start.wait()
                with Session(engine) as s:
                    fetch_each(s, [(select(T.c.id), {})], locks=order)
                    s.commit()
        except BaseException as exc:  # a deadlock surfaces as psycopg's DeadlockDetected
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=lock, args=(o,)) for o in (keys, keys[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_lock_keys_are_stable_and_distinct() -> None:
    assert lock_key("customer", "acme") == lock_key("customer", "acme") < 2**63
    assert lock_key("customer", "acme") != lock_key("customer", "acme2") != lock_key("case", "acme")


def test_decision_ids_come_a_block_at_a_time_unique_and_increasing(engine: Any, pg_url: str) -> None:
    """A batch finds its ids in the process's block and asks the sequence only when the block runs out; a row
    inserted by anyone else in between takes the sequence's next value, never one of the block's."""
    from agent.store.db import ID_BLOCK, reserve_ids
    from agent.store.tables.cases import AdmissionDecision

    table = AdmissionDecision.__table__  # type: ignore[attr-defined]

    def sequence_at() -> int:
        with psycopg.connect(pg_url) as c:
            row = c.execute("SELECT last_value FROM admission_decision_id_seq").fetchone()
            assert row is not None
            return int(row[0])

    taken: list[int] = []
    with Session(engine) as s:
        taken += reserve_ids(s, table, 3)[0]
        after_first = sequence_at()
        assert after_first == 3 + ID_BLOCK
        taken += reserve_ids(s, table, 2)[0]
        assert sequence_at() == after_first  # from the block: no statement for them
        s.rollback()
    with psycopg.connect(pg_url) as c:  # another writer (another process) meanwhile
        other = c.execute("SELECT nextval('admission_decision_id_seq')").fetchone()
    with Session(engine) as s:
        taken += reserve_ids(s, table, ID_BLOCK)[0]  # the block's rest, then the sequence again
        s.rollback()
    assert taken == sorted(set(taken)) and len(taken) == 5 + ID_BLOCK
    assert other is not None and other[0] not in taken
