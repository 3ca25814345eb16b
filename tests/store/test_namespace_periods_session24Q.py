"""Whose namespace was it on the date, when mappings overlap or were changed outside the API (review R2).

A cluster's own mapping outranks the cluster-wide one from the day it is added: an "as of" review of an earlier
date on that cluster names the cluster-wide customer it named before (a cluster's first mapping of a namespace
already mapped cluster-wide starts today, not "always"). A mapping moved by SQL, or by an older release after a
helm rollback, leaves its open period naming the customer before that move: the next move through the API records
the customer the store held until today too, so the dates that named it still do.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

import agent.directory as directory
from agent import parties
from agent.packs import registry
from agent.store import get_engine, session_scope
from agent.store.tables.core import Party, utc_today

TODAY = utc_today()
BEFORE = TODAY - timedelta(days=30)


@pytest.fixture(params=["snapshot", "query", "per-namespace",
                        pytest.param("pg-snapshot", marks=pytest.mark.postgres),
                        pytest.param("pg-query", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each of the directory's three read paths (snapshot, one statement without a cache, per-namespace lookups),
    on SQLite and PostgreSQL; "team-x" is Emirates AI's cluster-wide since always."""
    path = str(request.param).removeprefix("pg-")
    db_url = str(request.getfixturevalue("pg_url" if request.param.startswith("pg-") else "db_url"))
    monkeypatch.setattr(directory, "TTL", 0.0 if path == "query" else 0.0001)
    if path == "per-namespace":
        monkeypatch.setattr(directory, "SNAPSHOT_MAX", 1)
    directory.clear()
    with session_scope(db_url) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["team-x"])
        parties.add_party(s, "Macau Compute", "MO")
        parties.add_party(s, "Kappa Cloud", "AE")
    yield db_url
    directory.clear()


def whose(u: str, ns: str, day: date, cluster: str = "") -> tuple[str | None, int | None]:
    with Session(get_engine(u)) as s:
        party, tier = directory.customer_for(s, registry(), ns, cluster, day)
        return (party.name if party else None), (tier.tier if tier else None)


def listed(u: str, day: date) -> list[tuple[str, str, str]]:
    """The NVEU customer list's mappings on ``day``: (cluster, namespace, customer)."""
    with Session(get_engine(u)) as s:
        names = {p.id: p.name for p in s.exec(select(Party)).all()}
        return [(c, ns, names[pid]) for c, ns, pid in parties.mappings_on(s, day)]


def test_a_clusters_own_registration_over_a_cluster_wide_one_names_the_cluster_wide_customer_before_today(
        url: str) -> None:
    assert whose(url, "team-x", BEFORE, "fra-1") == ("Emirates AI", 2)
    with session_scope(url) as s:
        parties.add_party(s, "Macau Compute", None, namespaces=["team-x"], cluster="fra-1")
    assert whose(url, "team-x", TODAY, "fra-1") == ("Macau Compute", 3)
    assert whose(url, "team-x", BEFORE, "fra-1") == ("Emirates AI", 2)  # was ("Macau Compute", 3)
    assert whose(url, "team-x", BEFORE, "ams-2") == ("Emirates AI", 2)
    assert listed(url, BEFORE) == [("", "team-x", "Emirates AI")]
    assert listed(url, TODAY) == [("", "team-x", "Emirates AI"), ("fra-1", "team-x", "Macau Compute")]


def test_a_clusters_own_first_mapping_of_an_unmapped_namespace_still_applies_to_every_earlier_date(url: str) -> None:
    with session_scope(url) as s:
        parties.add_party(s, "Macau Compute", None, namespaces=["team-y"], cluster="fra-1")
    assert whose(url, "team-y", BEFORE, "fra-1") == ("Macau Compute", 3)


def test_a_mapping_moved_by_sql_keeps_that_customer_for_earlier_dates_after_the_next_move(url: str) -> None:
    """Emirates AI since always; SQL (or an older release) moves it to Kappa Cloud, leaving Emirates AI's period
    open: until today every date read Kappa Cloud (the current mapping), and still does after the API move."""
    with session_scope(url) as s:
        s.connection().execute(text("UPDATE party_namespace SET party_id = (SELECT id FROM party WHERE name = "
                                    "'Kappa Cloud') WHERE namespace = 'team-x'"))
    assert whose(url, "team-x", BEFORE)[0] == "Kappa Cloud"
    with session_scope(url) as s:
        parties.add_party(s, "Macau Compute", None, namespaces=["team-x"], reassign=True)
    assert whose(url, "team-x", TODAY) == ("Macau Compute", 3)
    assert whose(url, "team-x", BEFORE)[0] == "Kappa Cloud"  # was "Emirates AI"
    assert listed(url, BEFORE) == [("", "team-x", "Kappa Cloud")]


def test_a_move_by_sql_after_a_recorded_move_keeps_each_customers_dates(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Emirates AI until D0, Macau Compute from D0 (through the API), Kappa Cloud by SQL since: the next move keeps
    Emirates AI before D0 and Kappa Cloud (what the store named) from D0 to today; the intermediate customer's
    period is not lost to the stale open one."""
    d0 = TODAY - timedelta(days=60)
    with monkeypatch.context() as m, session_scope(url) as s:
        m.setattr(parties, "utc_today", lambda: d0)  # a move recorded 60 days ago
        parties.add_party(s, "Macau Compute", None, namespaces=["team-x"], reassign=True)
    with session_scope(url) as s:
        s.connection().execute(text("UPDATE party_namespace SET party_id = (SELECT id FROM party WHERE name = "
                                    "'Kappa Cloud') WHERE namespace = 'team-x'"))
    assert whose(url, "team-x", BEFORE)[0] == "Kappa Cloud"
    with session_scope(url) as s:
        parties.add_party(s, "Emirates AI", None, namespaces=["team-x"], reassign=True)
    assert whose(url, "team-x", TODAY) == ("Emirates AI", 2)
    assert whose(url, "team-x", BEFORE)[0] == "Kappa Cloud"  # was "Macau Compute"
    assert whose(url, "team-x", d0 - timedelta(days=1)) == ("Emirates AI", 2)
    with Session(get_engine(url)) as s:
        rows = s.connection().execute(text(
            "SELECT p.name, m.valid_from, m.valid_to FROM party_namespace_period m JOIN party p ON p.id = m.party_id "
            "ORDER BY m.id")).all()
    assert [(n, str(a)[:10], str(b)[:10] if b is not None else None) for n, a, b in rows] == [
        ("Emirates AI", "0001-01-01", str(d0)),
        ("Macau Compute", str(d0), str(TODAY)),  # rows are closed, never otherwise rewritten
        ("Kappa Cloud", str(d0), str(TODAY)),
        ("Emirates AI", str(TODAY), None),
    ]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("pg", marks=pytest.mark.postgres)])
def test_an_unmapped_namespace_is_answered_in_one_statement_without_a_cache(
        backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review path's cost without a cache (VEU_CUSTOMER_CACHE_SECONDS=0): the mapping's latest change comes
    with the chain, also when no mapping names the namespace today."""
    from sqlalchemy import event

    u = str(request.getfixturevalue("pg_url" if backend == "pg" else "db_url"))
    monkeypatch.setattr(directory, "TTL", 0.0)
    with session_scope(u) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["team-x"])
    statements: list[str] = []
    eng = get_engine(u)

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(eng, "before_cursor_execute", count)
    try:
        assert whose(u, "nobody", TODAY) == (None, None)
        assert whose(u, "team-x", TODAY) == ("Emirates AI", 2)
    finally:
        event.remove(eng, "before_cursor_execute", count)
    assert len([q for q in statements if "party_namespace" in q]) == 2, statements
