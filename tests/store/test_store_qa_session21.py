"""The store's schema, its migrations down and up with rows in every table, and what `veuctl db upgrade` /
`veuctl db current` say about a database URL that cannot be used."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import agent.store.tables  # noqa: F401
from agent.store.db import _MIGRATIONS, get_engine, make_engine, migrate


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


# ------------------------------------------------------------------------------------------------ the schema


def test_sqlite_migrations_match_models_in_types_server_defaults_and_the_partial_index(db_url: str) -> None:
    """The drift test compares neither types nor server defaults, and the PostgreSQL one only there: on SQLite the
    migrated columns have the models' types and server defaults too, and ``ix_admission_decision_admitted`` keeps
    its predicate (which compare_metadata does not look at)."""
    eng = get_engine(db_url)
    with eng.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        drift = [d for d in compare_metadata(ctx, SQLModel.metadata)]
        # Alembic's SQLite comparison unquotes a reflected default only when it holds a character: an empty-string
        # server default ('') always reads as changed. Those are checked by reflection instead, below.
        empty_defaults = {(c.table.name, c.name) for t in SQLModel.metadata.tables.values() for c in t.columns
                          if c.server_default is not None and getattr(c.server_default, "arg", None) == ""}
        real = [d for d in drift if not (isinstance(d, list) and len(d) == 1 and d[0][0] == "modify_default"
                                         and (d[0][2], d[0][3]) in empty_defaults)]
        assert real == []
        assert empty_defaults == {("party", "address"), ("holding", "instance")}
        for table, column in empty_defaults:
            reflected = {c["name"]: c for c in sa.inspect(conn).get_columns(table)}[column]
            assert reflected["default"] == "''" and reflected["nullable"] is False, (table, column)
        index_sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'ix_admission_decision_admitted'"
                                         ).scalar()
    assert "WHERE allowed IS TRUE AND run_operations IS NOT NULL" in str(index_sql)


@pytest.mark.postgres
def test_postgres_partial_index_keeps_its_predicate_and_carried_columns(pg_url: str) -> None:
    with get_engine(pg_url).connect() as conn:
        definition = conn.exec_driver_sql("SELECT pg_get_indexdef('ix_admission_decision_admitted'::regclass)").scalar()
    assert "INCLUDE (job_ref, run_operations, model_key)" in str(definition)
    assert "WHERE ((allowed IS TRUE) AND (run_operations IS NOT NULL))" in str(definition)


# ------------------------------------------------------------------------------------- down and up with rows


def _a_value(column: Any, i: int, pg: bool) -> object:
    import datetime as dt

    t = column.type
    if isinstance(t, sa.Boolean):
        return True
    if isinstance(t, sa.Integer):
        return i
    if isinstance(t, sa.Float | sa.Numeric):
        return 1.5e26
    if isinstance(t, sa.DateTime):
        at = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
        return at if pg else at.replace(tzinfo=None)
    if isinstance(t, sa.Date):
        return dt.date(2026, 1, 2)
    if isinstance(t, sa.JSON):
        return {"params": 4.05e11}
    return f"{column.name}-{i}"[: getattr(t, "length", None) or 60]


def _counts(conn: sa.Connection) -> dict[str, int]:
    names = [n for n in sa.inspect(conn).get_table_names() if n != "alembic_version"]
    return {n: int(conn.exec_driver_sql(f'SELECT count(*) FROM "{n}"').scalar_one()) for n in names}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_every_migration_goes_down_and_up_again_with_rows_in_every_table(
        backend: str, request: pytest.FixtureRequest) -> None:
    """A store at heads with two rows in every table (the second referring to the first), taken down one
    migration at a time to base's first revision: each step keeps every row of every table it does not drop.
    On SQLite a migration that dropped a column in batch mode rebuilt the table (DROP TABLE under PRAGMA
    foreign_keys=ON) and failed with "FOREIGN KEY constraint failed" as soon as another table's row referred to
    one of its rows (holdings with their periods, collector runs with their observations)."""
    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    pg = backend == "postgresql"
    cfg = _config()
    script = ScriptDirectory.from_config(cfg)
    eng = make_engine(url)
    try:
        migrate(eng)
        with eng.connect() as conn:
            md = sa.MetaData()
            md.reflect(conn)
            refers_back = {"party": "parent_id", "ledger_model": "base_id"}
            for t in md.sorted_tables:
                if t.name in ("alembic_version", "change_marker"):
                    continue
                for i in (1, 2):
                    row = {c.name: _a_value(c, i, pg) for c in t.columns}
                    if t.name in refers_back:
                        row[refers_back[t.name]] = None if i == 1 else 1
                    conn.execute(t.insert().values(**row))
            conn.commit()
            full = _counts(conn)
            assert all(n >= 1 for n in full.values()), full
            cfg.attributes["connection"] = conn
            steps = 0
            while True:
                heads = [script.get_revision(h) for h in MigrationContext.configure(conn).get_current_heads()]
                conn.rollback()
                tops = sorted((h for h in heads if h is not None and h.down_revision is not None),
                              key=lambda h: h.revision, reverse=True)
                if not tops:
                    break  # 0001 alone: nothing below it holds rows
                down = tops[0].down_revision
                before = _counts(conn)
                command.downgrade(cfg, down if isinstance(down, str) else down[0])
                conn.commit()
                after = _counts(conn)
                kept = {n: c for n, c in before.items() if n in after}
                assert {n: after[n] for n in kept} == kept, tops[0].revision
                steps += 1
            assert steps >= len(list(script.walk_revisions())) // 2
            command.upgrade(cfg, "heads")
            conn.commit()
            again = _counts(conn)
            # Tables every revision above 0001 kept hold their rows; those made later are empty again.
            assert {n: again[n] for n in after if n != "change_marker"} == \
                {n: full[n] for n in after if n != "change_marker"}
            ctx = MigrationContext.configure(conn)
            assert compare_metadata(ctx, SQLModel.metadata) == []
    finally:
        eng.dispose()


# --------------------------------------------------------------------- a database URL that cannot be used

_SETTING = "(--db / VEU_DATABASE_URL)"


def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr, r.stderr
    return lines[0]


@pytest.mark.parametrize("command_", ["upgrade", "current"])
def test_an_unreachable_database_names_the_setting_and_what_to_check(command_: str) -> None:
    """The migration Job's log said "error: database unavailable: connection refused": not which setting holds
    the URL, nor what to check."""
    r = _cli("postgresql://veu@127.0.0.1:1/veu?connect_timeout=2", "db", command_)
    line = _one_line(r)
    assert r.returncode == 1
    assert line.startswith(f"error: database unavailable {_SETTING}: ") and "Connection refused" in line, line
    assert "check that the database is running" in line, line


@pytest.mark.parametrize(("url", "says"), [
    ("postgres://veu:pw@db.example/veu", "unknown database kind 'postgres'"),
    # Dialects SQLAlchemy knows, whose drivers are not installed here: said so (session 21b), not "unknown".
    ("mysql://veu@db.example/veu", "the driver for database kind 'mysql' is not installed"),
    ("postgresql+asyncpg://veu@db.example/veu", "the driver for database kind 'postgresql+asyncpg' is not installed"),
    ("not a url", "Could not parse"),
])
@pytest.mark.parametrize("command_", ["upgrade", "current"])
def test_a_url_of_another_kind_says_which_kinds_the_store_takes(url: str, says: str, command_: str) -> None:
    """``postgres://`` (what many hosted PostgreSQL services hand out) said "Can't load plugin:
    sqlalchemy.dialects:postgres", and ``mysql://`` "No module named 'MySQLdb'": neither what to write instead."""
    r = _cli(url, "db", command_)
    line = _one_line(r)
    assert r.returncode == 2
    assert line.startswith(f"error: database URL {_SETTING}: not usable: "), line
    assert says in line and "give sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in line, line
    assert "pw" not in line.replace("PASSWORD", "")


@pytest.mark.parametrize("command_", ["upgrade", "current"])
def test_a_url_the_driver_refuses_names_the_setting_it_came_from(command_: str, tmp_path: Any) -> None:
    """A file that is not an SQLite database (or a bad libpq option) given in VEU_DATABASE_URL was reported as
    "--db: not a usable database", naming an option that was not given."""
    path = tmp_path / "notes.db"
    path.write_text("not a database\n")
    r = _cli(f"sqlite:///{path}", "db", command_)
    line = _one_line(r)
    assert r.returncode == 2
    assert line.startswith(f"error: database URL {_SETTING}: not a usable database: file is not a database"), line
    assert path.read_text() == "not a database\n"
