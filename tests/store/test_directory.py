"""The admission path's namespace → customer snapshot: reloaded when any writer changes parties or mappings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from sqlalchemy import event, text
from sqlmodel import Session

import agent.directory as directory
from agent import parties
from agent.packs import registry
from agent.store import get_engine, session_scope

AS_OF = date(2026, 11, 23)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    u: str = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    monkeypatch.setattr(directory, "TTL", 0.0001)  # check the marker on every lookup
    directory.clear()
    with session_scope(u) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["tenant-ae"])
        parties.add_party(s, "US Lab", "US", None, ["tenant-us"])
    yield u
    directory.clear()


def lookup(u: str, ns: str, cluster: str = "") -> tuple[str | None, int | None]:
    with Session(get_engine(u)) as s:
        party, tier = directory.customer_for(s, registry(), ns, cluster, AS_OF)
        return (party.name if party else None), (tier.tier if tier else None)


def marker(u: str) -> int:
    with get_engine(u).connect() as c:
        return int(c.execute(text("SELECT n FROM change_marker WHERE name = 'parties'")).scalar_one())


def test_every_kind_of_party_write_moves_the_marker_even_plain_sql(url: str) -> None:
    before = marker(url)
    with get_engine(url).begin() as c:
        c.execute(text("UPDATE party SET hq = 'CN' WHERE name = 'Emirates AI'"))
    after_update = marker(url)
    with get_engine(url).begin() as c:
        c.execute(text("DELETE FROM party_namespace WHERE namespace = 'tenant-us'"))
    assert before < after_update < marker(url)


def test_a_namespace_moved_by_sql_applies_to_the_next_review(url: str) -> None:
    assert lookup(url, "tenant-ae") == ("Emirates AI", 2)
    with get_engine(url).begin() as c:  # an operator's direct SQL, not through veuctl
        c.execute(text("UPDATE party_namespace SET party_id = (SELECT id FROM party WHERE name = 'US Lab') "
                       "WHERE namespace = 'tenant-ae'"))
    assert lookup(url, "tenant-ae") == ("US Lab", 1)
    with session_scope(url) as s:  # and through the registry: a new parent in a Tier 3 country
        parties.add_party(s, "Macau Holdings", "MO")
        parties.add_party(s, "US Lab", "US", "Macau Holdings", effective=AS_OF)  # lookups are dated AS_OF
    assert lookup(url, "tenant-ae") == ("US Lab", 3)
    assert lookup(url, "nowhere") == (None, None)


def test_the_snapshot_serves_reviews_without_a_query_while_nothing_changes(
    url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(directory, "TTL", 60.0)
    lookup(url, "tenant-ae")  # loads the snapshot
    statements: list[str] = []
    eng = get_engine(url)
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(eng, "before_cursor_execute", listener)
    try:
        for _ in range(50):
            assert lookup(url, "tenant-us") == ("US Lab", 1)
    finally:
        event.remove(eng, "before_cursor_execute", listener)
    assert statements == []
