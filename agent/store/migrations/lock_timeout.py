"""Bounded lock waits for the migrations' DDL on PostgreSQL, so that a blocked ALTER TABLE never holds the release
that keeps serving while the ``…-migrate`` Job runs.

An ``ALTER TABLE`` needs ACCESS EXCLUSIVE. While another session holds any lock on the table (a report left in an open
transaction, ``pg_dump`` taking the backup), the ALTER waits in the table's lock queue, and every later statement on
that table (the webhook's decisions, the metering writes) queues behind the ALTER for as long as the holder keeps its
lock. Each migration's own transaction therefore runs with ``SET LOCAL lock_timeout``: the ALTER gives up, the queue
drains, the migration's transaction is rolled back (nothing of it applied; earlier migrations stay committed), and the
upgrade tries again after a pause as long as the wait, a few times, before failing with the session that held the
lock. Statements a migration runs outside its transaction (``autocommit_block``: ``CREATE INDEX CONCURRENTLY``, 0024's
batched backfill) are not bounded: they take no lock that holds the running release, and the concurrent build's wait
for older transactions must not fail the upgrade.

Settings (the Helm chart sets them from ``migrations.lockTimeoutSeconds`` / ``migrations.lockRetries``), or
``alembic -x lock_timeout=… -x lock_retries=…``: ``VEU_MIGRATION_LOCK_TIMEOUT`` (seconds, default 2, applied in whole
milliseconds rounded up; 0 waits as long as it takes, as before) and ``VEU_MIGRATION_LOCK_RETRIES`` (attempts after
the first, default 5).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from policies.errors import PolicyError

TIMEOUT_SETTING = "VEU_MIGRATION_LOCK_TIMEOUT"
RETRIES_SETTING = "VEU_MIGRATION_LOCK_RETRIES"
# Below the webhook's timeoutSeconds (3 by default): a decision queued behind a waiting ALTER is still answered.
DEFAULT_TIMEOUT_SECONDS = 2.0
DEFAULT_RETRIES = 5
_LOCK_NOT_AVAILABLE = "55P03"
# PostgreSQL's lock_timeout is a 32-bit count of milliseconds: a longer wait cannot be set (about 24.8 days).
_MAX_MILLISECONDS = 2**31 - 1
_log = logging.getLogger("agent.store.migrations")


class MigrationSettingError(PolicyError):
    """VEU_MIGRATION_LOCK_TIMEOUT or VEU_MIGRATION_LOCK_RETRIES is not a number the migration can use."""


class MigrationLockTimeout(PolicyError):
    """A migration's DDL did not get its lock within the bounded waits; the message names the holder and what to do."""


@dataclass(frozen=True)
class LockWait:
    timeout: float  # seconds per attempt; 0: no bound (the server's wait)
    retries: int  # attempts after the first


def lock_wait(x_args: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> LockWait:
    """The bound from ``alembic -x`` (``lock_timeout``, ``lock_retries``), else the environment, else the defaults."""
    env = os.environ if environ is None else environ
    x = x_args or {}
    timeout_text = x.get("lock_timeout", env.get(TIMEOUT_SETTING, ""))
    retries_text = x.get("lock_retries", env.get(RETRIES_SETTING, ""))
    timeout = DEFAULT_TIMEOUT_SECONDS
    if timeout_text.strip():
        try:
            timeout = float(timeout_text)
        except ValueError:
            timeout = math.nan
        if not math.isfinite(timeout) or timeout < 0:
            raise MigrationSettingError(
                f"{TIMEOUT_SETTING}: {timeout_text!r} is not a number of seconds (0 or more, e.g. 2 or 0.5; 0 waits "
                "for a lock as long as it takes)")
        if _milliseconds(timeout) > _MAX_MILLISECONDS:
            # Refused here, naming the setting: as a `SET LOCAL lock_timeout` the server rejects it, and every
            # migration failed with an error about an out-of-range parameter that named neither.
            raise MigrationSettingError(
                f"{TIMEOUT_SETTING}: {timeout_text.strip()!r} seconds is more than PostgreSQL's lock_timeout allows "
                f"(at most {_MAX_MILLISECONDS / 1000:.3f} s, about 24.8 days); give fewer seconds, or 0 to wait for a "
                "lock as long as it takes")
    retries = DEFAULT_RETRIES
    if retries_text.strip():
        try:
            retries = int(retries_text)
        except ValueError:
            retries = -1
        if retries < 0:
            raise MigrationSettingError(
                f"{RETRIES_SETTING}: {retries_text!r} is not a whole number of attempts after the first (0 or more)")
    return LockWait(timeout, retries)


def bounded(connection: Connection, wait: LockWait, run: Callable[[], None]) -> None:
    """``run`` (Alembic's ``run_migrations``) with every transaction on ``connection`` bounded by ``wait.timeout``;
    again after a pause when a lock was not available, up to ``wait.retries`` times; then
    :class:`MigrationLockTimeout`."""
    if connection.dialect.name != "postgresql" or wait.timeout <= 0:
        run()
        return
    setting = f"SET LOCAL lock_timeout = '{_milliseconds(wait.timeout)}ms'"

    def on_begin(conn: Connection) -> None:
        # SQLAlchemy's begin (Alembic's per-migration transaction, or an autobegin): the driver opens the transaction
        # with this statement, and SET LOCAL ends with it. In an autocommit block there is no transaction to bound.
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None and not getattr(dbapi, "autocommit", False):
            dbapi.cursor().execute(setting)

    event.listen(connection, "begin", on_begin)
    try:
        for attempt in range(wait.retries + 1):
            try:
                run()
                return
            except OperationalError as exc:
                if _sqlstate(exc) != _LOCK_NOT_AVAILABLE:
                    raise
                tables, held_by, pids = _holders(connection, _tables(exc.statement or ""))
                if attempt == wait.retries:
                    raise MigrationLockTimeout(_message(tables, held_by, pids, wait)) from exc
                _log.warning("migration: no lock on %s within %s s (%s), held by %s: trying again (%d of %d)",
                             ", ".join(tables) or "a table", _seconds(wait.timeout), TIMEOUT_SETTING, held_by,
                             attempt + 1, wait.retries)
                # As long as the wait: the statements that queued behind the DDL run meanwhile.
                time.sleep(wait.timeout)
    finally:
        event.remove(connection, "begin", on_begin)


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


# A word that may name a table follows one of these. The name is read in a lookahead, so the next search starts at
# it: in "INSERT OR UPDATE ON party" the word after UPDATE is ON, itself followed by the table.
_TABLE = re.compile(r'\b(?:ALTER\s+TABLE(?:\s+IF\s+EXISTS)?|ON|UPDATE|INTO|FROM|JOIN|REFERENCES|TRUNCATE(?:\s+TABLE)?'
                    r'|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|LOCK(?:\s+TABLE)?)(?:\s+ONLY)?\s+'
                    r'(?="?([A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)?))', re.IGNORECASE)
# Words those can be followed by that are not tables (CREATE TRIGGER ... INSERT OR UPDATE ON, ON CONFLICT, ON DELETE
# CASCADE, DO UPDATE SET, FROM (SELECT ...) ...).
_NOT_TABLES = frozenset({
    "all", "and", "cascade", "column", "conflict", "constraint", "default", "delete", "each", "exists", "if", "index",
    "insert", "lateral", "not", "null", "on", "only", "or", "restrict", "row", "select", "set", "statement", "table",
    "truncate", "update", "values", "where",
})


def _tables(statement: str) -> list[str]:
    """Every table the statement that timed out names, in order (the wait may be on any of them), else []."""
    out: list[str] = []
    for m in _TABLE.finditer(statement):
        name = m[1]
        if name.lower() not in _NOT_TABLES and name not in out:
            out.append(name)
    return out


def _holders(connection: Connection, tables: list[str]) -> tuple[list[str], str, list[int]]:
    """Of ``tables``, those another session holds a lock on now (else those that exist); those sessions (oldest
    transaction first) as one line; and their pids."""
    if not tables:
        return [], "another session", []
    try:
        # A word the pattern took for a table may be an alias or a column (JOIN ... ON a.x = b.y): only tables count.
        tables = [str(r[0]) for r in connection.execute(text(
            "SELECT t FROM unnest(CAST(:ts AS text[])) WITH ORDINALITY AS u(t, n) WHERE to_regclass(t) IS NOT NULL "
            "ORDER BY n"), {"ts": tables})]
        rows = connection.execute(text(
            "SELECT a.pid, a.application_name, a.usename, a.state, a.xact_start, left(a.query, 120), "
            "array_agg(DISTINCT l.relation::regclass::text) "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted AND l.locktype = 'relation' "
            "AND l.relation IN (SELECT to_regclass(t) FROM unnest(CAST(:ts AS text[])) AS t) "
            "AND l.pid <> pg_backend_pid() GROUP BY a.pid, a.application_name, a.usename, a.state, a.xact_start, "
            "a.query ORDER BY a.xact_start NULLS LAST LIMIT 3"), {"ts": tables}).all()
        connection.rollback()
    except DBAPIError:
        connection.rollback()  # the failed lookup must not leave the next attempt in an aborted transaction
        return tables, "another session", []
    if not rows:
        return tables, "another session (it has ended since)", []
    held = list(dict.fromkeys(str(t) for r in rows for t in r[6]))
    named = [t for t in tables if t in held] + [t for t in held if t not in tables]
    out = []
    for pid, app, user, state, since, query, _ in rows:
        query_text = " ".join(str(query or "").split())
        out.append(f"pid {pid} (application {app or '?'}, user {user or '?'}, {state or '?'}"
                   f"{f' since {since:%Y-%m-%d %H:%M:%S %Z}' if since else ''}: {query_text})")
    return named, "; ".join(out), [int(r[0]) for r in rows]


def _milliseconds(seconds: float) -> int:
    """``seconds`` as PostgreSQL's lock_timeout in whole ms, rounded up and at least 1: 0 ms would mean no limit."""
    return max(1, math.ceil(round(seconds * 1000, 6)))


def _seconds(value: float) -> str:
    return f"{value:g}"


def _message(tables: list[str], held_by: str, pids: list[int], wait: LockWait) -> str:
    attempts = wait.retries + 1
    end = (f"SELECT pg_terminate_backend({pids[0]}) ends it" if len(pids) == 1 else
           "SELECT pg_terminate_backend(pid) ends one")
    where = (f"table{'s' if len(tables) > 1 else ''} {', '.join(tables)}" if tables else
             "table (see the statement in the log)")
    return (f"migration: no lock on {where} within "
            f"{_seconds(wait.timeout)} s ({TIMEOUT_SETTING}), {attempts} attempt{'s' if attempts != 1 else ''} "
            f"({RETRIES_SETTING}); held by {held_by}. Nothing of this migration was applied (those before it are "
            f"committed), and the running release waited at most {_seconds(wait.timeout)} s per attempt. End that "
            f"session or let it finish ({end}), then run `veuctl db upgrade` (or `helm upgrade`) again; or raise "
            f"{TIMEOUT_SETTING} / {RETRIES_SETTING} (chart: migrations.lockTimeoutSeconds, migrations.lockRetries)")


__all__ = ["LockWait", "MigrationLockTimeout", "MigrationSettingError", "bounded", "lock_wait"]
