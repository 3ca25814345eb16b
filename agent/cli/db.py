"""`veuctl db`: migrate the store's schema (the Helm chart's migration Job runs `veuctl db upgrade`), and copy a
store into an empty one (`veuctl db copy`: a trial's SQLite store into production PostgreSQL)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError

from agent.cli._common import (
    DbOpt,
    JsonOpt,
    UsageError,
    db_url,
    emit,
    err_console,
    not_blank,
    one_line,
    store_error,
    table,
)
from agent.config import settings
from agent.store.db import (
    _sqlite_file,
    get_engine,
    head_revisions,
    known_revisions,
    make_engine,
    pending_revisions,
    sqlite_directory_problem,
    store_revisions,
)

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


def _redact(url: str) -> str:
    """The URL without its credentials: user and password, and a libpq ``?password=`` (the migration Job's
    output is its log)."""
    try:
        u = make_url(url)
    except ArgumentError:
        return "***"
    auth = "***@" if u.username is not None or u.password is not None else ""
    port = f":{u.port}" if u.port is not None else ""
    database = f"/{u.database}" if u.database is not None else ""
    query = "&".join(f"{k}={'***' if k.lower() in _SECRET_PARAMS else v}"
                     for k, vs in u.query.items() for v in ((vs,) if isinstance(vs, str) else vs))
    return f"{u.drivername}://{auth}{u.host or ''}{port}{database}{'?' + query if query else ''}"


_SECRET_PARAMS = ("password", "sslpassword")


@contextmanager
def _store_errors(url: str) -> Iterator[None]:
    """The store the URL names cannot be reached, or is not a database: one line saying what to check
    (:func:`agent.cli._common.store_error`; the migration Job's log is read by whoever has to fix it)."""
    try:
        yield
    except DatabaseError as exc:
        code, line = store_error(exc, url)
        sys.stderr.write(f"error: {line}\n")
        raise typer.Exit(code) from None


@db_app.command("upgrade")
def upgrade(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Apply every pending Alembic migration (idempotent).

    On PostgreSQL each migration waits at most VEU_MIGRATION_LOCK_TIMEOUT seconds (default 2; 0: as long as it
    takes) for its table locks, tried again VEU_MIGRATION_LOCK_RETRIES times (default 5); then it fails naming the
    session that held the lock (docs/operations.md, Upgrade)."""
    url = db_url(db) or settings().db_url()
    with _store_errors(url):
        eng = get_engine(url)
        tables = sorted(inspect(eng).get_table_names())
        with eng.connect() as conn:
            revisions = store_revisions(conn)
    newer = sorted(set(revisions) - known_revisions())
    # A store a newer release migrated is left as it is (see agent.store.db.migrate): say so, never "up to date".
    status = f"newer than this release ({', '.join(newer)}): left as it is" if newer else "up to date"
    emit({"database": _redact(url), "tables": len(tables), "revisions": revisions,
          "release_revisions": list(head_revisions()), "status": status}, json_)


@db_app.command("current")
def current(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """The store's revisions and the migrations `veuctl db upgrade` would apply, without migrating (every other
    command migrates the store as it opens it)."""
    url = db_url(db) or settings().db_url()
    missing = _sqlite_file(url)
    if missing is not None and not missing.exists():
        # Opening it would make an empty file: say there is no store here, and leave the path as it is.
        # `db upgrade` makes the file, not a directory the URL names (only the default store's).
        problem = sqlite_directory_problem(url)
        then = f"{problem}; then `veuctl db upgrade` creates the store" if problem else "`veuctl db upgrade` creates it"
        emit({"database": _redact(url), "tables": 0, "revisions": [], "release_revisions": list(head_revisions()),
              "pending": pending_revisions([]),
              "status": f"no store at {missing}: {then} (nothing was created)"}, json_)
        return
    eng = make_engine(url)
    try:
        with _store_errors(url):
            tables = sorted(inspect(eng).get_table_names())
            with eng.connect() as conn:
                revisions = store_revisions(conn)
    finally:
        eng.dispose()
    newer = sorted(set(revisions) - known_revisions())
    pending = [] if newer else pending_revisions(revisions)
    if newer:
        status = f"newer than this release ({', '.join(newer)}): left as it is"
    elif pending:
        status = f"{len(pending)} migrations pending: `veuctl db upgrade` applies them"
    else:
        status = "up to date"
    emit({"database": _redact(url), "tables": len(tables), "revisions": revisions,
          "release_revisions": list(head_revisions()), "pending": pending, "status": status}, json_)


def _store_url(value: str, option: str) -> str:
    """``--from``/``--to``: a database URL, not blank, whose SQLite directory exists."""
    from agent.store.db import sqlite_directory_problem

    not_blank(value, option, "give a database URL (sqlite:///PATH or postgresql://...)")
    problem = sqlite_directory_problem(value)
    if problem is not None:
        raise UsageError(f"{option}: {problem}")
    return value


def _bar() -> Any:
    """A :class:`agent.store.copy.Progress` drawn as a rich progress bar on stderr (on a terminal only): rows copied
    of all, and the table being copied."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    from agent.store.copy import Progress

    class _Bar(Progress):
        def __init__(self) -> None:
            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=err_console, transient=True,
                           disable=not err_console.is_terminal)
            self.task: Any = None

        def begin(self, totals: dict[str, int]) -> None:
            self.bar.start()
            self.task = self.bar.add_task("copying", total=sum(totals.values()))

        def table(self, name: str, rows: int) -> None:
            self.bar.update(self.task, description=f"{name} ({rows} rows)")

        def advance(self, rows: int) -> None:
            self.bar.advance(self.task, rows)

        def stop(self) -> None:
            self.bar.stop()

    return _Bar()


@db_app.command("copy")
def copy(
    from_: str = typer.Option(..., "--from", help="The store to copy (e.g. sqlite:///veu-backup.db); read in one "
                              "snapshot, not migrated; must be at this release's schema (`veuctl db upgrade`)."),
    to: str = typer.Option(..., "--to", help="An empty database (e.g. postgresql://...): migrated, then filled in "
                           "one transaction; a target holding any row is refused."),
    public_key: list[Path] = typer.Option([], "--public-key", help="Trusted public key PEM for the audit "
                                          "checkpoints (repeat); default: the configured signing key."),
    batch: int = typer.Option(2000, "--batch", min=1, max=100_000, help="Rows written per statement."),
    json_: bool = JsonOpt,
) -> None:
    """Copy every row of a store into an empty one (a trial's SQLite store into PostgreSQL), verbatim: ids,
    timestamps, the audit hash chain. Checks row counts and `audit verify` on the target before committing;
    on any failure the target is left as it was."""
    from agent.cli.audit import _keys
    from agent.store.copy import CopyFailed, copy_store

    source, target = _store_url(from_, "--from"), _store_url(to, "--to")
    keys = _keys(public_key)
    bar = _bar()
    try:
        res = copy_store(source, target, shown_source=_redact(source), batch=batch, keys=keys, progress=bar)
    except CopyFailed as exc:
        bar.stop()  # before the error line
        sys.stderr.write(f"error: {one_line(str(exc))}\n")
        raise typer.Exit(1) from None
    finally:
        bar.stop()
    data = {"from": _redact(source), "to": _redact(target), "tables": len(res.tables), "rows": res.rows,
            "seconds": res.seconds, "audit_entries_verified": res.audit_entries,
            "audit_checkpoints_verified": res.audit_checkpoints, "rows_per_table": res.tables,
            "warnings": res.warnings}

    def human(d: dict[str, Any]) -> None:
        table([{"table": k, "rows": v} for k, v in d["rows_per_table"].items()], ["table", "rows"])
        typer.echo(f"copied {d['rows']} rows in {d['tables']} tables from {d['from']} to {d['to']} in "
                   f"{d['seconds']:.1f} s; row counts match; audit trail verified on the target "
                   f"({d['audit_entries_verified']} entries, {d['audit_checkpoints_verified']} signed checkpoint"
                   f"{'' if d['audit_checkpoints_verified'] == 1 else 's'})")
        for w in d["warnings"]:
            typer.echo(f"warning: {w}")

    emit(data, json_, human)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
