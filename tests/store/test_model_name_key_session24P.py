"""Session 24 (P): migration 0027 keys every ledger model by its name as a reader sees it (``ledger_model.name_key``,
unique), and the admission webhook's one lineage statement finds a model by that key through its index.

A store may already hold look-alike models (registered before registration refused them, or by the race review R2
found): the earliest of each set keeps the key, the later ones are left without one, so the unique index builds and
nothing is renamed or lost; the migration's log names each of them and the model it reads as.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from agent.store.db import _alembic_config, make_engine, migrate

NFC = unicodedata.normalize("NFC", "Zoë 70B")
NFD = unicodedata.normalize("NFD", "Zoë 70B")
PARENT = "0025_job_ref_width"  # the ledger branch's head before 0027


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "db_url"))


def _previous_release(url: str, names: list[str]) -> None:
    """The store as the release before 0027 left it, holding models of ``names`` in that order."""
    eng = make_engine(url)
    cfg = _alembic_config()
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            command.downgrade(cfg, PARENT)
            conn.commit()
            conn.execute(text("INSERT INTO party (name, hq, address, created_at, updated_at) "
                              "VALUES ('Acme', 'AE', '', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
            owner = conn.execute(text("SELECT id FROM party WHERE name = 'Acme'")).scalar_one()
            for n in names:
                conn.execute(text("INSERT INTO ledger_model (name, owner_id, published, created_at, updated_at) "
                                  "VALUES (:n, :o, false, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                             {"n": n, "o": owner})
            conn.commit()
    finally:
        eng.dispose()


def _keys(url: str) -> dict[str, Any]:
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            return {str(n): k for n, k in conn.execute(text("SELECT name, name_key FROM ledger_model"))}
    finally:
        eng.dispose()


def test_the_migration_keys_every_model_and_leaves_later_look_alikes_unkeyed(
    url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    from agent.ledger import model_name_key

    _previous_release(url, [NFC, "Lumen 7B", NFD, "Lumen  7B", "lumen 7B"])
    eng = make_engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="agent.store.migrations"):
            migrate(eng)
    finally:
        eng.dispose()
    keys = _keys(url)
    assert keys == {NFC: model_name_key(NFC), "Lumen 7B": model_name_key("Lumen 7B"), NFD: None, "Lumen  7B": None,
                    "lumen 7B": model_name_key("lumen 7B")}
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "migration 0027" in log and repr(NFD) in log and repr(NFC) in log and repr("Lumen  7B") in log, log


def test_the_migration_of_a_store_without_look_alikes_logs_nothing(url: str, caplog: pytest.LogCaptureFixture) -> None:
    _previous_release(url, ["A", "B"])
    eng = make_engine(url)
    try:
        with caplog.at_level(logging.WARNING, logger="agent.store.migrations"):
            migrate(eng)
    finally:
        eng.dispose()
    assert None not in _keys(url).values()
    assert not [r for r in caplog.records if "0027" in r.getMessage()]


def test_a_look_alike_of_a_model_left_unkeyed_is_still_refused(url: str) -> None:
    """A later look-alike the migration kept is its exact name's model; a third spelling is refused naming the keyed
    one."""
    from agent import ledger
    from agent.parties import Conflict
    from agent.store import session_scope

    _previous_release(url, [NFC, NFD])
    eng = make_engine(url)
    try:
        migrate(eng)
    finally:
        eng.dispose()
    with session_scope(url) as s:
        assert ledger.get_model(s, NFD).name == NFD
        with pytest.raises(Conflict) as err:
            ledger.add_model(s, "Zoë  70B", "Acme")
    assert repr(NFC) in str(err.value)


@pytest.mark.postgres
def test_the_webhooks_lineage_statement_finds_a_model_by_name_or_key_through_the_indexes(pg_url: str) -> None:
    """The per-review statement stays one index probe per name on a ledger of thousands of models."""
    import psycopg

    from agent.ledger import lineage_query
    from agent.store import get_engine, session_scope
    from agent.store.tables.core import Party
    from agent.store.tables.ledger import LedgerModel

    eng = get_engine(pg_url)
    with session_scope(pg_url) as s:
        s.add(Party(name="Acme", hq="AE"))
    with eng.begin() as c:
        owner = c.execute(text("SELECT id FROM party")).scalar_one()
        from sqlalchemy import insert

        c.execute(insert(LedgerModel), [{"name": f"model {i}", "owner_id": owner, "published": False}
                                        for i in range(5000)])
    with psycopg.connect(pg_url, autocommit=True) as pc:
        pc.execute("VACUUM ANALYZE ledger_model")
    from datetime import date

    stmt, params = lineage_query([NFD], date(2026, 1, 1)) or (None, {})
    with eng.connect() as c:
        compiled = stmt.compile(dialect=c.dialect)
        sql = compiled.string
        bound = {**compiled.params, **params}
        plan = "\n".join(str(r[0]) for r in c.exec_driver_sql("EXPLAIN " + sql, bound))
    assert "Seq Scan on ledger_model" not in plan, plan
