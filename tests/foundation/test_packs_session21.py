"""Session 21 audit of the built-in rule packs against the rule text (../shared/reference, ../shared/seeds).

The figures are pinned to the provision they come from; the provenance tests make every value traceable: each
version names where it was read, and each UNCONFIRMED provision is documented in docs/policy-packs.md.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from agent.packs import BUILTIN_DIR, load_dir
from policies.packs import PackRegistry

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "policy-packs.md"
# Operator choices, not rule text: they have no regulatory source to name.
OPERATOR_PACKS = {"operator-defaults"}


def _rule_provisions() -> list[tuple[str, str, date, bool, str]]:
    out = []
    for pack in load_dir(Path(BUILTIN_DIR)):
        if pack.id in OPERATOR_PACKS:
            continue
        for prov in pack.provisions:
            out.append((pack.id, prov.id, prov.effective_from, prov.confirmed, prov.source))
    return out


def _unconfirmed_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"^## UNCONFIRMED values\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "docs/policy-packs.md has no '## UNCONFIRMED values' section"
    return m.group(1)


def test_every_unconfirmed_provision_is_documented_with_its_default() -> None:
    # The brief: every value the reference marks UNCONFIRMED is marked in the pack *and documented*. `policy list`
    # shows the mark; the document says what the default is and why, for a reader deciding whether to override.
    section = _unconfirmed_section()
    missing = sorted({pid for _, pid, _, confirmed, _ in _rule_provisions() if not confirmed
                      and f"`{pid}`" not in section})
    assert not missing, f"UNCONFIRMED provisions not documented in docs/policy-packs.md: {missing}"


def test_every_rule_provision_version_names_where_it_was_read() -> None:
    # `veuctl policy show nveu-allocation --as-of 2026-11-23` printed an empty source: only the 2025 Q1 row of
    # Table 1 named the AGORA copy (single-source, uveu-nveu-primary.md §2), the eight later quarters nothing.
    missing = [f"{pack}:{pid}@{eff}" for pack, pid, eff, _, source in _rule_provisions() if not source.strip()]
    assert not missing, f"provision versions without a source: {missing}"


def test_supp10_p06_checklist_states_all_three_caps_of_paragraph_6(packs: PackRegistry) -> None:
    # Supp. 10 ¶6 (uveu-nveu-primary.md §1b) has three caps: 25% outside Supp. 5(a), 7% in any single country
    # outside it, and, "Only for U.S.-headquartered entities with UVEU status", 50% outside the United States.
    # `veuctl controls paragraphs` showed only the first two.
    req = " ".join(str(packs.provision("supp10-p06", date(2026, 3, 1)).value("requirement")).split())
    assert "25%" in req and "7%" in req
    assert "Only for U.S.-headquartered entities with UVEU status" in req
    assert "more than 50% of its total AI computing power outside of the United States" in req
    assert "as measured on the reporting dates outlined in Section 10" in req


# -- the figures, each against the text it comes from -------------------------------------------------------------

def test_tier1_is_supp5a_with_the_united_states_and_supp5b_is_empty(packs: PackRegistry) -> None:
    # Supp. 5 to part 740 (AGORA, uveu-nveu-primary.md §5c): 19 entries, the United States the 19th; (b) a heading.
    t1 = packs.value("tier1-destinations", "countries", date(2025, 6, 1))
    assert sorted(t1) == sorted(["AU", "BE", "CA", "DK", "FI", "FR", "DE", "IE", "IT", "JP", "NL", "NZ", "NO",
                                 "KR", "ES", "SE", "TW", "GB", "US"])
    assert packs.value("tier1-g2g-assurance-destinations", "countries", date(2025, 6, 1)) == []


def test_d5_loses_cambodia_on_2026_02_03_and_macau_is_tier3_outside_d5(packs: PackRegistry) -> None:
    before = set(packs.value("country-group-d5", "countries", date(2026, 2, 2)))
    after = set(packs.value("country-group-d5", "countries", date(2026, 2, 3)))
    assert len(before) == 23 and before - after == {"KH"} and len(after) == 22   # regulation.md §3
    assert "MO" not in before and packs.value("tier3-destinations", "countries", date(2026, 3, 1)) == ["MO"]
    assert "KH" in packs.value("country-group-d1", "countries", date(2026, 3, 1))   # Cambodia stays in D:1


@pytest.mark.parametrize(("on", "tpp"), [
    (date(2025, 1, 13), 633_000_000), (date(2025, 4, 1), 949_500_000), (date(2025, 7, 1), 1_266_000_000),
    (date(2025, 10, 1), 1_582_500_000), (date(2026, 1, 1), 1_899_000_000), (date(2026, 4, 1), 2_690_250_000),
    (date(2026, 7, 1), 3_481_500_000), (date(2026, 10, 1), 4_272_750_000), (date(2027, 12, 31), 5_064_000_000),
])
def test_nveu_allocation_is_table_1_of_748_15_a_2_iii_b(packs: PackRegistry, on: date, tpp: int) -> None:
    assert packs.value("nveu-allocation", "cumulative_tpp", on) == tpp


def test_uveu_tier2_lpp_aia_and_4e091_figures(packs: PackRegistry) -> None:
    on = date(2026, 3, 1)
    u = packs.provision("uveu-geographic-allocation", on).values   # Supp. 10 ¶6
    assert (u["max_share_outside_tier1"], u["max_share_single_non_tier1_country"],
            u["us_hq_max_share_outside_us"], u["base"]) == (0.25, 0.07, 0.50, "owned")
    t2 = packs.provision("tier2-country-allocation", on).values   # § 742.6(b)(10)(iii)(B)-(C)
    assert (t2["cumulative_tpp"], t2["period_start"], t2["period_end"], t2["g2g_max_increase_fraction"]) == (
        790_000_000, "2025-01-01", "2027-12-31", 1.0)
    assert packs.value("licence-exception-lpp", "tpp_per_calendar_year_per_consignee", on) == 26_900_000  # § 740.29(a)
    assert packs.value("licence-exception-lpp", "notify_shipment_tpp", on) == 3_200_000  # § 740.29(g)(3)
    assert packs.value("licence-exception-aia", "reporting_tpp", on) == 253_000_000  # § 740.27(c)
    e = packs.provision("eccn-4e091", on).values   # ECCN 4E091 and its notes
    assert (e["operations_threshold"], e["comparison"], e["synthetic_data_fraction"],
            e["derivative_absolute_operations"], e["derivative_fraction_of_base"]) == (1e26, ">=", 0.10, 2.5e25, 0.25)


def test_3a090_thresholds(packs: PackRegistry) -> None:
    v = packs.provision("eccn-3a090", date(2026, 3, 1)).values   # ECCN 3A090.a-.b (regulation.md §2)
    assert (v["a1_tpp_min"], v["a2_tpp_min"], v["a2_pd_min"]) == (4800, 1600, 5.92)
    assert (v["b1_tpp_min"], v["b1_tpp_below"], v["b1_pd_min"], v["b1_pd_below"]) == (2400, 4800, 1.6, 5.92)
    assert (v["b2_tpp_min"], v["b2_pd_min"], v["b2_pd_below"]) == (1600, 3.2, 5.92)


def test_diffusion_dates(packs: PackRegistry) -> None:
    # Effective 2025-01-13; compliance 2025-05-15; Supp. 10 ¶¶14, 15, 18 on 2026-01-15 (§ 748.15(a)(2)(ii)(A));
    # not enforced from the 2025-05-13 announcement; the Due Diligence IFR stays enforced.
    rf = packs.provision("red-flag-28", date(2025, 6, 1))
    assert (rf.effective_from, rf.compliance_from, rf.codified, rf.enforced) == (
        date(2025, 1, 13), date(2025, 5, 15), True, False)
    assert packs.provision("supp10-delayed-compliance", date(2026, 3, 1)).compliance_from == date(2026, 1, 15)
    for n in (14, 15, 18):
        assert packs.provision(f"supp10-p{n:02d}", date(2026, 3, 1)).compliance_from == date(2026, 1, 15)
    fp = packs.provision("foundry-presumption", date(2026, 3, 1))
    assert (fp.effective_from, fp.compliance_from, fp.enforced) == (date(2025, 1, 16), date(2025, 1, 31), True)
