"""Database engine, sessions and migrations (SQLite embedded by default, PostgreSQL in production)."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, suppress
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Integer, bindparam, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, NoSuchModuleError
from sqlmodel import Session, create_engine

from agent.config import _default_db_url, settings

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_engines: dict[str, Engine] = {}
_lock = threading.Lock()
log = logging.getLogger(__name__)


SQLITE_BUSY_TIMEOUT_SECONDS = 10.0
_T = TypeVar("_T")
# The largest id the store holds (ids and sequence numbers are INTEGER columns, 32 bits on PostgreSQL): a larger
# number names no row, and sent to the store it is the driver's error ("integer out of range"), naming nothing.
MAX_ROW_ID = 2**31 - 1


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    _enter_wal(cur)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _enter_wal(cur: Any) -> None:
    """Switch the store to write-ahead logging, asking again while another process is switching it.

    Processes opening a new store together (the server, the agent and a ``veuctl`` command) each read the
    file, then ask to write its header: SQLite refuses all but one with "database is locked" at once, not
    after the busy timeout, since waiting on a reader that also wants to write would deadlock. Once one has
    switched, the others find the store in WAL and have nothing to write."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_SECONDS
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def make_engine(url: str) -> Engine:
    try:
        return _make_engine(url)
    # OSError: an SQLite file whose directory cannot be made (a path under a file, a read-only volume).
    except (ArgumentError, NoSuchModuleError, ValueError, ImportError, OSError) as exc:
        from policies.errors import PolicyError

        # Never echo the URL: it may carry a password.
        reason = re.sub(r"://([^:/@\s]*):[^@\s]*@", r"://\1:***@", str(exc).strip().splitlines()[0])[:200]
        kind = _url_kind(url)
        scheme = url.split("://", 1)[0] if "://" in url else ""
        if isinstance(exc, NoSuchModuleError) and kind is not None:
            # "Can't load plugin: sqlalchemy.dialects:postgres": the dialect itself does not load.
            reason = f"unknown database kind {kind!r}"
        elif isinstance(exc, ImportError) and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,40}", scheme):
            # "No module named 'psycopg2'": the kind is known (postgresql+psycopg2, mysql), its driver is missing.
            module = f" (Python module {exc.name!r})" if exc.name else ""
            reason = f"the driver for database kind {scheme!r} is not installed{module}"
        if isinstance(exc, ArgumentError | NoSuchModuleError | ImportError):
            reason += f"; give {URL_FORMS}"
        raise PolicyError(f"database URL (--db / VEU_DATABASE_URL): not usable: {reason}") from None


# The database URLs the store takes (SQLite: a relative PATH after three slashes, an absolute one after four).
URL_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE"


def _url_kind(url: str) -> str | None:
    """The scheme of a URL the store does not take (``postgres``, ``mysql``, ``postgresql+asyncpg``), else None."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,40}", scheme) or scheme in ("sqlite", "postgresql",
                                                                              "postgresql+psycopg"):
        return None
    return scheme


def _sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names, else None (another database, in memory, a ``file:`` URI)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def sqlite_directory_problem(url: str) -> str | None:
    """Why a given SQLite URL's file cannot be made (its directory does not exist, or is a file), else None.

    Only the default store's directory (under XDG_DATA_HOME) is made on first use: for a URL given (--db,
    VEU_DATABASE_URL, the agent config) a typo in the path made the directories and a new, empty store."""
    path = _sqlite_file(url)
    if path is None or url == _default_db_url() or path.parent.is_dir():
        return None
    what = "is not a directory" if path.parent.exists() else "does not exist"
    return f"directory {path.parent} {what}; create it first, or correct the path"


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        problem = sqlite_directory_problem(url)
        if problem is not None:
            raise ValueError(problem)
        path = _sqlite_file(url)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)  # the default store's, made on first use
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    eng = create_engine(url, pool_size=10, max_overflow=20)
    event.listen(eng, "checkin", _note_checkin)
    event.listen(eng, "checkout", _ping_if_idle)
    return eng


# A connection that went back to the pool moments ago is almost surely alive: pinging it on every checkout
# (pool_pre_ping) is a round trip on every admission review. Ping only one idle longer than this; a dead one
# found later is a disconnect error, which invalidates the pool so the next checkout reconnects.
PING_AFTER_IDLE_SECONDS = 2.0


def _note_checkin(dbapi_conn: Any, record: Any) -> None:
    record.info["veu_checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_conn: Any, record: Any, proxy: Any) -> None:
    since = record.info.get("veu_checked_in")
    if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_conn.execute("SELECT 1")
        dbapi_conn.rollback()
    except Exception as exc:
        # The pool discards this connection and checks out another (a fresh one if need be).
        raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: VEU_DATABASE_URL), migrated to the latest schema."""
    url = url or settings().db_url()
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            eng = make_engine(url)
            migrate(eng)
            _engines[url] = eng
        return eng


def migrate(engine: Engine) -> None:
    """Bring the schema to every head revision with Alembic (idempotent).

    A store a newer release has migrated (revisions this one does not know) is left as it is: a pod of the
    previous release that restarts during a rolling upgrade, or after ``helm rollback``, runs on it (newer
    columns have defaults or are nullable), where Alembic would refuse to start."""
    import agent.store.tables  # noqa: F401  (registers every table on SQLModel.metadata)

    cfg = _alembic_config()
    with engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        if pg:
            _migration_lock(conn)
        try:
            with nullcontext() if pg else _sqlite_migration_lock(engine):
                newer = sorted(set(store_revisions(conn)) - known_revisions())
                if newer:
                    log.warning("the store was migrated by a newer release (revision %s): left as it is",
                                ", ".join(newer))
                    return
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "heads")
        finally:
            # A lost connection has released the lock already: never hide the error that lost it.
            with suppress(DBAPIError):
                if pg:
                    conn.rollback()
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": _MIGRATE_LOCK})
                    conn.commit()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every revision this release's migrations define."""
    return frozenset(s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions())


@functools.cache
def head_revisions() -> tuple[str, ...]:
    """The revisions a store of this release is at once migrated (one per branch)."""
    return tuple(sorted(ScriptDirectory.from_config(_alembic_config()).get_heads()))


def pending_revisions(current: Sequence[str]) -> list[str]:
    """This release's revisions a store at ``current`` (its ``alembic_version`` rows) has not applied, in the
    order an upgrade applies them."""
    script = ScriptDirectory.from_config(_alembic_config())
    applied = {r.revision for r in script.iterate_revisions(tuple(current), "base")} if current else set()
    return [r.revision for r in reversed(list(script.walk_revisions())) if r.revision not in applied]


def store_revisions(conn: Any) -> list[str]:
    """The revisions the store is at (``alembic_version``; none for an empty store). Ends the read's
    transaction, so that Alembic then begins one per migration."""
    try:
        return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        conn.rollback()


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """One process migrates an SQLite file at a time, as the advisory lock does on PostgreSQL.

    SQLite runs each DDL statement on its own, outside the migration's transaction: two processes starting
    together on a store with pending migrations (the server and the agent, two ``veuctl`` commands) both
    created the same tables, and one failed with "table ... already exists". A lock file next to the
    database (as its ``-wal`` and ``-shm``) is held for the whole upgrade; the next process then finds
    nothing to do. Without a file (in-memory) or a writable directory there is nothing to share."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        yield
        return
    try:
        fd = os.open(f"{path}-migrate", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    def try_lock() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        _wait_for_migration_lock(try_lock)
        yield
    finally:
        os.close(fd)  # releases the lock


_MIGRATE_LOCK = int.from_bytes(hashlib.sha256(b"veu-governor/migrate").digest()[:8], "big") >> 1
MIGRATE_WAIT_SECONDS = 600.0


def _migration_lock(conn: Any) -> None:
    """One process migrates at a time (pods start together); the others then find nothing to do.

    A session lock, so that it spans the migrations' own transactions, asked for without waiting and
    asked again outside any transaction: a waiter's open transaction would hold back the holder's
    CREATE INDEX CONCURRENTLY, which waits for every older transaction to end (a deadlock)."""
    def try_lock() -> bool:
        got = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)", {"k": _MIGRATE_LOCK}).scalar()
        conn.commit()
        return bool(got)

    _wait_for_migration_lock(try_lock)


def _wait_for_migration_lock(try_lock: Callable[[], bool]) -> None:
    """Ask for the migration lock every 0.2 s (never blocking) until ``try_lock`` gets it, for at most
    ``MIGRATE_WAIT_SECONDS``."""
    deadline = time.monotonic() + MIGRATE_WAIT_SECONDS
    while not try_lock():
        if time.monotonic() > deadline:
            from policies.errors import PolicyError

            raise PolicyError(f"database migration: another process has been migrating this store for over "
                              f"{MIGRATE_WAIT_SECONDS:.0f} s; check for a stuck `veuctl` or pod and retry")
        time.sleep(0.2)


def dispose_all() -> None:
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error (no half-written records)."""
    with Session(get_engine(url), expire_on_commit=False) as s:
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise


# ------------------------------------------------------------------------------------------ driver fast path

_compiled: dict[tuple[int, str], tuple[Any, Any, dict[str, Any], str]] = {}
# What lock_for_transaction sends on PostgreSQL, the key bound as ``k`` (psycopg's pyformat).
_PG_XACT_LOCK = "SELECT pg_advisory_xact_lock(%(k)s)"
# fetch_each: several keys in one statement, in ascending order. A subquery with ORDER BY is never
# flattened into its parent, so each lock is taken as its row comes out of the sort.
_PG_XACT_LOCKS = ("SELECT pg_advisory_xact_lock(k) FROM (SELECT k FROM unnest(%(ks)s::bigint[]) AS k ORDER BY k) "
                  "AS ordered")


def _driver(conn: Any) -> Any:
    """The psycopg connection under a SQLAlchemy connection."""
    return conn.connection.driver_connection


def _reads_only(stmt: Any) -> bool:
    """A SELECT that locks nothing (a locking read must stay inside its transaction)."""
    return bool(getattr(stmt, "is_select", False)) and getattr(stmt, "_for_update_arg", None) is None


def _nothing_sent_yet(raw: Any) -> bool:
    """The psycopg connection has no transaction open on the server, and runs at READ COMMITTED (the
    default): a statement run on its own then sees and does exactly what it would as the first of a
    transaction."""
    from psycopg import IsolationLevel
    from psycopg.pq import TransactionStatus

    return (raw.pgconn.transaction_status == TransactionStatus.IDLE and not raw.autocommit
            and raw.isolation_level in (None, IsolationLevel.READ_COMMITTED))


def fetch_all(s: Session, stmt: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows of a prebuilt Core statement, run on the session's connection (and transaction).

    On PostgreSQL the statement is compiled once and handed to psycopg directly: on the admission path
    SQLAlchemy's per-execution work (execution context, result metadata) costs more than the query.
    Only for statements whose binds and results need no SQLAlchemy type processing (plain numbers, text,
    timestamps, booleans); elsewhere, and on SQLite, it is an ordinary ``execute``.

    When nothing of the transaction has reached the server yet, a read runs as a single-statement
    transaction of its own: the same outcome at READ COMMITTED, where every statement takes its own
    snapshot anyway, without the separate ``BEGIN`` round trip the driver would otherwise send first.
    """
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        return [tuple(r) for r in conn.execute(stmt, params).all()]
    sql, bound = _bind(conn, stmt, params)
    raw = _driver(conn)
    alone = _reads_only(stmt) and _nothing_sent_yet(raw)
    with _as_sqlalchemy_errors(conn, raw, sql, bound), raw.cursor() as cur:
        if alone:
            raw.autocommit = True
        try:
            cur.execute(sql, bound, prepare=True)
        finally:
            if alone:
                raw.autocommit = False
        return cur.fetchall() if cur.description is not None else []


def fetch_each(s: Session, queries: list[tuple[Any, dict[str, Any]]], *, locks: Sequence[int] = ()
               ) -> list[list[tuple[Any, ...]]]:
    """The rows of several reads (prebuilt Core SELECTs, as for :func:`fetch_all`), one list per query.

    On PostgreSQL they are sent together in one pipeline: one round trip for all of them (on their own, as
    for :func:`fetch_all`, when nothing of the transaction has reached the server yet). Each still takes its
    own snapshot at READ COMMITTED, as it would sent one by one. Elsewhere they run one after another.

    ``locks``: first take those transaction-scoped locks (:func:`lock_for_transaction`), in ascending key
    order so that two callers wanting several of the same keys cannot deadlock, in the same round trip;
    the reads then see everything committed by whoever held them before.
    """
    conn = s.connection()
    keys = sorted(set(locks))
    if conn.dialect.name != "postgresql":
        if keys:
            lock_for_transaction(s, keys[0])  # SQLite: one writer at a time, whatever the key
        return [[tuple(r) for r in conn.execute(stmt, params).all()] for stmt, params in queries]
    if not all(_reads_only(stmt) for stmt, _params in queries):
        raise ValueError("fetch_each: only reads that lock nothing may be sent together")
    locking = [(_PG_XACT_LOCKS, {"ks": keys})] if keys else []
    bound = locking + [_bind(conn, stmt, params) for stmt, params in queries]
    raw = _driver(conn)
    alone = not keys and _nothing_sent_yet(raw)
    cursors = [raw.cursor() for _ in bound]
    with _as_sqlalchemy_errors(conn, raw, "; ".join(q for q, _b in bound), {}):
        if alone:
            raw.autocommit = True
        try:
            with raw.pipeline():
                for cur, (sql, params) in zip(cursors, bound, strict=True):
                    cur.execute(sql, params, prepare=True)
            return [cur.fetchall() for cur in cursors[len(locking):]]
        finally:
            if alone:
                raw.autocommit = False
            for cur in cursors:
                cur.close()


def insert_many(s: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) into ``table`` in the session's transaction: one
    :func:`write_each` of :func:`insert_step`."""
    if rows:
        write_each(s, [insert_step(table, rows)])


def insert_step(table: Any, rows: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """The :func:`write_each` step inserting ``rows`` (all with the same keys, at least one) into ``table``:
    the one-row INSERT, which psycopg pipelines (SQLAlchemy's multi-row form would be a new statement text
    for every batch size, re-parsed by the driver each time)."""
    return insert_statement(table, tuple(rows[0])), rows


def write_each(s: Session, steps: list[tuple[Any, list[dict[str, Any]]]], *, commit: bool = False
               ) -> list[tuple[Any, ...]]:
    """Run statements in order in the session's transaction, each with its parameter sets (several: as an
    executemany); the rows the last one returns. On PostgreSQL all of it is one pipelined round trip (each
    statement compiled once, as for :func:`fetch_all`: no SQLAlchemy type processing).

    ``commit=True`` (PostgreSQL) commits the transaction in that same round trip, with these its last
    writes: a lock held until commit (the audit chain's) is then held for the server's work alone, not for
    a round trip back to Python and another out. The session's own commit afterwards finds nothing left
    to commit. Elsewhere the caller commits as usual."""
    steps = [(stmt, params) for stmt, params in steps if params]
    if not steps:
        return []
    conn = s.connection()
    if conn.dialect.name != "postgresql":
        rows: list[tuple[Any, ...]] = []
        for stmt, params in steps:
            result = conn.execute(stmt, params if len(params) > 1 else params[0])
            rows = [tuple(r) for r in result.all()] if result.returns_rows else []
        return rows
    bound = [[_bind(conn, stmt, p) for p in params] for stmt, params in steps]
    raw = _driver(conn)
    cursors = [raw.cursor() for _ in bound]
    with _as_sqlalchemy_errors(conn, raw, "; ".join(b[0][0] for b in bound), {}):
        try:
            with raw.pipeline():
                for cur, b in zip(cursors, bound, strict=True):
                    if len(b) == 1:
                        cur.execute(b[0][0], b[0][1], prepare=True)
                    else:
                        cur.executemany(b[0][0], [params for _sql, params in b])
                if commit:
                    raw.commit()
            last = cursors[-1]
            return [tuple(r) for r in last.fetchall()] if last.description is not None else []
        finally:
            for cur in cursors:
                cur.close()


def reserve_ids(s: Session, table: Any, n: int, *, reads: list[tuple[Any, dict[str, Any]]] | None = None,
                locks: Sequence[int] = ()) -> tuple[list[int], list[list[tuple[Any, ...]]]]:
    """``n`` new ids for rows of ``table`` that this transaction will insert (with :func:`insert_many` or
    :func:`write_each`), so what refers to them can be written in the same round trip; and, when given, the
    rows of ``reads`` after ``locks`` as :func:`fetch_each` reads them, in the same round trip.

    PostgreSQL: from the id's sequence, taken ``ID_BLOCK`` beyond the batch at a time and kept for the
    process's next batches (a rolled-back transaction leaves a gap, as any insert does).
    SQLite: after the highest id, under the database's write lock, which this transaction then holds."""
    conn = s.connection()

    def read() -> list[list[tuple[Any, ...]]]:
        return fetch_each(s, reads or [], locks=locks) if reads is not None or locks else []

    if conn.dialect.name == "postgresql" and n > 0:
        with _ids_lock:
            block = _id_blocks.setdefault(conn.engine, {}).setdefault(table.name, deque())
            have = [block.popleft() for _ in range(min(n, len(block)))]
        if len(have) == n:
            return have, read()
        # The sequence is asked for a block: this batch's ids and the next batches'. A batch that finds its
        # ids here needs no statement for them, and one with nothing to read no round trip before its
        # writes. Ids stay unique and a process hands them out in increasing order; across processes they
        # interleave by block (as with a sequence's own CACHE), so what is "latest" is read by decision time.
        # As before, a rolled-back transaction leaves a gap.
        want = n - len(have)
        *rows, ids = fetch_each(s, [*(reads or []), (_next_ids(table.name), {"n": want + ID_BLOCK})], locks=locks)
        got = sorted(int(r[0]) for r in ids)
        with _ids_lock:
            block.extend(got[want:])
        return have + got[:want], rows
    rows = read()
    if n <= 0:
        return [], rows
    lock_for_transaction(s, 0)
    top = int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
    return list(range(top + 1, top + 1 + n)), rows


# Ids a process takes from a table's sequence at a time beyond what the batch at hand needs.
ID_BLOCK = 64
_id_blocks: weakref.WeakKeyDictionary[Engine, dict[str, deque[int]]] = weakref.WeakKeyDictionary()
_ids_lock = threading.Lock()


@functools.cache
def _next_ids(table_name: str) -> Any:
    return select(func.nextval(func.pg_get_serial_sequence(table_name, "id"))).select_from(
        func.generate_series(1, bindparam("n", type_=Integer)))


_inserts: dict[tuple[str, tuple[str, ...]], Any] = {}


def insert_statement(table: Any, columns: tuple[str, ...]) -> Any:
    """The one-row INSERT of ``columns`` into ``table``, built once."""
    key = (table.name, columns)
    stmt = _inserts.get(key)
    if stmt is None:
        stmt = _inserts[key] = table.insert().values({c: bindparam(c, type_=table.c[c].type) for c in columns})
    return stmt


def lock_key(*parts: str) -> int:
    """A stable 63-bit key for :func:`lock_for_transaction` from the names of what it guards."""
    digest = hashlib.sha256("\0".join(("veu-governor", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# Ids per IN (...) clause: well below SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 500


def in_chunks(items: Iterable[_T], n: int = IN_CHUNK) -> Iterator[list[_T]]:
    """``items`` (a list, or rows streamed from the store) in lists of at most ``n``: one IN (...) clause each."""
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


@contextmanager
def held_while(url: str | None, *parts: str) -> Iterator[bool]:
    """On PostgreSQL, a session advisory lock (:func:`lock_key` of ``parts``) held for the ``with`` block: yields
    False, at once, when another process on the store holds it (two agents running one collector, two controllers
    passes). Elsewhere (SQLite: one host's file) yields True: there is nothing to take."""
    engine = get_engine(url)
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(*parts)
    with engine.connect() as conn:
        held = bool(conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)", {"k": key}).scalar())
        conn.commit()
        try:
            yield held
        finally:
            if held:
                try:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": key})
                    conn.commit()
                except Exception:
                    conn.invalidate()  # a dropped connection has released the lock with it


def lock_for_transaction(s: Session, key: int) -> None:
    """Hold ``key`` until the session's transaction ends (PostgreSQL: a transaction-scoped advisory lock).

    SQLite has one writer at a time: a write statement (even one touching no row) begins the transaction
    and takes the database's RESERVED lock, waiting up to busy_timeout, for the rest of the transaction.
    That serialises every holder of any key, and what is read after it is the latest commit.
    """
    from sqlalchemy import text

    conn = s.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PG_XACT_LOCK, {"k": key})
    else:
        conn.execute(text("DELETE FROM change_marker WHERE 0 = 1"))


def _bind(conn: Any, stmt: Any, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The statement's SQL (compiled once per statement object) and its bound parameters.

    Parameters marked with :func:`binary_arrays` go in psycopg's binary format (``%(name)b``): the text
    format quotes and escapes each element of an array, a regular-expression pass over every string, which
    for a batch's worth of audit entries costs more than the statement."""
    key = (id(stmt), conn.dialect.name)
    hit = _compiled.get(key)
    if hit is None or hit[0] is not stmt:
        compiled = stmt.compile(dialect=conn.dialect)
        sql = compiled.string
        if conn.dialect.name == "postgresql":
            for name in _ARRAY_PARAMS.get(id(stmt), ()):
                sql = sql.replace(f"%({name})s", f"%({name})b")
        hit = (stmt, compiled, dict(compiled._bind_processors), sql)
        _compiled[key] = hit
    _stmt, compiled, procs, sql = hit
    bound = compiled.construct_params(params)
    for name, proc in procs.items():
        if name in bound and bound[name] is not None:
            bound[name] = proc(bound[name])
    return sql, bound


_ARRAY_PARAMS: dict[int, frozenset[str]] = {}


def binary_arrays(stmt: Any, *names: str) -> Any:
    """Mark ``names`` as array parameters of ``stmt`` (a prebuilt statement kept for the process's life),
    sent in binary format by :func:`fetch_all`, :func:`fetch_each` and :func:`write_each`."""
    _ARRAY_PARAMS[id(stmt)] = frozenset(names)
    return stmt


@contextmanager
def _as_sqlalchemy_errors(conn: Any, raw: Any, sql: str, bound: dict[str, Any]) -> Iterator[None]:
    """As SQLAlchemy's own execute would: a lost connection is invalidated (with the pool's older ones),
    and callers see the same DBAPIError subclasses (OperationalError for an outage)."""
    dialect = conn.dialect
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        lost = bool(dialect.is_disconnect(exc, raw, None))
        if lost:
            conn.invalidate(exc)
            conn.engine.pool._invalidate(None, exc)
        raise DBAPIError.instance(sql, bound, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
                                  dialect=dialect) from exc
