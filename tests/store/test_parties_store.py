"""Parties and sites in the store, on the embedded SQLite and on the real PostgreSQL server."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from agent import parties as svc
from agent.store import session_scope
from agent.store.tables.core import Party
from policies.errors import PartyError, PolicyError
from policies.packs import PackRegistry


def _exercise(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        svc.add_party(s, "Pear Holdings", "China")
        svc.add_party(s, "Pear Cloud SG", "SG", parent="Pear Holdings", namespaces=["pear-train"])
        svc.add_party(s, "Acme", "US", namespaces=["acme"])
    with session_scope(url) as s:
        assert svc.party_for_namespace(s, "pear-train").name == "Pear Cloud SG"  # type: ignore[union-attr]
        _, eff = svc.party_view(s, packs, "Pear Cloud SG", date(2025, 6, 1))
        assert eff.tier == 3
    # A cycle is rejected and nothing of the failed write is kept.
    with pytest.raises(PartyError, match="ownership cycle"), session_scope(url) as s:
        svc.add_party(s, "Pear Holdings", "CN", parent="Pear Cloud SG")
    with session_scope(url) as s:
        top = s.exec(select(Party).where(Party.name == "Pear Holdings")).one()
        assert top.parent_id is None
    with pytest.raises(PolicyError, match="country"), session_scope(url) as s:
        svc.add_party(s, "Bad", "Atlantis")
    with session_scope(url) as s:
        assert s.exec(select(Party).where(Party.name == "Bad")).first() is None


def test_parties_on_sqlite(db_url: str, packs: PackRegistry) -> None:
    _exercise(db_url, packs)


@pytest.mark.postgres
def test_parties_on_postgres(pg_url: str, packs: PackRegistry) -> None:
    _exercise(pg_url, packs)


def test_site_region_must_agree_with_country(db_url: str) -> None:
    with pytest.raises(PolicyError, match="disagrees with region"), session_scope(db_url) as s:
        svc.add_site(s, "dub", "US", provider="aws", region="eu-west-1", region_country="IE")
