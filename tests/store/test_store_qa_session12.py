"""The store on an operator's upgrade path: processes starting together, a store a newer release migrated,
what `veuctl db upgrade` prints, and a database URL that cannot be used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import agent.store.tables  # noqa: F401
from agent.store.db import _MIGRATIONS, dispose_all, get_engine, make_engine, migrate

# Each process waits for the go file, then migrates: the start is as close together as pods' are.
_STARTER = """
import os, sys, time
from agent.store.db import get_engine
go = sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.005)
get_engine(sys.argv[1])
"""


# Each process opens a new store in each round as soon as that round's go file appears.
_OPENER = """
import os, sys, time
from agent.store.db import make_engine
base, rounds = sys.argv[1], int(sys.argv[2])
for r in range(rounds):
    while not os.path.exists(f"{base}/go-{r}"):
        time.sleep(0.001)
    eng = make_engine(f"sqlite:///{base}/veu-{r}.db")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    eng.dispose()
"""


def _heads() -> list[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return sorted(ScriptDirectory.from_config(cfg).get_heads())


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_processes_opening_a_new_sqlite_store_together_all_switch_it_to_wal(tmp_path: Path) -> None:
    """Each process switches a new store to WAL when it connects. Two that read the new file together and then
    both asked to write its header: SQLite refused one with "database is locked" at once, whatever the busy
    timeout (waiting would deadlock), and the server, the agent or `veuctl` started beside it failed."""
    rounds = 40
    procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(tmp_path), str(rounds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(3)  # every process has imported the store and is waiting
    for r in range(rounds):
        (tmp_path / f"go-{r}").touch()
        time.sleep(0.05)
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(procs), [err.strip().splitlines()[-1:] for _out, err in outcomes]


def test_processes_starting_together_on_a_new_sqlite_store_migrate_one_at_a_time(tmp_path: Path) -> None:
    """The server, the agent and a `veuctl` command started together on an SQLite store with pending
    migrations: SQLite runs each DDL statement outside the migration's transaction, so all of them created the
    same tables and all but one failed ("table party already exists"). One migrates; the others wait."""
    url = f"sqlite:///{tmp_path / 'veu.db'}"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _STARTER, url, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(3)  # every process has imported the store and is waiting
    go.touch()
    outcomes = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for f in (p.stdout, p.stderr):
            if f:
                f.close()
    assert [rc for rc, _err in outcomes] == [0, 0, 0, 0], [err.strip().splitlines()[-1:] for _rc, err in outcomes]
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(conn)
            assert sorted(ctx.get_current_heads()) == _heads()
            assert compare_metadata(ctx, SQLModel.metadata) == []
            assert conn.exec_driver_sql("SELECT count(*) FROM change_marker").scalar() == 1
    finally:
        eng.dispose()


def _as_if_a_newer_release_migrated(url: str) -> None:
    """The store at this release's heads, then one revision further (a column this release does not know)."""
    eng = make_engine(url)
    try:
        migrate(eng)
        with eng.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_newer_release' "
                                 "WHERE version_num = '0019_run_reactivated'")
            conn.exec_driver_sql("ALTER TABLE holding ADD COLUMN rack VARCHAR(40) DEFAULT '' NOT NULL")
    finally:
        eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_store_a_newer_release_migrated_is_left_as_it_is_and_still_served(
        backend: str, request: pytest.FixtureRequest) -> None:
    """A pod of the previous release restarting during a rolling upgrade (the migration Job has run), or every
    pod after `helm rollback`: Alembic refused a store at a revision it does not know ("Can't locate revision"),
    so no process of that release started (a traceback from every `veuctl` command, a webhook pod in
    CrashLoopBackOff). Newer columns have defaults or are nullable: the release runs on it, and the store's
    revisions are left as they are."""
    from sqlmodel import select

    from agent.store.db import session_scope
    from agent.store.tables.core import Party

    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    _as_if_a_newer_release_migrated(url)
    dispose_all()
    with session_scope(url) as s:
        s.add(Party(name="Gulf AI", hq="AE"))
    with session_scope(url) as s:
        assert [p.name for p in s.exec(select(Party)).all()] == ["Gulf AI"]
    with get_engine(url).connect() as conn:
        versions = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
    assert "0099_newer_release" in versions and "0019_run_reactivated" not in versions
    r = _cli(url, "db", "upgrade", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "newer than this release (0099_newer_release): left as it is"
    assert "0099_newer_release" in out["revisions"] and "0019_run_reactivated" in out["release_revisions"]


def test_db_upgrade_reports_the_stores_revisions_and_never_its_password(db_url: str, tmp_path: Path) -> None:
    """The migration Job's output is its log: a password given as libpq's ``?password=`` was printed whole
    (only ``user:password@`` was hidden)."""
    from agent.cli.db import _redact

    assert _redact("postgresql://veu:s3cret@db:5432/veu") == "postgresql://***@db:5432/veu"
    assert _redact("postgresql://veu@db/veu?password=s3cret&sslmode=require") == \
        "postgresql://***@db/veu?password=***&sslmode=require"
    assert "s3cret" not in _redact("postgresql:///veu?host=db&user=veu&password=s3cret")
    assert "s3cret" not in _redact("postgresql+psycopg://veu:s3cret@db/veu?sslpassword=s3cret")
    assert _redact(db_url) == db_url
    r = _cli(db_url, "db", "upgrade", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "up to date" and out["revisions"] == out["release_revisions"] == _heads()


def test_an_sqlite_file_whose_directory_cannot_be_made_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """``--db sqlite:////data/veu.db`` with /data a file (or on a read-only volume): a traceback from mkdir."""
    (tmp_path / "data").write_text("not a directory")
    r = _cli(f"sqlite:///{tmp_path / 'data' / 'veu.db'}", "db", "upgrade")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: database URL (--db / VEU_DATABASE_URL): not usable:")


@pytest.mark.postgres
def test_postgres_migrations_match_models_in_types_and_server_defaults(pg_url: str) -> None:
    """The models and the migrated schema agree on column types and server defaults too (the drift test
    compares neither): ``holding.instance`` has the server default 0018 gave it, which rows written by pods of
    the previous release (which name no instance) rely on."""
    with get_engine(pg_url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        assert compare_metadata(ctx, SQLModel.metadata) == []


def _a_value(column: object, i: int, pg: bool) -> object:
    """A plausible value of a reflected column's type (row ``i``: ids 1 and 2, row 2 refers to row 1)."""
    import datetime as dt

    import sqlalchemy as sa

    t = column.type  # type: ignore[attr-defined]
    if isinstance(t, sa.Boolean):
        return True
    if isinstance(t, sa.Integer):
        return i
    if isinstance(t, sa.Float | sa.Numeric):
        return 1.5e26
    if isinstance(t, sa.DateTime):
        at = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
        return at if pg else at.replace(tzinfo=None)  # what UTCDateTime writes on each
    if isinstance(t, sa.Date):
        return dt.date(2026, 1, 2)
    if isinstance(t, sa.JSON):
        return {"params": 4.05e11}
    return f"{column.name}-{i}"[: getattr(t, "length", None) or 60]  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_every_earlier_release_upgrades_with_its_rows_kept_and_readable(
        backend: str, request: pytest.FixtureRequest) -> None:
    """A store of every earlier release (all revisions up to 0001 ... 0017), two rows in each of its tables,
    brought to heads: every row is still there and reads through the models (columns added later have their
    defaults), and the schema is the models'."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlmodel import Session

    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    revisions = sorted(r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions())
    refers_back = {"party": "parent_id", "ledger_model": "base_id"}
    for n in range(1, len(revisions)):
        eng = make_engine(url)
        try:
            with eng.connect() as conn:
                md = sa.MetaData()
                md.reflect(conn)
                md.drop_all(conn)  # the previous release's store
                conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
                if backend == "postgresql":
                    conn.exec_driver_sql("DROP FUNCTION IF EXISTS veu_bump_parties() CASCADE")
                conn.commit()
                cfg.attributes["connection"] = conn
                for rev in revisions[:n]:
                    command.upgrade(cfg, rev)
                conn.commit()
                md = sa.MetaData()
                md.reflect(conn)
                seeded = [t.name for t in md.sorted_tables if t.name not in ("alembic_version", "change_marker")]
                for name in seeded:
                    for i in (1, 2):
                        row = {c.name: _a_value(c, i, backend == "postgresql") for c in md.tables[name].columns}
                        if name in refers_back:
                            row[refers_back[name]] = None if i == 1 else 1
                        conn.execute(md.tables[name].insert().values(**row))
                conn.commit()
            migrate(eng)
            with Session(eng) as s:
                for table in SQLModel.metadata.sorted_tables:
                    rows = s.execute(sa.select(table)).all()
                    assert len(rows) == (2 if table.name in seeded else len(rows)), (revisions[n - 1], table.name)
                for model in (m for m in SQLModel.__subclasses__() if getattr(m, "__table__", None) is not None):
                    s.exec(sa.select(model)).all()  # type: ignore[call-overload]
            with eng.connect() as conn:
                ctx = MigrationContext.configure(conn)
                assert sorted(ctx.get_current_heads()) == _heads()
                assert compare_metadata(ctx, SQLModel.metadata) == [], revisions[n - 1]
        finally:
            eng.dispose()
