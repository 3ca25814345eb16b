"""Alembic environment: runs on the connection handed over by agent.store.db.migrate (or the URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import agent.store.tables  # noqa: F401
from agent.store.migrations.lock_timeout import bounded, lock_wait

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


def _migrate(connection: Connection) -> None:
    # Read first: a malformed setting fails before anything is applied.
    wait = lock_wait(context.get_x_argument(as_dictionary=True))
    # A transaction per migration, which Alembic begins and commits: a migration that must build an index
    # outside any transaction (CREATE INDEX CONCURRENTLY) can then step out of it (autocommit_block). On PostgreSQL
    # each of those transactions waits a bounded time for its locks (agent.store.migrations.lock_timeout): an
    # ALTER TABLE queued behind another session's lock held the running release's writes behind it.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                      transaction_per_migration=True)

    def run_all() -> None:
        with context.begin_transaction():
            context.run_migrations()

    bounded(connection, wait, run_all)


run()
