"""Policy packs evaluated "as of" a date, as an operator writes them: a destination in two tiers at once, and what
`veuctl policy diff` says on the day compliance with a rule becomes mandatory."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from agent.packs import load_registry
from policies import packs as pk
from policies.errors import PackError
from policies.jurisdictions import tier

VEUCTL = Path(sys.executable).parent / "veuctl"

TIER1 = """\
id: operator-tier1
version: "1"
title: Tier 1 (operator, test)
provisions:
  - id: tier1-destinations
    title: "Tier 1 from {start}"
    citation: "hypothetical amendment of 15 CFR 740 Supp. 5(a)"
    effective_from: {start}
    status:
      - {{since: {start}, codified: true, enforced: false}}
    values:
      countries: [AU, BE, CA, DK, FI, FR, DE, IE, IT, JP, NL, NZ, "NO", KR, ES, SE, TW, GB, US, {extra}]
"""

D5 = """\
id: operator-d5
version: "1"
title: D:5 (operator, test)
provisions:
  - id: country-group-d5
    title: "D:5 from {start}"
    citation: "hypothetical amendment of 15 CFR 740 Supp. 1, D:5"
    effective_from: {start}
    status:
      - {{since: {start}, codified: true, enforced: true}}
    values:
      countries: [AF, BY, MM, CF, CN, CD, CU, ER, HT, IR, IQ, KP, LB, LY, NI, RU, SO, SS, SD, SY, VE, ZW, {extra}]
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / "packs"
    d.mkdir(exist_ok=True)
    (d / name).write_text(text)
    return d


def test_a_country_in_tier_1_and_in_a_tier_3_country_group_is_refused_naming_the_file_and_field(
        tmp_path: Path) -> None:
    # China (D:5, so Tier 3) added to the Tier 1 list answered "Tier 1" for China, silently.
    d = _write(tmp_path, "tier1.yaml", TIER1.format(start="2026-03-01", extra="CN"))
    with pytest.raises(PackError) as err:
        load_registry([d])
    msg = str(err.value)
    assert str(d / "tier1.yaml") in msg
    assert "tier1-destinations" in msg and "values.countries" in msg
    assert "'CN'" in msg and "D:5" in msg and "2026-03-01" in msg
    assert "\n" not in msg


def test_a_country_named_in_tier_1_and_in_the_tier_3_list_is_refused() -> None:
    doc = {"id": "both", "version": "1", "title": "both lists", "provisions": [
        {"id": "tier1-destinations", "title": "t1", "citation": "Supp. 5(a)", "effective_from": "2026-03-01",
         "status": [{"since": "2026-03-01", "codified": True, "enforced": True}],
         "values": {"countries": ["US", "MO"]}},
    ]}
    with pytest.raises(PackError, match=r"both\.yaml: .*tier1-destinations.*'MO'.*Tier 3"):
        pk.PackRegistry([*load_registry().packs, pk.parse_pack(doc, "both.yaml")])


def test_a_country_group_version_moving_a_tier_1_country_into_d5_is_refused_naming_its_own_file(
        tmp_path: Path) -> None:
    # The conflict starts with the D:5 version of 2027-06-01, not with the Tier 1 list: the D:5 file is named.
    d = _write(tmp_path, "d5.yaml", D5.format(start="2027-06-01", extra="GB"))
    with pytest.raises(PackError) as err:
        load_registry([d])
    msg = str(err.value)
    assert str(d / "d5.yaml") in msg
    assert "country-group-d5" in msg and "values.countries" in msg and "'GB'" in msg and "2027-06-01" in msg


def test_a_conflict_only_in_a_later_version_is_refused_too(tmp_path: Path) -> None:
    ok = TIER1.format(start="2026-03-01", extra="PL")
    later = TIER1.format(start="2028-01-01", extra="IR").split("provisions:\n", 1)[1]
    d = _write(tmp_path, "tier1.yaml", ok + later)
    with pytest.raises(PackError, match=r"provisions\[1:tier1-destinations\]\.values\.countries: 'IR'.* on 2028-01-01"):
        load_registry([d])


def test_a_tier_1_list_without_conflict_still_loads_and_applies_from_its_day(tmp_path: Path) -> None:
    d = _write(tmp_path, "tier1.yaml", TIER1.format(start="2026-03-01", extra="PL"))
    reg = load_registry([d])
    assert tier(reg, "PL", date(2026, 2, 28)).tier == 2
    assert tier(reg, "PL", date(2026, 3, 1)).tier == 1
    assert tier(reg, "CN", date(2026, 3, 1)).tier == 3


def test_the_built_in_packs_put_no_destination_in_two_tiers_on_any_date() -> None:
    load_registry()  # the check runs on every registry; this is the built-in one


def test_policy_diff_says_when_compliance_with_the_ai_diffusion_rule_became_mandatory() -> None:
    # 2025-05-15 is the rule's compliance date (regulation.md §0): "No changes" hid it.
    reg = load_registry()
    changes = {c["id"]: c for c in pk.diff(reg, date(2025, 5, 14), date(2025, 5, 15))}
    assert changes["supp10-p01"]["fields"]["compliance_required"] == {"before": False, "after": True}
    # Supp. 10 ¶¶14, 15 and 18 comply from 2026-01-15.
    later = {c["id"] for c in pk.diff(reg, date(2026, 1, 14), date(2026, 1, 15))}
    assert {"supp10-p14", "supp10-p15", "supp10-p18"} <= later
    assert "supp10-p01" not in later


def test_a_tier_1_code_treated_as_a_tier_3_destination_is_refused(tmp_path: Path) -> None:
    # Hong Kong is treated as China (destination-equivalences): listed in Tier 1 it would still answer Tier 3.
    d = _write(tmp_path, "tier1.yaml", TIER1.format(start="2026-03-01", extra="HK"))
    with pytest.raises(PackError, match=r"'HK' \(treated as CN\) is in Tier 1"):
        load_registry([d])


def test_veuctl_tier_with_a_pack_putting_china_in_tier_1_fails_on_one_line_naming_the_file(tmp_path: Path) -> None:
    d = _write(tmp_path, "tier1.yaml", TIER1.format(start="2026-03-01", extra="CN"))
    r = subprocess.run([str(VEUCTL), "tier", "CN", "--as-of", "2026-03-01"], capture_output=True, text=True,
                       env={**os.environ, "VEU_POLICY_DIRS": str(d)}, timeout=120)
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.count("\n") == 1 and str(d / "tier1.yaml") in r.stderr and "'CN'" in r.stderr, r.stderr


def test_a_code_in_both_tiers_is_refused_even_when_the_equivalences_treat_it_as_another(tmp_path: Path) -> None:
    """Review (R4): China added to Tier 1 with CN treated as TW loaded, and Hong Kong (treated as CN) answered Tier 1
    on its day; a code in both lists is refused whatever the equivalences map it to."""
    d = _write(tmp_path, "t1.yaml", TIER1.format(start="2026-03-01", extra="CN"))
    (d / "eq.yaml").write_text("""\
id: operator-eq
version: "1"
title: equivalences (operator, test)
provisions:
  - id: destination-equivalences
    title: equivalences
    citation: "operator choice"
    effective_from: 2024-01-01
    status:
      - {since: 2024-01-01, codified: true, enforced: true}
    values:
      treat_as: {HK: CN, CN: TW}
""")
    with pytest.raises(PackError) as err:
        load_registry((d,))
    assert "'CN'" in str(err.value) and "Tier 3" in str(err.value), err.value
