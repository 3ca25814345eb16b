"""Alembic environment: runs on the connection handed over by agent.store.db.migrate (or the URL)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import agent.store.tables  # noqa: F401

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from agent.config import settings
        from agent.store.db import make_engine

        engine = make_engine(context.config.get_main_option("sqlalchemy.url") or settings().db_url())
        with engine.connect() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection: object) -> None:
    # A transaction per migration, which Alembic begins and commits: a migration that must build an index
    # outside any transaction (CREATE INDEX CONCURRENTLY) can then step out of it (autocommit_block).
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


run()
