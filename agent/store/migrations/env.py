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
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    context.run_migrations()


run()
