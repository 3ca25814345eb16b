"""Parties and sites in the store, on the embedded SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import json
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


def test_a_site_with_chips_on_record_keeps_its_country_unless_the_change_is_a_stated_correction(db_url: str) -> None:
    # Caps, exports and reports place every past holding by its site's country: a silent change would move
    # them all, so it is refused with what to do, and a stated correction is kept in the audit trail.
    from agent.parties import Conflict
    from agent.store.tables.audit import AuditEntry
    from agent.store.tables.core import Holding, Site, utcnow

    with session_scope(db_url) as s:
        site = svc.add_site(s, "fra1", "DE")
        svc.add_site(s, "empty1", "DE")
        s.add(Holding(source="csv", external_id="fra1-1", site_id=site.id, accelerator="h100-sxm", count=8,
                      first_seen=utcnow()))
    with session_scope(db_url) as s, pytest.raises(Conflict, match=r"--country: site fra1 is in DE and has 1 holdings"):
        svc.add_site(s, "fra1", "SG")
    with session_scope(db_url) as s:
        assert s.exec(select(Site).where(Site.name == "fra1")).one().country == "DE"
        svc.add_site(s, "empty1", "SG")  # nothing recorded there yet: a plain update
        svc.add_site(s, "fra1", "SG", correct_country=True)
    with session_scope(db_url) as s:
        assert {x.name: x.country for x in s.exec(select(Site)).all()} == {"fra1": "SG", "empty1": "SG"}
        log = [(e.action, e.subject, json.loads(e.payload).get("before", {}).get("country"))
               for e in s.exec(select(AuditEntry).order_by(AuditEntry.seq)).all() if e.action.startswith("site.")]
    assert log == [("site.create", "site:fra1", None), ("site.create", "site:empty1", None),
                   ("site.update", "site:empty1", "DE"), ("site.update", "site:fra1", "DE")]
