"""Copy a whole store into an empty one (`veuctl db copy`): a trial's embedded SQLite store into production
PostgreSQL, keeping the compliance record (ids, timestamps, the audit hash chain) as it is.

The source is read in one snapshot and never changed: it must be at this release's head revision already (run
`veuctl db upgrade --db SOURCE` first), so that the trial's backup stays as it was taken. The target is migrated
to the head revision (as every command migrates the store it opens) and must hold no rows; the rows are then
written in one transaction, parents before children, in batches streamed from the source, and checked (row
counts per table, the audit chain verified on the target) before it commits. Any failure rolls it back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.schema import Table
from sqlmodel import Session, SQLModel

from agent.store.db import (
    _sqlite_file,
    head_revisions,
    known_revisions,
    make_engine,
    migrate,
    pending_revisions,
    store_revisions,
)
from policies.errors import PolicyError

BATCH_ROWS = 2000
# Tables a fresh migration writes rows into (0010: the directory's change counter). The target's own rows there
# are no data: they are replaced by the source's, after every other table (whose triggers bump the counter).
SEEDED_BY_MIGRATIONS = frozenset({"change_marker"})
# How long the copy waits for another process's writes to the target to end before giving up (PostgreSQL).
LOCK_WAIT = "10s"


class CopyRefused(PolicyError):
    """The stores are not fit to copy between (a source not at head, a target with rows): nothing was changed."""


class CopyFailed(PolicyError):
    """The copy or its verification failed: the target's transaction was rolled back."""


class Progress:
    """What the copy reports as it goes (the CLI draws a progress bar); by default nothing."""

    def begin(self, totals: dict[str, int]) -> None:
        """Rows to copy per table, in copy order."""

    def table(self, name: str, rows: int) -> None:
        """Copying of ``name`` (``rows`` rows) starts."""

    def advance(self, rows: int) -> None:
        """``rows`` more rows were written."""


@dataclass
class CopyResult:
    tables: dict[str, int] = field(default_factory=dict)  # rows per table, in copy order
    seconds: float = 0.0
    audit_entries: int = 0
    audit_checkpoints: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def product_tables() -> list[Table]:
    """Every table of the store's schema (alembic_version aside), parents before the tables referring to them."""
    import agent.store.tables  # noqa: F401  (registers every table on SQLModel.metadata)

    return list(SQLModel.metadata.sorted_tables)


def copy_store(source: str, target: str, *, shown_source: str = "SOURCE", batch: int = BATCH_ROWS,
               keys: Sequence[Any] | None = None, progress: Progress | None = None) -> CopyResult:
    """Copy every row of the store at ``source`` into the empty store at ``target`` (see the module's doc).

    ``shown_source``: the source's URL as it may be printed (no password), for the hint to migrate it.
    ``keys``: public keys trusted to have signed the audit checkpoints (default: the configured signing key and
    the retired keys, as `veuctl audit verify`). Raises :class:`CopyRefused` or :class:`CopyFailed`."""
    progress = progress or Progress()
    if batch < 1:
        raise ValueError("batch must be at least 1")
    if _same_database(source, target):
        raise CopyRefused("--to: names the same database as --from; give a new, empty database")
    started = time.monotonic()
    tables = product_tables()
    missing = _sqlite_file(source)
    if missing is not None and not missing.exists():
        raise CopyRefused(f"--from: no store at {missing}; check the path (nothing was created)")
    src = make_engine(source)
    try:
        dst = make_engine(target)
        try:
            with _unavailable("--from"):
                _check_source(src, tables, shown_source)
            with _unavailable("--to"):
                _refuse_rows(dst, tables, before_migrating=True)
                _migrate_target(dst)
                with _source_snapshot(src) as sconn:
                    return _copy(sconn, dst, tables, batch, keys, progress, started)
        finally:
            dst.dispose()
    finally:
        src.dispose()


def _same_database(a: str, b: str) -> bool:
    try:
        ua, ub = make_url(a), make_url(b)
    except ArgumentError:
        return False
    family = {"postgresql": "postgresql", "postgresql+psycopg": "postgresql"}
    return (family.get(ua.drivername, ua.drivername), ua.host, ua.port, ua.database) == \
        (family.get(ub.drivername, ub.drivername), ub.host, ub.port, ub.database)


@contextmanager
def _unavailable(option: str) -> Iterator[None]:
    """A store that cannot be reached (refused connection, wrong password, no such database) in one line naming
    the option; never the URL (it may carry a password)."""
    try:
        yield
    except OperationalError as exc:
        raise CopyFailed(f"{option}: database unavailable: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The driver's message (not SQLAlchemy's, which appends the statement and its parameters: the data)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0][:300] if lines else type(orig).__name__


def _check_source(src: Engine, tables: list[Table], shown: str) -> None:
    """The source is a store at this release's head with this release's tables and columns; it is not migrated
    here (a trial's backup stays as it was taken)."""
    with src.connect() as conn:
        revisions = store_revisions(conn)
        have = set(inspect(conn).get_table_names())
        if not revisions or not have:
            raise CopyRefused("--from: not a veu-governor store (no migrations applied); check the URL")
        newer = sorted(set(revisions) - known_revisions())
        if newer:
            raise CopyRefused(f"--from: the store was migrated by a newer release ({', '.join(newer)}); copy it with "
                              "that release's veuctl")
        if tuple(revisions) != head_revisions():
            pending = pending_revisions(revisions)
            where = shown if "***" not in shown else "<the --from URL>"
            raise CopyRefused(f"--from: the store is at revision {', '.join(revisions)}, {len(pending)} migrations "
                              f"behind this release ({', '.join(head_revisions())}); run `veuctl db upgrade --db "
                              f"{where}` first (the copy never changes the source)")
        insp = inspect(conn)
        for t in tables:
            if t.name not in have:
                raise CopyRefused(f"--from: table {t.name} is missing although the store is at head; run `veuctl "
                                  "db upgrade` on it or copy from a backup")
            cols = {c["name"] for c in insp.get_columns(t.name)}
            extra, missing = sorted(cols - set(t.c.keys())), sorted(set(t.c.keys()) - cols)
            if extra or missing:
                what = "; ".join(part for part in (
                    f"columns this release does not know ({', '.join(extra)})" if extra else "",
                    f"no column {', '.join(missing)}, which this release has" if missing else "") if part)
                raise CopyRefused(f"--from: table {t.name} has {what}; it was changed by hand: nothing was copied")
        conn.rollback()


def _migrate_target(dst: Engine) -> None:
    migrate(dst)
    with dst.connect() as conn:
        revisions = store_revisions(conn)
    newer = sorted(set(revisions) - known_revisions())
    if newer:
        raise CopyRefused(f"--to: the store was migrated by a newer release ({', '.join(newer)}); copy with that "
                          "release's veuctl")
    if tuple(revisions) != head_revisions():  # pragma: no cover - migrate() brings it to head
        raise CopyRefused(f"--to: the store is at revision {', '.join(revisions)}, not {', '.join(head_revisions())}")


def _refuse_rows(dst: Engine | Connection, tables: list[Table], *, before_migrating: bool = False) -> None:
    """Refuse a target holding any row (a store in use): the copy never merges."""
    if isinstance(dst, Engine):
        with dst.connect() as conn:
            _refuse_rows(conn, tables, before_migrating=before_migrating)
            conn.rollback()
        return
    have = set(inspect(dst).get_table_names()) if before_migrating else {t.name for t in tables}
    full = []
    for t in tables:
        if t.name in have and t.name not in SEEDED_BY_MIGRATIONS:
            n = int(dst.execute(select(func.count()).select_from(t)).scalar_one())
            if n:
                full.append(f"{t.name} ({n})")
    if full:
        raise CopyRefused(f"--to: the target store holds rows in {', '.join(full)}; copy only into an empty database "
                          "(a new one, or one just made by `veuctl db upgrade`); nothing was changed")


@contextmanager
def _source_snapshot(src: Engine) -> Iterator[Connection]:
    """A connection reading the source in one consistent snapshot (every table as of one moment), read-only."""
    if src.dialect.name == "postgresql":
        with src.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                conn.rollback()
        return
    with src.connect() as conn:
        # pysqlite starts no transaction before a SELECT: each read would see the latest commit on its own.
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def _count(conn: Connection, t: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(t)).scalar_one())


def _copy(sconn: Connection, dst: Engine, tables: list[Table], batch: int, keys: Sequence[Any] | None,
          progress: Progress, started: float) -> CopyResult:
    order = [t for t in tables if t.name not in SEEDED_BY_MIGRATIONS] + \
        [t for t in tables if t.name in SEEDED_BY_MIGRATIONS]
    totals = {t.name: _count(sconn, t) for t in order}
    progress.begin(totals)
    result = CopyResult()
    with dst.connect() as dconn:
        try:
            _lock_target(dconn, tables)
            _refuse_rows(dconn, tables)
            for t in order:
                progress.table(t.name, totals[t.name])
                if t.name in SEEDED_BY_MIGRATIONS:
                    dconn.execute(t.delete())
                _copy_table(sconn, dconn, t, batch, progress)
                result.tables[t.name] = totals[t.name]
            if dconn.dialect.name == "postgresql":
                _reset_sequences(dconn, tables)
            for t in order:
                got = _count(dconn, t)
                if got != totals[t.name]:
                    raise CopyFailed(f"--to: table {t.name} has {got} rows after copying, the source {totals[t.name]}; "
                                     "the target was left as it was (rolled back)")
            _verify_audit(sconn, dconn, keys, result)
            dconn.commit()
        except CopyFailed:
            dconn.rollback()
            raise
        except DBAPIError as exc:
            dconn.rollback()
            if isinstance(exc, OperationalError) and exc.connection_invalidated:
                raise CopyFailed(f"--to: database unavailable: {_first_line(exc)}; the target was left as it was "
                                 "(rolled back)") from None
            raise CopyFailed(f"--to: {_first_line(exc)}; the target was left as it was (rolled back)") from None
        except BaseException:
            dconn.rollback()
            raise
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _lock_target(dconn: Connection, tables: list[Table]) -> None:
    """Hold every table against other writers (a pod already pointed at the target) until the copy commits."""
    if dconn.dialect.name == "postgresql":
        dconn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'")
        names = ", ".join(dconn.dialect.identifier_preparer.quote(t.name) for t in tables)
        try:
            dconn.exec_driver_sql(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE")
        except OperationalError as exc:
            if "lock timeout" in str(exc.orig):
                raise CopyFailed(f"--to: another process kept writing to the target for {LOCK_WAIT}; stop every "
                                 "component that uses it (webhook, API, agent, controllers) and retry") from None
            raise
    else:
        # SQLite: any write statement takes the database's write lock for the rest of the transaction.
        dconn.execute(text("DELETE FROM change_marker WHERE 0 = 1"))


def _copy_table(sconn: Connection, dconn: Connection, t: Table, batch: int, progress: Progress) -> None:
    """Stream ``t``'s rows in primary-key order and insert them in batches, values as they are stored.

    A row referring to a later row of the same table (a party whose parent was registered after it) is written
    without that reference first and given it once the whole table is in (the reference is checked at once)."""
    pk = list(t.primary_key.columns)
    self_refs = [fk.parent.key for fk in t.foreign_keys if fk.column.table is t]
    id_col = pk[0].key if len(pk) == 1 else None
    later: list[dict[str, Any]] = []
    keys = list(t.c.keys())
    insert = t.insert()
    try:
        result = sconn.execution_options(stream_results=True, yield_per=batch).execute(select(t).order_by(*pk))
        parts = result.partitions(batch)
    except DBAPIError as exc:
        raise CopyFailed(f"--from: reading table {t.name} failed: {_first_line(exc)}; the target was left as it "
                         "was (rolled back)") from None
    try:
        while True:
            try:
                part = next(parts, None)
            except DBAPIError as exc:
                raise CopyFailed(f"--from: reading table {t.name} failed: {_first_line(exc)}; the target was left "
                                 "as it was (rolled back)") from None
            if part is None:
                break
            rows = [dict(zip(keys, r, strict=True)) for r in part]
            if self_refs and id_col is not None:
                for row in rows:
                    for col in self_refs:
                        ref = row[col]
                        if ref is not None and ref > row[id_col]:
                            later.append({"_id": row[id_col], "_col": col, "_ref": ref})
                            row[col] = None
            try:
                dconn.execute(insert, rows)
            except DBAPIError as exc:
                first = rows[0].get(id_col) if id_col else None
                where = f" (rows from {id_col} {first})" if first is not None else ""
                raise CopyFailed(f"--to: copying table {t.name}{where} failed: {_first_line(exc)}; the target was "
                                 "left as it was (rolled back); correct the row in the source and retry") from None
            progress.advance(len(rows))
    finally:
        result.close()
    for fix in later:
        dconn.execute(t.update().where(t.c[id_col] == fix["_id"]).values({fix["_col"]: fix["_ref"]}))  # type: ignore[index]


def _reset_sequences(dconn: Connection, tables: list[Table]) -> None:
    """Move each id's sequence past the highest id copied, so that the next row gets a new id (the copy wrote
    the ids itself, which leaves a sequence where it was)."""
    for t in tables:
        for c in t.primary_key.columns:
            if not isinstance(c.type, Integer):
                continue
            seq = dconn.execute(select(func.pg_get_serial_sequence(t.name, c.name))).scalar_one()
            if seq is None:
                continue  # audit_entry.seq: numbered by the chain itself
            top = dconn.execute(select(func.max(c))).scalar_one()
            dconn.execute(text("SELECT setval(:s, :v, :called)"),
                          {"s": seq, "v": top if top is not None else 1, "called": top is not None})


def _verify_audit(sconn: Connection, dconn: Connection, keys: Sequence[Any] | None, result: CopyResult) -> None:
    """`veuctl audit verify` on the target, before it commits; a break is reported with whether the source has it."""
    from agent.audit import verify_chain

    with Session(bind=dconn) as s:
        res = verify_chain(s, keys=list(keys) if keys is not None else None)
    if res.ok:
        result.audit_entries, result.audit_checkpoints = res.checked, res.checkpoints_verified
        result.warnings.extend(res.warnings)
        return
    with Session(bind=sconn) as s:
        before = verify_chain(s, keys=list(keys) if keys is not None else None)
    same = (not before.ok and before.break_seq == res.break_seq)
    why = ("the source's trail fails the same way (`veuctl audit verify --db` on it says so); if its checkpoints "
           "were signed by a key not configured here, give its public key with --public-key" if same else
           "the source's trail verifies, so the copy altered it")
    raise CopyFailed(f"--to: audit verify on the copy: BROKEN at seq {res.break_seq}: {res.reason}; {why}; the "
                     "target was left as it was (rolled back)")

