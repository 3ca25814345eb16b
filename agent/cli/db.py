"""`veuctl db`: migrate the store's schema (the Helm chart's migration Job runs `veuctl db upgrade`)."""

from __future__ import annotations

import typer
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agent.cli._common import DbOpt, JsonOpt, db_url, emit
from agent.config import settings
from agent.store.db import (
    _sqlite_file,
    get_engine,
    head_revisions,
    known_revisions,
    make_engine,
    pending_revisions,
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


@db_app.command("upgrade")
def upgrade(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Apply every pending Alembic migration (idempotent)."""
    url = db_url(db) or settings().db_url()
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
        emit({"database": _redact(url), "tables": 0, "revisions": [], "release_revisions": list(head_revisions()),
              "pending": pending_revisions([]),
              "status": f"no store at {missing}: `veuctl db upgrade` creates it (nothing was created)"}, json_)
        return
    eng = make_engine(url)
    try:
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


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
