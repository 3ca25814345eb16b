"""Whose namespace was it on the date: namespace → customer mappings keep their history (migration 0026).

An "as of" review (`veuctl admission review --as-of`, the exports) asks whose jobs ran in a namespace on that date. A
namespace moved from customer X to customer Y (``parties add Y --namespace NS --reassign``, a label changed, a label
mapping removed) was read with today's mapping: a past decision re-evaluated as of its date named Y, with Y's tier.
Each change now closes the mapping's period and opens the next; dates before it read the customer of that date. A
namespace's first mapping applies to every earlier date, as before (the store never knew since when).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

import agent.directory as directory
from agent import parties
from agent.packs import registry
from agent.store import get_engine, session_scope
from agent.store.tables.core import utc_today

TODAY = utc_today()
BEFORE = TODAY - timedelta(days=30)


@pytest.fixture(params=["snapshot", "query", "per-namespace",
                        pytest.param("pg-snapshot", marks=pytest.mark.postgres),
                        pytest.param("pg-query", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each of the directory's three read paths: its snapshot, the statement without a cache, per-namespace lookups."""
    path = str(request.param).removeprefix("pg-")
    db_url = str(request.getfixturevalue("pg_url" if request.param.startswith("pg-") else "db_url"))
    monkeypatch.setattr(directory, "TTL", 0.0 if path == "query" else 0.0001)
    if path == "per-namespace":
        monkeypatch.setattr(directory, "SNAPSHOT_MAX", 1)
    directory.clear()
    with session_scope(db_url) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["team-x"])
        parties.add_party(s, "Macau Compute", "MO")
    yield db_url
    directory.clear()


def whose(u: str, ns: str, day: object, cluster: str = "") -> tuple[str | None, int | None]:
    with Session(get_engine(u)) as s:
        party, tier = directory.customer_for(s, registry(), ns, cluster, day)  # type: ignore[arg-type]
        return (party.name if party else None), (tier.tier if tier else None)


def test_a_namespace_reassigned_today_is_the_earlier_customers_on_earlier_dates(url: str) -> None:
    assert whose(url, "team-x", BEFORE) == ("Emirates AI", 2)
    with session_scope(url) as s:
        parties.add_party(s, "Macau Compute", None, namespaces=["team-x"], reassign=True)
    assert whose(url, "team-x", TODAY) == ("Macau Compute", 3)
    assert whose(url, "team-x", BEFORE) == ("Emirates AI", 2)  # was ("Macau Compute", 3)
    with session_scope(url) as s:  # the history is kept through a second move
        parties.add_party(s, "Emirates AI", None, namespaces=["team-x"], reassign=True)
    assert whose(url, "team-x", BEFORE) == ("Emirates AI", 2)
    assert whose(url, "team-x", TODAY) == ("Emirates AI", 2)


def test_a_namespaces_first_mapping_applies_to_every_earlier_date(url: str) -> None:
    with session_scope(url) as s:
        parties.add_party(s, "Macau Compute", None, namespaces=["team-y"])
    assert whose(url, "team-y", BEFORE) == ("Macau Compute", 3)


def test_a_label_mapping_changed_or_removed_keeps_its_earlier_customer_for_earlier_dates(url: str) -> None:
    with session_scope(url) as s:
        parties.sync_label_mappings(s, "fra-1", "c", {"lab": "Emirates AI"})
    with session_scope(url) as s:
        out = parties.sync_label_mappings(s, "fra-1", "c", {"lab": "Macau Compute"})
        assert out.changed
    assert whose(url, "lab", TODAY, "fra-1") == ("Macau Compute", 3)
    assert whose(url, "lab", BEFORE, "fra-1") == ("Emirates AI", 2)
    with session_scope(url) as s:
        assert parties.sync_label_mappings(s, "fra-1", "c", {}).removed
    assert whose(url, "lab", TODAY, "fra-1") == (None, None)
    assert whose(url, "lab", BEFORE, "fra-1") == ("Emirates AI", 2)


def test_a_cluster_wide_registration_replacing_a_label_keeps_the_labels_customer_for_earlier_dates(url: str) -> None:
    with session_scope(url) as s:
        parties.sync_label_mappings(s, "fra-1", "c", {"shared": "Macau Compute"})
    with session_scope(url) as s:
        parties.add_party(s, "Emirates AI", None, namespaces=["shared"])
    assert whose(url, "shared", TODAY, "fra-1") == ("Emirates AI", 2)
    assert whose(url, "shared", BEFORE, "fra-1") == ("Macau Compute", 3)


def test_the_migration_gives_each_existing_mapping_a_period_from_always(db_url: str) -> None:
    """A store upgraded from 0025 with mappings: one open period per mapping, valid from 0001-01-01 (unknown start),
    so every existing decision reads the customer it read before the upgrade."""
    from alembic import command
    from alembic.config import Config

    from agent.store.db import _MIGRATIONS, make_engine

    with session_scope(db_url) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["team-x"])
    eng = make_engine(db_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0023_ownership_date_index")
            conn.commit()
            command.upgrade(cfg, "heads")
            conn.commit()
            rows = conn.execute(text("SELECT namespace, cluster, valid_from, valid_to FROM party_namespace_period")
                                ).all()
            assert [(r[0], r[1], str(r[2])[:10], r[3]) for r in rows] == [("team-x", "", "0001-01-01", None)]
    finally:
        eng.dispose()
