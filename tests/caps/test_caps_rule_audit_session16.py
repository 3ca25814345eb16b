"""The caps arithmetic audited against the primary text (uveu-nveu-primary.md): edges the earlier tests left open."""

from __future__ import annotations

import textwrap
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import load_registry, registry
from agent.store import session_scope
from policies.caps import (
    Authorization,
    CapsError,
    Placement,
    authorization_caps,
    change_placements,
    fit_range,
    measurement_date,
    nveu_caps,
    uveu_caps,
)
from policies.errors import PolicyError
from policies.packs import PackRegistry
from policies.parties import PartyRef

H100 = Fraction(15832)
NORDIC = Authorization("nordic-uveu", "uveu", "Nordic AI")
PARTIES = {"Nordic AI": PartyRef("Nordic AI", "SE"), "Angkor AI": PartyRef("Angkor AI", "SG")}
KH_NVEU = Authorization("angkor-kh", "nveu", "Angkor AI", "KH")
# Country Group D:5 lists Cambodia until 2026-02-03 (ear-country-groups), so KH is Tier 3 on this date only.
KH_IN_D5, KH_NOT_IN_D5 = date(2025, 12, 1), date(2026, 3, 1)


def pl(country: str, n: int, owner: str = "Nordic AI") -> Placement:
    return Placement(f"dc-{country}", country, "H100", Fraction(n), H100, "3A090.a", owner, owner)


def overriding(tmp_path: Path, provision: str) -> PackRegistry:
    """The built-in packs with one provision overridden by an operator pack (as ``VEU_POLICY_DIRS`` loads it)."""
    (tmp_path / "operator.yaml").write_text(textwrap.dedent("""\
        id: operator-caps
        version: "1"
        title: Operator caps settings
        provisions:
        """) + textwrap.indent(textwrap.dedent(provision), "  "))
    return load_registry([tmp_path])


def test_nveu_in_a_country_that_is_in_d5_on_the_date_has_room_for_no_chip(packs: PackRegistry) -> None:
    """§ 748.15(b)(2)(ii): "NVEU data centers can be built around the world, except in Macau or destinations
    specified in Country Group D:5." Table 1's allocation does not make chips in a D:5 country permitted."""
    installed = [pl("KH", 10, "Angkor AI")]
    caps = {c.id: c for c in nveu_caps(packs, KH_NVEU, installed, KH_IN_D5)}
    excluded = caps["nveu.excluded_location.KH"]
    assert excluded.binding and not excluded.ok and excluded.limit == 0
    assert "748.15(b)(2)(ii)" in excluded.provisions[0].citation
    one = change_placements([], [pl("KH", 1, "Angkor AI")], 1)
    fit = fit_range(nveu_caps(packs, KH_NVEU, [], KH_IN_D5), nveu_caps(packs, KH_NVEU, one, KH_IN_D5))
    assert (fit.low, fit.high, fit.binding) == (0, 0, "nveu.excluded_location.KH")
    # Once Cambodia has left D:5 only Table 1 binds.
    assert [c.id for c in nveu_caps(packs, KH_NVEU, installed, KH_NOT_IN_D5)] == ["nveu.installed_base.KH"]


def test_whatif_for_an_nveu_on_a_date_its_country_is_in_d5_fits_nothing(db_url: str) -> None:
    """§ 748.15(b)(2)(ii) (no NVEU data center in Macau or D:5): the planner's most that fits is 0, not Table 1's
    allocation in chips."""
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_party(s, "Angkor AI", "SG")
        party_svc.add_site(s, "pnh", "KH")
        s.flush()
        svc.add_authorization(s, packs, "angkor-kh", "nveu", "Angkor AI", "KH")  # KH is Tier 2 today
        then = svc.whatif(s, packs, "angkor-kh", n=8, chip_name="h100-sxm", site="pnh", as_of=KH_IN_D5)
        now = svc.whatif(s, packs, "angkor-kh", n=8, chip_name="h100-sxm", site="pnh", as_of=KH_NOT_IN_D5)
    assert not then["ok"] and then["max_fit"] == 0 and then["binding"] == "nveu.excluded_location.KH"
    assert now["ok"] and now["max_fit"] > 8 and now["binding"] == "nveu.installed_base.KH"


def test_uveu_base_that_names_neither_owned_nor_operated_is_refused_naming_the_field(tmp_path: Path) -> None:
    """Supp. 10 ¶6 measures "chips ... owned by the entity and all its subsidiary and parent entities": the
    pack's ``base`` names the binding view. A misspelt ``base: owner`` made every cap non-binding (90% outside
    Supp. 5(a) read as within the rule); it must be refused naming the field."""
    reg = overriding(tmp_path, """\
        - id: uveu-geographic-allocation
          title: UVEU caps with a typo
          citation: "15 CFR 748 Supp. 10 ¶6"
          effective_from: 2025-01-13
          status:
            - {since: 2025-01-13, codified: true, enforced: true}
          values:
            max_share_outside_tier1: 0.25
            max_share_single_non_tier1_country: 0.07
            us_hq_max_share_outside_us: 0.5
            us_hq_country: US
            base: owner
            counts_eccn: "3A090.a"
        """)
    with pytest.raises(CapsError, match=r"uveu-geographic-allocation\.base: 'owner' is not one of owned, operated"):
        uveu_caps(reg, PARTIES, NORDIC, [pl("SE", 10), pl("AE", 90)], date(2025, 6, 1))


def test_uveu_measured_on_reporting_dates_is_measured_on_the_date_itself_before_the_first_one(tmp_path: Path) -> None:
    """Supp. 10 ¶6: the 50% cap is "measured on the reporting dates outlined in Section 10" (¶10: "each
    February 1 and August 1"). With that reading chosen (uveu-measurement-dates ``continuous: false``), a date
    before the first reporting date in ¶6's compliance period (2025-05-15, so 2025-08-01) has no reporting date
    behind it: it is measured on itself, rather than on 2024-08-01, before the rule existed (which failed)."""
    reg = overriding(tmp_path, """\
        - id: uveu-measurement-dates
          title: UVEU caps measured on the reporting dates
          citation: "15 CFR 748 Supp. 10 ¶6 and ¶10"
          effective_from: 2025-01-13
          status:
            - {since: 2025-01-13, codified: true, enforced: true}
          values:
            continuous: false
            reporting_dates: ["02-01", "08-01"]
        """)
    assert measurement_date(reg, date(2025, 1, 20)) == date(2025, 1, 20)
    assert measurement_date(reg, date(2025, 3, 1)) == date(2025, 3, 1)  # 2025-02-01 precedes compliance
    assert measurement_date(reg, date(2025, 9, 30)) == date(2025, 8, 1)
    assert measurement_date(reg, date(2026, 1, 31)) == date(2025, 8, 1)
    assert measurement_date(reg, date(2026, 2, 1)) == date(2026, 2, 1)
    caps = authorization_caps(reg, PARTIES, NORDIC, [pl("SE", 75), pl("AE", 25)], date(2025, 1, 20))
    assert {c.id: c.ok for c in caps if c.binding}["uveu.outside_tier1.owned"]


def test_uveu_caps_without_the_eccn_they_count_are_refused_on_load_naming_the_value(tmp_path: Path) -> None:
    """Supp. 10 ¶6 counts "advanced computing items" (3A090.a and the 4A090.a systems holding it): the pack's
    ``counts_eccn`` says which. An operator pack that left it out loaded, and every caps view then failed."""
    with pytest.raises(PolicyError, match=r"values\.counts_eccn: missing; uveu-geographic-allocation needs it"):
        overriding(tmp_path, """\
            - id: uveu-geographic-allocation
              title: UVEU caps without the counted ECCN
              citation: "15 CFR 748 Supp. 10 ¶6"
              effective_from: 2025-01-13
              status:
                - {since: 2025-01-13, codified: true, enforced: true}
              values:
                max_share_outside_tier1: 0.25
                max_share_single_non_tier1_country: 0.07
                us_hq_max_share_outside_us: 0.5
                us_hq_country: US
                base: owned
            """)
