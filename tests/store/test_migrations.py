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


@pytest.mark.postgres
def test_a_customers_admitted_jobs_are_summed_from_the_admitted_index_alone(pg_url: str) -> None:
    """The related-jobs statement's WHERE implies ix_admission_decision_admitted's predicate, so PostgreSQL can
    answer the customer-wide sum with an index-only scan (a change to how ``allowed`` is tested would
    silently turn it back into a heap visit per decision of the customer)."""
    from datetime import UTC, datetime, timedelta

    from sqlmodel import Session

    from agent.cases import related_query
    from agent.store.db import _bind

    now = datetime.now(UTC)
    stmt, params = related_query("acme", "llm", now - timedelta(days=90), now - timedelta(days=90), "ns/Job/x", 90,
                                 now)
    with Session(get_engine(pg_url)) as s:
        conn = s.connection()
        sql, bound = _bind(conn, stmt, params)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + sql, bound).all())
    assert "Index Only Scan using ix_admission_decision_admitted" in plan, plan


@pytest.mark.postgres
def test_recording_a_decision_takes_no_lock_on_the_customers_party_row(pg_url: str) -> None:
    """admission_decision.customer_id has no foreign key (migration 0013): no FOR KEY SHARE per decision."""
    from sqlalchemy import inspect

    fks = inspect(get_engine(pg_url)).get_foreign_keys("admission_decision")
    assert [fk["referred_table"] for fk in fks] == ["redflag_case"]


@pytest.mark.postgres
def test_pods_starting_together_migrate_one_at_a_time(pg_url: str) -> None:
    """Replicas of a new release start together on a store of the old one: one migrates (a transaction per
    migration; 0013 builds its index CONCURRENTLY, outside any), the others wait and find nothing to do."""
    import threading

    from agent.store.db import make_engine

    engines = [make_engine(pg_url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(engine: object) -> None:
        try:
            migrate(engine)  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    hung = [t for t in threads if t.is_alive()]
    for e in engines:
        e.dispose()
    assert hung == [] and errors == []
    assert _schema_drift(pg_url) == []
    with get_engine(pg_url).connect() as conn:
        valid = conn.exec_driver_sql(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_admission_decision_admitted'::regclass").scalar()
    assert valid is True


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_semiannual_report_end_user_address_and_value_migrate_onto_existing_parties_and_shipments(
        backend: str, request: pytest.FixtureRequest) -> None:
    """0016/0017 add ``party.address`` and ``shipment.value_usd`` (§ 748.15(f)(1)(i)(A) and (D)) to a store that
    already holds parties and shipments: existing rows read '' and NULL (never recorded), the party triggers
    0010 put on ``party`` still fire, and both migrations go down and up again."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from agent.store.db import _MIGRATIONS, make_engine

    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    eng = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    before = ("0014_namespace_source", "0011_reservation_expiry")
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            for rev in before:
                command.downgrade(cfg, rev)
            conn.commit()
            heads = {r[0] for r in conn.exec_driver_sql("SELECT version_num FROM alembic_version")}
            assert set(before) <= heads and not heads & {"0016_party_address", "0017_shipment_value"}
            conn.execute(text("INSERT INTO party (name, hq, created_at, updated_at) "
                              "VALUES ('Gulf AI', 'AE', :t, :t)"), {"t": "2026-01-01 00:00:00"})
            pid = conn.execute(text("SELECT id FROM party WHERE name = 'Gulf AI'")).scalar()
            conn.execute(text("INSERT INTO shipment (day, consignee_id, destination, accelerator, count, tpp_each, "
                              "eccn, via, reference, created_at) VALUES ('2026-02-10', :p, 'AE', 'h100-sxm', 64, "
                              "15832, '3A090.a', 'licence', '', :t)"), {"p": pid, "t": "2026-02-10 00:00:00"})
            conn.commit()
            command.upgrade(cfg, "heads")
            conn.commit()
            assert conn.execute(text("SELECT address FROM party")).scalar() == ""
            assert conn.execute(text("SELECT value_usd FROM shipment")).scalar() is None
            marker = conn.execute(text("SELECT n FROM change_marker WHERE name = 'parties'")).scalar()
            conn.execute(text("UPDATE party SET address = 'Hub71, Abu Dhabi' WHERE id = :p"), {"p": pid})
            conn.execute(text("UPDATE shipment SET value_usd = 1750000.5"))
            conn.commit()
            after = conn.execute(text("SELECT n FROM change_marker WHERE name = 'parties'")).scalar()
            assert isinstance(after, int) and isinstance(marker, int) and after > marker
            assert conn.execute(text("SELECT value_usd FROM shipment")).scalar() == 1750000.5
            # Down and up again: the columns go, the rows stay, and come back with the defaults.
            for rev in before:
                command.downgrade(cfg, rev)
            conn.commit()
            assert conn.execute(text("SELECT count(*) FROM shipment")).scalar() == 1
            command.upgrade(cfg, "heads")
            conn.commit()
            assert conn.execute(text("SELECT address FROM party")).scalar() == ""
    finally:
        eng.dispose()
    assert _schema_drift(url) == []
