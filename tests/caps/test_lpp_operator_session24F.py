"""Session 24 (F) on License Exception LPP's operator rule, § 740.29(a) (bis.gov listing, regulation.md §7): "If the
ultimate consignee is headquartered in a destination specified in paragraph (a) of supplement no. 5 to part 740, then
the ultimate consignee may apply the cumulative TPP ... toward the cumulative TPP limit of a different entity that
will operate the items." A shipment naming its operator counts against that operator's (ultimate parent's) calendar
year only when the consignee's ultimate parent is headquartered in Supp. 5(a), and only while the pack says so
(``tier1_hq_may_apply_to_operator``)."""

from __future__ import annotations

from datetime import date
from fractions import Fraction
from pathlib import Path

from agent.packs import load_registry, registry
from policies.caps import Shipment, lpp_caps
from policies.parties import PartyRef

H100 = Fraction(15832)
ON = date(2026, 12, 31)
PARTIES = {
    "Aurora": PartyRef("Aurora", "US"),
    "Aurora EU": PartyRef("Aurora EU", "DE", parent="Aurora"),
    "Lumen": PartyRef("Lumen", "SG"),
    "Bharat AI": PartyRef("Bharat AI", "IN"),
    "Bharat Cloud": PartyRef("Bharat Cloud", "IN", parent="Bharat AI"),
}


def _lpp(consignee: str, operator: str | None, count: int = 100, day: date = date(2026, 3, 1)) -> Shipment:
    return Shipment(None, day, consignee, "IN", "h100-sxm", Fraction(count), H100, "3A090.a", "lpp",
                    operator=operator)


def _by_consignee(ledger: list[Shipment], packs: object = None) -> dict[str, Fraction]:
    caps = lpp_caps(packs or registry(), PARTIES, ledger, ON)  # type: ignore[arg-type]
    return {str(c.scope["consignee"]): c.numerator for c in caps}


def test_a_supp5a_consignee_may_apply_lpp_tpp_to_the_operators_limit() -> None:
    # Aurora EU's ultimate parent (Aurora) is headquartered in the US, a Supp. 5(a) destination.
    got = _by_consignee([_lpp("Aurora EU", "Bharat Cloud")])
    assert got == {"Bharat AI": 100 * H100}
    cap = lpp_caps(registry(), PARTIES, [_lpp("Aurora EU", "Bharat Cloud")], ON)[0]
    assert "Aurora" in cap.note and "will operate the items" in cap.note


def test_a_consignee_headquartered_outside_supp5a_keeps_lpp_tpp_on_its_own_limit() -> None:
    got = _by_consignee([_lpp("Lumen", "Bharat Cloud"), _lpp("Bharat Cloud", None, 10)])
    assert got == {"Lumen": 100 * H100, "Bharat AI": 10 * H100}


def test_a_shipment_operated_by_its_consignee_counts_as_before() -> None:
    assert _by_consignee([_lpp("Aurora EU", "Aurora EU"), _lpp("Aurora EU", None)]) == {"Aurora": 200 * H100}


def test_the_operator_rule_is_pack_data_and_off_when_the_pack_says_so(tmp_path: Path) -> None:
    base = registry().provision("licence-exception-lpp", ON)
    values = {**base.values, "tier1_hq_may_apply_to_operator": False}
    body = "\n".join(f"      {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in values.items())
    (tmp_path / "lpp-off.yaml").write_text(f"""id: lpp-off
version: "1"
title: test LPP operator rule off
source: test
provisions:
  - id: licence-exception-lpp
    title: test
    citation: "15 CFR 740.29"
    effective_from: 2025-01-13
    status: [{{since: 2025-01-13, codified: true, enforced: true}}]
    values:
{body}
""")
    off = load_registry([tmp_path])
    assert _by_consignee([_lpp("Aurora EU", "Bharat Cloud")], off) == {"Aurora": 100 * H100}
