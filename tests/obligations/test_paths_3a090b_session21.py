"""Export paths for 3A090.b / 4A090.b items: License Exceptions ACM, ACA and NAC, and the § 742.6(b)(10)(iv) review
policy, all read from the policy packs.

Sources, quoted:

- Seed 000 (law-firm alert), table row "3A090.b, 4A090.b, .z derivatives | Tier 2 – D:1 or D:4 | Yes | ACM and ACA
  for entities headquartered in Tier 1 or Tier 2 and that do not have an ultimate parent headquartered in Tier 3 /
  NAC for entities headquartered in or with an ultimate parent headquartered in Tier 3 | Approval, unless destined
  to an entity headquartered in or with an ultimate parent headquartered in Tier 3", and "Tier 3 | Yes | NAC |
  Denial".
- Seed 000, ACM: "Eligible items are classified under: ECCNs 3A001.z; 3A090.b, c; ...".
- Seed 000, ACA: eligible items are "ECCNs 3A090 (except for 3A090.c), 4A090, ... except for items designed or
  marketed for use in a datacenter and meeting the parameters of 3A090.a"; NAC likewise "unless they are marketed
  or designed for use in a datacenter and meet the parameters of 3A090.a". Only datacenter .a items are excluded.
- Seed 001: ACA applies "to any destination worldwide, excluding destinations listed in Country Group D:5 or Macau,
  or to any entity headquartered in (or whose ultimate parent is headquartered in)" D:5 or Macau.
- reference/uveu-nveu-primary.md §5b notes: "§ 742.6(b)(10)(iv), printed right after (iii) in the IFR text, sets
  the policy for (a)(6)(iii)(B) items: presumption of approval except for D:5/Macau." (A paraphrase, not the
  quoted text; the headquarters limb is the seed's: the pack marks the provision UNCONFIRMED for that.)

Before this, `veuctl paths --items "l40 x 100" --consignee X --country SA` offered only NLR (closed) and a licence
whose "review policy for these items is not in the loaded packs", and the pack value `non_datacenter_only` of
licence-exception-nac-aca was read by no code.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent import obligations as svc
from agent.packs import load_registry
from agent.parties import add_party
from agent.store import session_scope
from policies.errors import PackError
from policies.packs import PackRegistry
from policies.parties import PartyRef
from policies.paths import ItemLine, Proposal, find_paths

AFTER = date(2025, 6, 2)

PARTIES = {
    "X": PartyRef("X", "SA"),          # Saudi Arabia: Tier 2, D:4
    "Acme": PartyRef("Acme", "DE"),
    "Sino": PartyRef("Sino", "CN"),
    "SinoSA": PartyRef("SinoSA", "SA", "Sino"),
    "HKCo": PartyRef("HKCo", "HK"),
}


def l40(n: int, eccn: str = "3A090.b") -> tuple[ItemLine, ...]:
    return (ItemLine("L40", n, 2896.0, eccn),)


def run(packs: PackRegistry, items: tuple[ItemLine, ...], consignee: str, country: str, **kw):  # type: ignore[no-untyped-def]
    return find_paths(packs, PARTIES, Proposal(kw.pop("kind", "export"), items, consignee, country, AFTER, **kw))


def test_3a090b_to_a_d4_country_opens_aca_and_a_licence_under_a_presumption_of_approval(packs: PackRegistry) -> None:
    r = run(packs, l40(100), "X", "SA")
    assert r.licence_required
    assert r.open_paths == ["ACA", "LICENCE"]
    aca = r.path("ACA")
    assert "3A090.b" in aca.reasons[0] and "outside Macau and D:5" in aca.reasons[0]
    assert not r.path("NAC").open
    lic = r.path("LICENCE")
    assert lic.presumption == "approval" and "presumption of approval" in lic.reasons[0]
    assert "742.6(b)(10)(iv)" in lic.reasons[0]
    assert "not in the loaded packs" not in " ".join(lic.reasons)
    d = lic.to_dict()
    assert any("742.6(b)(10)(iv)" in c for c in d["citations"])
    assert any(u.startswith("licence-3a090b-review:") for u in d["unconfirmed"])
    # the .a-only paths (AIA, LPP, the VEU allocations) are still not offered for .b items
    assert {p.path for p in r.paths} == {"NLR", "ACM", "ACA", "NAC", "LICENCE"}


def test_4a090b_items_are_treated_like_3a090b(packs: PackRegistry) -> None:
    r = run(packs, l40(4, "4A090.b"), "X", "SA")
    assert r.open_paths == ["ACA", "LICENCE"] and r.path("LICENCE").presumption == "approval"


def test_acm_opens_for_3a090b_with_a_listed_end_use_and_stays_closed_for_training(packs: PackRegistry) -> None:
    assert run(packs, l40(100), "X", "SA", end_use="development").path("ACM").open
    acm = run(packs, l40(100), "X", "SA", end_use="training").path("ACM")
    assert not acm.open and "end use given: training" in acm.reasons[0]


def test_3a090b_to_china_opens_nac_with_notification_and_a_licence_under_denial(packs: PackRegistry) -> None:
    r = run(packs, l40(10), "Sino", "CN", end_use="storage")
    assert r.open_paths == ["NAC"]
    assert "prior notification to BIS required" in r.path("NAC").conditions
    assert "does not cover Macau or D:5" in r.path("ACA").reasons[0]
    assert not r.path("ACM").open
    lic = r.path("LICENCE")
    assert not lic.open and lic.presumption == "denial" and "presumption of denial" in lic.reasons[0]


@pytest.mark.parametrize("consignee,country", [("Sino", "DE"), ("SinoSA", "SA")])
def test_3a090b_for_a_d5_headquartered_party_elsewhere_gets_nac_and_denial(
    packs: PackRegistry, consignee: str, country: str
) -> None:
    r = run(packs, l40(10), consignee, country)
    assert r.licence_required and r.open_paths == ["NAC"]
    assert not r.path("ACA").open
    lic = r.path("LICENCE")
    assert lic.presumption == "denial" and "headquartered in CN" in lic.reasons[0]


def test_3a090b_to_hong_kong_is_reviewed_as_china(packs: PackRegistry) -> None:
    # destination-equivalences treats Hong Kong as China, as the licence scope already does.
    lic = run(packs, l40(10), "HKCo", "HK").path("LICENCE")
    assert lic.presumption == "denial" and "treated as CN" in lic.reasons[0]


def test_datacenter_3a090a_items_stay_outside_aca_and_nac(packs: PackRegistry) -> None:
    r = find_paths(packs, PARTIES, Proposal("export", (ItemLine("H100 SXM", 8, 15832.0, "3A090.a"),), "X", "SA",
                                            AFTER))
    assert not r.path("ACA").open and not r.path("NAC").open
    assert "datacenter items: H100 SXM" in r.path("ACA").reasons[0]


# ------------------------------------------------------------------------ the pack decides, not the code

NAC_ACA = """\
id: operator-nac-aca
version: "1"
title: ACA/NAC read narrowly (test)
provisions:
  - id: licence-exception-nac-aca
    title: "ACA/NAC excluding every datacenter 3A090 item (test)"
    citation: "15 CFR 740.8"
    effective_from: 2025-01-13
    status:
      - {since: 2025-01-13, codified: true, enforced: true}
    values:
      datacenter_excluded_eccns: ["3A090.a", "4A090.a", "3A090.b", "4A090.b"]
      nac_destinations: tier3-destinations
      nac_requires_prior_notification: true
      nac_notice_days: null
      aca_excluded_destinations: tier3-destinations
      aca_requires_notification: false
      not_for_eccns: ["3A090.c"]
"""


def test_the_datacenter_exclusion_of_aca_and_nac_is_read_from_the_pack(tmp_path: Path) -> None:
    (tmp_path / "nac.yaml").write_text(NAC_ACA)
    reg = load_registry([tmp_path])
    aca = run(reg, l40(10), "X", "SA").path("ACA")
    assert not aca.open and "datacenter items: L40" in aca.reasons[0]


def test_the_unread_non_datacenter_only_value_is_gone_and_refused_if_written(tmp_path: Path) -> None:
    assert "non_datacenter_only" not in load_registry().provision("licence-exception-nac-aca", AFTER).values
    (tmp_path / "nac.yaml").write_text(NAC_ACA.replace("      datacenter_excluded_eccns:",
                                                       "      non_datacenter_only: true\n"
                                                       "      datacenter_excluded_eccns:"))
    with pytest.raises(PackError, match="non_datacenter_only"):
        load_registry([tmp_path])


def test_the_review_presumption_for_3a090b_is_read_from_the_pack(tmp_path: Path) -> None:
    text = (Path(__file__).parents[2] / "policies/packs/ai-diffusion-2025.yaml").read_text()
    start = text.index("  - id: licence-3a090b-review")
    end = text.index("\n  - id:", start + 1)
    block = text[start:end].replace("effective_from: 2025-01-13", "effective_from: 2025-06-01").replace(
        "presumption: approval", "presumption: denial")
    (tmp_path / "review.yaml").write_text(
        'id: operator-review\nversion: "1"\ntitle: review (test)\nprovisions:\n' + block + "\n")
    lic = run(load_registry([tmp_path]), l40(10), "X", "SA").path("LICENCE")
    assert lic.presumption == "denial" and not lic.open and "presumption of denial" in lic.reasons[0]


# ------------------------------------------------------------------------------- as the README runs it


def test_veuctl_paths_for_l40s_to_saudi_arabia_offers_aca_and_a_licence_with_its_review_policy(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_party(s, "X", "SA")
    with session_scope(db_url) as s:
        out = svc.paths(s, load_registry(), "l40 x 100", "X", "SA", AFTER)
    assert out["items"][0]["eccn"] == "3A090.b"
    assert out["open_paths"] == ["ACA", "LICENCE"]
    lic = next(p for p in out["paths"] if p["path"] == "LICENCE")
    assert lic["presumption"] == "approval"
