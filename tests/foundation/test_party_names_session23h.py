"""Party names that read as one registered party's (case, spacing, Unicode form) are refused, not a second party.

Red flag 28 turns on who the customer is: "an entity headquartered, or whose ultimate parent is headquartered, in any
destination other than those listed in paragraph (a) of supplement no. 5 to part 740". Two registry entries a reader
cannot tell apart ("Zoë AI" typed with a precomposed ë and with e + combining diaeresis, or "LUMEN" beside "Lumen")
give one customer two HQs, two parents and two effective tiers: the compliance officer reads one, the webhook may
apply the other.
"""

from __future__ import annotations

import unicodedata

import pytest
from sqlmodel import select

from agent import parties as svc
from agent.packs import registry
from agent.parties import Conflict
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Party, utc_today

NFC = unicodedata.normalize("NFC", "Zoë AI")
NFD = unicodedata.normalize("NFD", "Zoë AI")


@pytest.mark.parametrize(("registered", "typed"), [
    (NFC, NFD),  # the same letters, composed or decomposed: identical on screen
    ("Lumen Analytics", "LUMEN ANALYTICS"),
    ("Lumen Analytics", "Lumen  Analytics"),  # two spaces
    ("Lumen Analytics", "Lumen\u00a0Analytics"),  # a no-break space
    ("Lumen Analytics", "Ｌｕｍｅｎ Analytics"),  # full-width letters (NFKC)
])
def test_a_party_named_like_a_registered_one_is_refused_naming_it(db_url: str, registered: str, typed: str) -> None:
    with session_scope(db_url) as s:
        svc.add_party(s, registered, "SG", namespaces=["lumen"])
    with pytest.raises(Conflict) as err, session_scope(db_url) as s:
        svc.add_party(s, typed, "CN", namespaces=["other"])
    msg = str(err.value)
    assert msg.startswith("name:") and repr(registered) in msg
    with session_scope(db_url) as s:  # nothing half-written: one party, its tier unchanged, no audit entry
        assert [p.name for p in s.exec(select(Party)).all()] == [registered]
        assert svc.party_view(s, registry(), registered, utc_today())[1].tier == 2
        assert [e.action for e in s.exec(select(AuditEntry)).all()].count("party.create") == 1
        assert svc.party_for_namespace(s, "other") is None


def test_the_registered_party_itself_is_updated_by_its_own_name(db_url: str) -> None:
    """Updating the party under its stored name (with blanks around it, which are stripped) is no look-alike."""
    with session_scope(db_url) as s:
        svc.add_party(s, NFC, "SG")
        svc.add_party(s, f"  {NFC} ", None, namespaces=["zoe"])
    with session_scope(db_url) as s:
        assert [p.name for p in s.exec(select(Party)).all()] == [NFC]
        assert svc.party_for_namespace(s, "zoe").name == NFC  # type: ignore[union-attr]


def test_different_names_are_still_different_parties(db_url: str) -> None:
    with session_scope(db_url) as s:
        for name in ("Lumen Analytics", "Lumen Analytic", "Lumen-Analytics", "Zoe AI", NFC):
            svc.add_party(s, name, "SG")
    with session_scope(db_url) as s:
        assert len(s.exec(select(Party)).all()) == 5
