"""Export paths for a proposal mixing 3A090.a and 3A090.b items: a path is open for the proposal only if it is open
for every item in it (or the items it does not cover need no licence at all).

Sources, quoted:

- Seed 000's licence-exception table: for "3A090.a, 4A090.a, .z derivatives" the exceptions are AIA, ACM, LPP,
  ACA* and NAC*; for "3A090.b, 4A090.b, .z derivatives" only "ACM and ACA" (Tier 2 – D:1 or D:4) and "NAC"
  (Tier 3), and "No" licence requirement in Tier 1 and in Tier 2 outside D:1/D:4.
- reference/regulation.md §2, CCL flags on 3A090: "AIA (for .a); ACM (yes); LPP (for .a)".
- policies/paths.py `_b_items_paths`: "the AI Diffusion paths for .a items (AIA, LPP, VEU allocations) do not
  open" for .b items (tests/obligations/test_paths.py: "none of AIA, LPP or a VEU").

Before this, `veuctl paths --items "H100 SXM x 8, L40 x 100" --consignee "Gulf AI" --country AE` judged the
proposal on the H100s alone and showed LPP open, though LPP cannot carry the L40s (3A090.b, licence required to the
UAE).
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
from policies.paths import AuthorizationRef, ItemLine, Proposal, find_paths

AFTER = date(2025, 6, 2)
H100_TPP = 15832.0
L40_TPP = 2896.0

PARTIES = {
    "Acme": PartyRef("Acme", "DE"),
    "Gulf": PartyRef("Gulf", "AE"),
    "X": PartyRef("X", "SA"),
    "Sino": PartyRef("Sino", "CN"),
}

MIXED = (ItemLine("H100 SXM", 8, H100_TPP, "3A090.a"), ItemLine("L40", 100, L40_TPP, "3A090.b"))


def run(packs: PackRegistry, consignee: str, country: str, items: tuple[ItemLine, ...] = MIXED,
        auths: tuple[AuthorizationRef, ...] = (), on: date = AFTER, **kw):  # type: ignore[no-untyped-def]
    return find_paths(packs, PARTIES, Proposal(kw.pop("kind", "export"), items, consignee, country, on, **kw), auths)


def test_lpp_is_closed_for_a_mixed_proposal_to_the_uae_and_names_the_b_items(packs: PackRegistry) -> None:
    a_only = run(packs, "Gulf", "AE", MIXED[:1])
    assert a_only.path("LPP").open  # the H100s alone may go under LPP
    r = run(packs, "Gulf", "AE")
    lpp = r.path("LPP")
    assert not lpp.open
    why = " ".join(lpp.reasons)
    assert "L40" in why and "3A090.b" in why and "does not cover" in why
    assert "split" in why  # the user can ship the .a items under LPP and the .b items under another path
    assert "under ACA or LICENCE" in why  # the paths open for the L40s alone
    assert "3A090.b: 3A090.b" not in why
    assert "LPP" not in r.open_paths


def test_mixed_proposal_to_the_uae_needs_a_licence_for_both_kinds_and_names_both_review_policies(
    packs: PackRegistry,
) -> None:
    r = run(packs, "Gulf", "AE")
    assert r.licence_required and not r.path("NLR").open
    assert "3A090.b: licence required" in r.licence_basis and "742.6(a)(6)(iii)(A)" in r.licence_basis
    assert r.controlled_tpp == 8 * H100_TPP + 100 * L40_TPP
    lic = r.path("LICENCE")
    assert lic.open and lic.presumption == "approval"
    text = " ".join(lic.reasons)
    assert "742.6(b)(10)(iii)" in text and "742.6(b)(10)(iv)" in text
    cites = lic.to_dict()["citations"]
    assert any("742.6(b)(10)(iv)" in c for c in cites)
    # ACA covers the L40s but not the datacenter H100s: closed, naming the H100s
    aca = r.path("ACA")
    assert not aca.open and "H100 SXM" in " ".join(aca.reasons)
    assert r.open_paths == ["LICENCE"]


def test_a_veu_held_for_the_destination_does_not_open_for_the_b_items(packs: PackRegistry) -> None:
    nveu = AuthorizationRef("GULF-NVEU-AE", "nveu", "Gulf", date(2025, 2, 1), country="AE")
    assert run(packs, "Gulf", "AE", MIXED[:1], (nveu,)).path("NVEU").open
    res = run(packs, "Gulf", "AE", auths=(nveu,)).path("NVEU")
    assert not res.open
    assert "L40" in " ".join(res.reasons) and "does not cover" in " ".join(res.reasons)


def test_b_items_needing_no_licence_leave_the_a_paths_open(packs: PackRegistry) -> None:
    # Germany: 3A090.b needs no licence (Tier 1, not D:1/D:4), so AIA need only cover the H100s.
    r = run(packs, "Acme", "DE", aia_certified=True)
    aia = r.path("AIA")
    assert aia.open, aia.reasons
    assert any("L40" in t and "no licence" in t for t in (*aia.reasons, *aia.conditions))
    assert "outside the licence scope" in r.licence_basis  # the .b items' own basis is shown too
    assert r.open_paths == run(packs, "Acme", "DE", MIXED[:1], aia_certified=True).open_paths


def test_paths_open_for_every_item_stay_open(packs: PackRegistry) -> None:
    # ACM covers 3A090.a and 3A090.b for a development end use: open for both, so open for the proposal.
    r = run(packs, "X", "SA", end_use="development")
    acm = r.path("ACM")
    assert acm.open, acm.reasons
    assert r.open_paths == ["ACM", "LICENCE"]


def test_mixed_proposal_to_china_opens_nothing_and_names_the_items_each_path_misses(packs: PackRegistry) -> None:
    r = run(packs, "Sino", "CN")
    assert r.open_paths == []
    nac = r.path("NAC")
    assert not nac.open and "H100 SXM" in " ".join(nac.reasons)
    assert r.path("LICENCE").presumption == "denial"


def test_veuctl_paths_for_a_mixed_proposal_as_the_readme_runs_it(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Gulf AI", "AE")
    with session_scope(db_url) as s:
        out = svc.paths(s, load_registry(), "H100 SXM x 8, L40 x 100", "Gulf AI", "AE", AFTER)
    assert [i["eccn"] for i in out["items"]] == ["3A090.a", "3A090.b"]
    assert out["open_paths"] == ["LICENCE"]
    lpp = next(p for p in out["paths"] if p["path"] == "LPP")
    assert not lpp["open"] and any("L40" in r for r in lpp["reasons"])


# ------------------------------------------------- override packs written for the previous release

OLD_NAC_ACA = """\
id: operator-nac-aca
version: "1"
title: ACA/NAC as the previous release wrote it (test)
provisions:
  - id: licence-exception-nac-aca
    title: "ACA/NAC (test)"
    citation: "15 CFR 740.8"
    effective_from: 2025-01-13
    status:
      - {since: 2025-01-13, codified: true, enforced: true}
    values:
      non_datacenter_only: true
      nac_destinations: tier3-destinations
      nac_requires_prior_notification: true
      aca_excluded_destinations: tier3-destinations
      not_for_eccns: ["3A090.c"]
"""

OLD_ACM = """\
id: operator-acm
version: "1"
title: ACM as the previous release wrote it (test)
provisions:
  - id: licence-exception-acm
    title: "ACM (test)"
    citation: "15 CFR 740.28"
    effective_from: 2025-01-13
    status:
      - {since: 2025-01-13, codified: true, enforced: true}
    values:
      excluded_destinations: tier3-destinations
      not_for_eccns: ["4E091"]
      end_uses: [development, production, storage]
"""


def _refusal(tmp_path: Path, text: str) -> str:
    (tmp_path / "old.yaml").write_text(text)
    with pytest.raises(PackError) as info:
        load_registry([tmp_path])
    return str(info.value)


def test_a_removed_key_is_refused_naming_what_replaced_it_and_the_built_in_reading(tmp_path: Path) -> None:
    msg = _refusal(tmp_path, OLD_NAC_ACA)
    assert "values.non_datacenter_only" in msg
    assert "replaced by datacenter_excluded_eccns" in msg
    built_in = load_registry().provision("licence-exception-nac-aca", AFTER).values["datacenter_excluded_eccns"]
    assert built_in == ["3A090.a", "4A090.a"]
    assert "[3A090.a, 4A090.a]" in msg  # the reading to copy, as the built-in pack has it
    assert "policy-packs.md" in msg  # where the upgrade is described
    assert "not a value" not in msg


def test_the_replacement_written_without_the_removed_key_still_says_what_to_write(tmp_path: Path) -> None:
    msg = _refusal(tmp_path, OLD_NAC_ACA.replace("      non_datacenter_only: true\n", ""))
    assert "values.datacenter_excluded_eccns: missing" in msg
    assert "datacenter_excluded_eccns: [3A090.a, 4A090.a]" in msg
    assert "non_datacenter_only" in msg  # names the key it replaces, for an operator upgrading


def test_acm_without_eccns_says_what_to_write(tmp_path: Path) -> None:
    msg = _refusal(tmp_path, OLD_ACM)
    assert "values.eccns: missing" in msg
    built_in = load_registry().provision("licence-exception-acm", AFTER).values["eccns"]
    assert f"eccns: [{', '.join(built_in)}]" in msg


def test_the_upgraded_override_packs_load(tmp_path: Path) -> None:
    (tmp_path / "nac.yaml").write_text(OLD_NAC_ACA.replace(
        "      non_datacenter_only: true\n", '      datacenter_excluded_eccns: ["3A090.a", "4A090.a"]\n'))
    (tmp_path / "acm.yaml").write_text(OLD_ACM + '      eccns: ["3A090.a", "4A090.a", "3A090.b", "4A090.b"]\n')
    reg = load_registry([tmp_path])
    assert reg.provision("licence-exception-acm", AFTER).values["eccns"][-1] == "4A090.b"


def test_the_upgrade_note_lists_the_change() -> None:
    doc = (Path(__file__).parents[2] / "docs/policy-packs.md").read_text()
    assert "## Upgrading" in doc
    note = doc[doc.index("## Upgrading"):]
    assert "non_datacenter_only" in note and "datacenter_excluded_eccns" in note
    assert "licence-exception-acm" in note and "eccns" in note


def test_a_mixed_proposal_needing_no_licence_opens_only_the_paths_some_items_can_use(packs: PackRegistry) -> None:
    """To Germany before the rule (2025-03-01) neither the H100s nor the L40s need a licence: 'need not cover them'
    opened every path, the UVEU and NVEU of a consignee holding neither among them. The open paths are those of
    the .a items alone."""
    from datetime import date

    from policies.parties import PartyRef
    from policies.paths import ItemLine, Proposal, find_paths

    parties = {"Acme": PartyRef("Acme", "DE")}
    a = ItemLine("H100 SXM", 8, 15832.0, "3A090.a")
    b = ItemLine("L40", 100, 2896.0, "3A090.b")
    on = date(2025, 3, 1)
    alone = find_paths(packs, parties, Proposal("export", (a,), "Acme", "DE", on)).open_paths
    mixed = find_paths(packs, parties, Proposal("export", (a, b), "Acme", "DE", on))
    assert not mixed.licence_required
    assert mixed.open_paths == alone and "UVEU" not in mixed.open_paths and "NVEU" not in mixed.open_paths
