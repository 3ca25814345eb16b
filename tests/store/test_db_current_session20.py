"""`veuctl db current`: where the store's schema is, and what `veuctl db upgrade` would apply, without changing it.

Before a `helm upgrade` the SRE wants to know whether the release migrates the production store; every other
command (`db upgrade` included) migrates the store as it opens it, so there was no way to ask."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from agent.store.db import _MIGRATIONS, head_revisions, known_revisions, make_engine


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def _tables(url: str) -> set[str]:
    eng = make_engine(url)
    try:
        return set(sa.inspect(eng).get_table_names())
    finally:
        eng.dispose()


def _migrate_to(url: str, revision: str) -> None:
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
    finally:
        eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_db_current_reports_pending_migrations_and_changes_nothing(
        backend: str, request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))

    r = _cli(url, "db", "current", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["revisions"] == [] and out["tables"] == 0
    assert sorted(out["pending"]) == sorted(known_revisions())
    # An SQLite path with no file yet is no store at all (and stays so); an empty PostgreSQL database is one.
    assert out["status"].startswith("no store at" if backend == "sqlite" else
                                    f"{len(known_revisions())} migrations pending"), out["status"]
    assert _tables(url) == set()  # an empty store stays empty: nothing was created

    _migrate_to(url, "0002_ledger")
    before = _tables(url)
    r = _cli(url, "db", "current", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["revisions"] == ["0002_ledger"]
    assert "0001_core" not in out["pending"] and "0002_ledger" not in out["pending"]
    assert set(out["pending"]) == known_revisions() - {"0001_core", "0002_ledger"}
    assert out["release_revisions"] == list(head_revisions())
    assert _tables(url) == before  # not migrated

    assert _cli(url, "db", "upgrade").returncode == 0
    r = _cli(url, "db", "current", "--json")
    out = json.loads(r.stdout)
    assert out["pending"] == [] and out["status"] == "up to date"
    assert out["revisions"] == list(head_revisions())

    r = _cli(url, "db", "current")  # the table form
    assert r.returncode == 0 and "up to date" in r.stdout


def test_db_current_names_a_store_a_newer_release_migrated(db_url: str) -> None:
    assert _cli(db_url, "db", "upgrade").returncode == 0
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('0099_newer_release')")
    eng.dispose()
    r = _cli(db_url, "db", "current", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "newer than this release (0099_newer_release): left as it is"
    assert out["pending"] == []


def test_db_current_on_an_unreachable_database_answers_as_db_upgrade_does() -> None:
    url = "postgresql://veu@127.0.0.1:1/veu?connect_timeout=2"
    r, upgrade = _cli(url, "db", "current"), _cli(url, "db", "upgrade")
    assert (r.returncode, r.stderr) == (upgrade.returncode, upgrade.stderr) == (1, upgrade.stderr), r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: database unavailable")


def test_db_current_on_an_sqlite_path_with_no_store_creates_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "nothing-here.db"
    r = _cli(f"sqlite:///{path}", "db", "current", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"].startswith(f"no store at {path}") and out["revisions"] == []
    assert sorted(out["pending"]) == sorted(known_revisions())
    assert not path.exists()
