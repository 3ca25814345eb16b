"""The licence review policy for ECCN 4E091 model weights is UNCONFIRMED in the reference, so the pack says so.

regulation.md §8: "Review policy: secondary sources conflict. Wiley says presumption of denial except presumption of
approval for Tier 1 destinations; Trade Compliance Resource Hub says presumption of denial for every application.
UNCONFIRMED." (and §13: "The licence review policy for 4E091 (sources conflict)"). uveu-nveu-primary.md §5b only
paraphrases § 742.6(b)(14) in a note ("gives 4E091 model weights a presumption of denial for end users headquartered
outside Supp. 5(a)") without quoting it, and `aia_outside_tier3` rests on the two law-firm alerts (seeds). The same
situation made `licence-3a090b-review` UNCONFIRMED; a flag in a weight-export decision must show it as such.
"""

from __future__ import annotations

from datetime import date

from policies import obligations as ob
from policies.jurisdictions import tier
from policies.packs import PackRegistry
from policies.parties import PartyRef, effective_tier

ON = date(2025, 9, 1)


def test_4e091_licence_review_policy_is_marked_unconfirmed_with_the_reason(packs: PackRegistry) -> None:
    prov = packs.provision("licence-4e091-review", ON)
    assert prov.confirmed is False
    assert "742.6(b)(14)" in prov.unconfirmed_note and "conflict" in prov.unconfirmed_note


def test_a_flagged_4e091_weight_export_cites_the_unconfirmed_review_policy(packs: PackRegistry) -> None:
    gulf = effective_tier(packs, {"Gulf": PartyRef("Gulf", "AE")}, "Gulf", ON)
    out = ob.weight_export_paths(packs, ON, "4E091", gulf, tier(packs, "AE", ON))
    assert out["flagged"] and "UNCONFIRMED" in out["citation"]
