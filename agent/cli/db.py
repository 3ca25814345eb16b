"""`veuctl db`: migrate the store's schema (the Helm chart's migration Job runs `veuctl db upgrade`)."""

from __future__ import annotations

import typer
from sqlalchemy import inspect

from agent.cli._common import DbOpt, JsonOpt, db_url, emit
from agent.config import settings
from agent.store.db import get_engine

db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@db_app.command("upgrade")
def upgrade(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Apply every pending Alembic migration (idempotent)."""
    url = db_url(db) or settings().db_url()
    eng = get_engine(url)
    tables = sorted(inspect(eng).get_table_names())
    emit({"database": _redact(url), "tables": len(tables), "status": "up to date"}, json_)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
