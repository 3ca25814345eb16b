"""Supp. 10 ¶8: outside Supp. 5(a), 4E091 weights may sit in a facility "owned or operated by entities headquartered
in, or with an ultimate parent headquartered in" a Supp. 5(a) country: either headquarters qualifies.

The same words make a UVEU eligible (§ 748.15(b)(2)(i), policies.caps.holder_ineligible), and are read there as
either/or. They are the opposite of the AIA and red-flag-28 test ("headquartered outside of, or has an ultimate
parent headquartered outside of"), where either headquarters outside Supp. 5(a) disqualifies. An owner in Macau or
D:5 (itself or its ultimate parent) never qualifies: the product refuses such parties any Data Center VEU role.
"""

from __future__ import annotations

from datetime import date

import pytest

from policies import obligations as ob
from policies.errors import PolicyError
from policies.jurisdictions import tier
from policies.packs import PackRegistry, parse_pack
from policies.parties import PartyRef, effective_tier

ON = date(2025, 9, 1)
PARTIES = {
    "Acme": PartyRef("Acme", "DE"),
    "Gulf": PartyRef("Gulf", "AE"),
    "Dragon": PartyRef("Dragon", "CN"),
    "GulfJapan": PartyRef("GulfJapan", "JP", "Gulf"),      # headquartered in Supp. 5(a); parent outside it
    "AcmeBrasil": PartyRef("AcmeBrasil", "BR", "Acme"),    # headquartered outside; ultimate parent in Supp. 5(a)
    "DragonJapan": PartyRef("DragonJapan", "JP", "Dragon"),  # headquartered in Supp. 5(a); ultimate parent in D:5
}


def _row(packs: PackRegistry, owner: str, country: str = "AE") -> dict[str, object]:
    loc = ob.WeightLocation(
        model="frontier", model_status="4E091", site="dc-1", location=tier(packs, country, ON),
        facility_parties=(effective_tier(packs, PARTIES, owner, ON),), devices=("nvme-1",), dedicated=True,
        security_compliant=True,
    )
    return ob.para8(packs, ON, [loc])[0]


@pytest.mark.parametrize("owner", ["GulfJapan", "AcmeBrasil"])
def test_weights_in_a_tier2_facility_of_an_owner_headquartered_or_ultimately_owned_in_supp5a_may_be_stored(
    packs: PackRegistry, owner: str,
) -> None:
    row = _row(packs, owner)
    assert row["verdict"] == "ok", row
    assert owner in str(row["basis"]) and "Supp. 5(a)" in str(row["basis"])


def test_weights_in_a_tier2_facility_whose_owner_and_parent_are_both_outside_supp5a_are_a_violation(
    packs: PackRegistry,
) -> None:
    row = _row(packs, "Gulf")
    assert row["verdict"] == "violation" and "no owner or operator" in " ".join(row["problems"])  # type: ignore[arg-type]


def test_an_owner_whose_ultimate_parent_is_in_d5_does_not_qualify_although_headquartered_in_supp5a(
    packs: PackRegistry,
) -> None:
    row = _row(packs, "DragonJapan")
    assert row["verdict"] == "violation", row


def _with_reading(packs: PackRegistry, reading: str) -> PackRegistry:
    doc = {"id": "counsel-para8", "version": "1", "title": "counsel", "provisions": [{
        "id": "supp10-model-weight-storage", "title": "¶8 as counsel reads it", "citation": "15 CFR 748 Supp. 10 ¶8",
        "effective_from": "2025-01-13", "compliance_from": "2025-05-15",
        "status": [{"since": "2025-01-13", "codified": True, "enforced": True}],
        "values": {**dict(packs.provision("supp10-model-weight-storage", ON).values), "facility_hq_test": reading},
    }]}
    return PackRegistry([*packs.packs, parse_pack(doc, "counsel-para8.yaml")])


def test_the_stricter_both_headquarters_reading_is_a_pack_override(packs: PackRegistry) -> None:
    strict = _with_reading(packs, "hq-and-ultimate-parent")
    assert _row(strict, "GulfJapan")["verdict"] == "violation"
    assert _row(strict, "AcmeBrasil")["verdict"] == "violation"
    assert _row(strict, "Acme")["verdict"] == "ok"


def test_a_misspelt_reading_is_refused_naming_the_field(packs: PackRegistry) -> None:
    with pytest.raises(PolicyError, match=r"facility_hq_test: 'either'"):
        _row(_with_reading(packs, "either"), "GulfJapan")
