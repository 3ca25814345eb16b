"""The Alembic migrations build exactly the schema the SQLModel tables describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import agent.store.tables  # noqa: F401
from agent.store.db import get_engine, migrate


def _schema_drift(url: str) -> list[object]:
    eng = get_engine(url)
    with eng.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        return [d for d in compare_metadata(ctx, SQLModel.metadata)]


def test_sqlite_migrations_match_models(db_url: str) -> None:
    assert _schema_drift(db_url) == []


@pytest.mark.postgres
def test_postgres_migrations_match_models(pg_url: str) -> None:
    assert _schema_drift(pg_url) == []


def test_migrate_is_idempotent(db_url: str) -> None:
    eng = get_engine(db_url)
    migrate(eng)
    migrate(eng)
    assert _schema_drift(db_url) == []
