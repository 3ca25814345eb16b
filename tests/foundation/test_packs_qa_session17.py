"""Policy packs as an operator writes them: overrides from a later date, and the mistakes that must be refused.

Each refusal is one line naming the file and the field, and nothing of the directory is loaded.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from agent.packs import load_dir, load_registry
from policies.errors import PackError
from policies.jurisdictions import tier

ROOT = Path(__file__).resolve().parents[2]
DAY = timedelta(days=1)

TIER2 = """\
id: {pack}
version: "1"
title: Tier 2 allocation (operator, test)
provisions:
  - id: tier2-country-allocation
    title: "Tier 2 country allocation (operator)"
    citation: "hypothetical amendment of 15 CFR 742.6(b)(10)(iii)"
    effective_from: {start}
    status:
      - {{since: {since}, codified: true, enforced: false}}
    values:
      cumulative_tpp: {tpp}
      period_end: "2027-12-31"
      g2g_max_increase_fraction: 1.0
      counts_from: "2025-01-01"
      excludes_authorizations: [LPP, UVEU, NVEU]
"""

TIER1 = """\
id: operator-tier1
version: "1"
title: Tier 1 with Poland (operator, test)
provisions:
  - id: tier1-destinations
    title: "Tier 1 from 2026-03-01"
    citation: "hypothetical amendment of 15 CFR 740 Supp. 5(a)"
    effective_from: 2026-03-01
    status:
      - {since: 2026-03-01, codified: true, enforced: false}
    values:
      KEY: [AU, BE, CA, DK, FI, FR, DE, IE, IT, JP, NL, NZ, "NO", KR, ES, SE, TW, GB, US, PL]
"""


def _tier2(pack: str = "operator-tier2", start: str = "2026-03-01", tpp: int = 1_580_000_000,
           since: str | None = None) -> str:
    return TIER2.format(pack=pack, start=start, since=since or start, tpp=tpp)


def _refused(tmp_path: Path, files: dict[str, str]) -> str:
    """The one-line error loading ``files`` as an operator directory gives; the built-ins stay as they were."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(PackError) as err:
        load_registry([tmp_path])
    message = str(err.value)
    assert message.startswith(str(tmp_path)) and "\n" not in message, message
    assert load_registry().value("tier2-country-allocation", "cumulative_tpp", date(2026, 6, 1)) == 790_000_000
    return message


def test_an_operator_override_applies_from_its_day_and_not_the_day_before(tmp_path: Path) -> None:
    (tmp_path / "tier2.yaml").write_text(_tier2())
    reg = load_registry([tmp_path])
    start = date(2026, 3, 1)
    assert reg.value("tier2-country-allocation", "cumulative_tpp", start - DAY) == 790_000_000
    assert reg.value("tier2-country-allocation", "cumulative_tpp", start) == 1_580_000_000
    assert reg.value("tier2-country-allocation", "cumulative_tpp", start + DAY) == 1_580_000_000
    assert reg.provision("tier2-country-allocation", start).pack_id == "operator-tier2"


@pytest.mark.parametrize("typo", ["countrys", "country", "Countries"])
def test_a_misspelt_key_in_an_operator_tier1_list_is_refused_rather_than_emptying_tier_1(
        tmp_path: Path, typo: str) -> None:
    # Read with .get("countries", []), a misspelt key left Tier 1 empty: the United States became Tier 2.
    message = _refused(tmp_path, {"tier1.yaml": TIER1.replace("KEY", typo)})
    assert "tier1.yaml" in message and f"values.{typo}" in message and "countries" in message, message


def test_a_correct_operator_tier1_list_applies_from_its_day(tmp_path: Path) -> None:
    (tmp_path / "tier1.yaml").write_text(TIER1.replace("KEY", "countries"))
    reg = load_registry([tmp_path])
    assert tier(reg, "PL", date(2026, 2, 28)).tier == 2
    assert tier(reg, "PL", date(2026, 3, 1)).tier == 1
    assert tier(reg, "US", date(2026, 3, 1)).tier == 1


def test_tier_3_without_its_country_groups_is_refused_rather_than_dropping_d5(tmp_path: Path) -> None:
    text = """\
id: operator-tier3
version: "1"
title: Tier 3 (operator, test)
provisions:
  - id: tier3-destinations
    title: "Tier 3"
    citation: "15 CFR 742.6(b)(10)(iii)(A)(1)"
    effective_from: 2026-03-01
    status: [{since: 2026-03-01, codified: true, enforced: false}]
    values:
      country_group: ["D:5"]
      countries: [MO]
"""
    message = _refused(tmp_path, {"tier3.yaml": text})
    assert "values.country_group" in message and "country_groups" in message, message


def test_a_misspelt_key_in_the_authorized_designer_conditions_is_refused(tmp_path: Path) -> None:
    # must_apply_for_aproval read as absent: after 2026 a designer that never applied stayed authorized.
    text = """\
id: operator-designers
version: "1"
title: Authorized designers (operator, test)
provisions:
  - id: authorized-ic-designers
    title: "Authorized IC designers"
    citation: "15 CFR 772.1"
    effective_from: 2027-01-01
    status: [{since: 2027-01-01, codified: true, enforced: true}]
    values:
      hq_country_groups: ["A:1", "A:5"]
      hq_countries: [TW]
      excluded: tier3-destinations
      must_apply_for_aproval: true
      apply_by: "2026-12-31"
      designers: []
"""
    message = _refused(tmp_path, {"designers.yaml": text})
    assert "values.must_apply_for_aproval" in message and "must_apply_for_approval" in message, message


def test_an_operator_pack_beside_the_charts_admission_settings_pack_overrides_it(tmp_path: Path) -> None:
    # The chart writes 00-helm-admission-settings.yaml into the directory of the operator's policyPacks, sorted
    # first so that an operator's own admission-settings win: two packs of one directory may define one provision.
    values = dict(load_registry().provision("admission-settings", date(2026, 6, 1)).values)

    def pack(pid: str, mode: str) -> str:
        return yaml.safe_dump({"id": pid, "version": "1", "title": pid, "provisions": [{
            "id": "admission-settings", "title": "Admission webhook behaviour", "citation": "operator override",
            "effective_from": "2020-01-01", "status": [{"since": "2020-01-01", "codified": False, "enforced": True}],
            "values": {**values, "mode": mode}}]})

    (tmp_path / "00-helm-admission-settings.yaml").write_text(pack("helm-values", "enforce"))
    (tmp_path / "site.yaml").write_text(pack("site-overrides", "warn"))
    assert load_registry([tmp_path]).value("admission-settings", "mode", date(2026, 6, 1)) == "warn"


def test_one_provision_in_packs_of_two_directories_still_resolves_by_directory_order(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "b.yaml").write_text(_tier2("operator-b", "2027-01-01", 2_370_000_000))
    (second / "a.yaml").write_text(_tier2("operator-a"))
    reg = load_registry([first, second])
    assert reg.value("tier2-country-allocation", "cumulative_tpp", date(2027, 6, 1)) == 1_580_000_000


def test_two_versions_of_one_provision_on_the_same_day_are_refused(tmp_path: Path) -> None:
    body = _tier2()
    second = body[body.index("  - id:"):].replace("1580000000", "2370000000")
    message = _refused(tmp_path, {"tier2.yaml": body + second})
    assert "tier2-country-allocation" in message and "2026-03-01" in message, message


@pytest.mark.parametrize("written", ["0", "1772323200", "20260301", "2026", "2026/03/01", "01-03-2026",
                                     "2026-3-1", "2026-03-01T00:00:00", "2026-03-01 10:00:00"])
def test_an_effective_date_not_written_yyyy_mm_dd_is_refused(tmp_path: Path, written: str) -> None:
    # 0 loaded as 1970-01-01 and 1772323200 as 2026-03-01 (Unix timestamps): a number is no date in a pack.
    message = _refused(tmp_path, {"tier2.yaml": _tier2(start=written, since="2026-03-01")})
    assert "effective_from" in message and "YYYY-MM-DD" in message, message


def test_a_status_date_written_as_a_number_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, {"tier2.yaml": _tier2(since="0")})
    assert "status[0].since" in message and "YYYY-MM-DD" in message, message


def test_a_quoted_iso_date_still_loads(tmp_path: Path) -> None:
    (tmp_path / "tier2.yaml").write_text(_tier2(start='"2026-03-01"', since='"2026-03-01"'))
    assert load_registry([tmp_path]).provision("tier2-country-allocation", date(2026, 3, 1)).pack_id == "operator-tier2"


def test_a_provision_in_effect_before_its_first_status_is_refused(tmp_path: Path) -> None:
    # In effect from 2026-03-01 with status only from 2026-04-01: for a month it read as not codified and not
    # enforced ("no status recorded before this date").
    message = _refused(tmp_path, {"tier2.yaml": _tier2(since="2026-04-01")})
    assert "tier2.yaml" in message and "status" in message and "effective_from" in message, message


def test_a_status_from_before_the_version_takes_effect_is_fine(tmp_path: Path) -> None:
    (tmp_path / "tier2.yaml").write_text(_tier2(since="2025-01-13"))
    prov = load_registry([tmp_path]).provision("tier2-country-allocation", date(2026, 3, 1))
    assert prov.codified and not prov.enforced


def test_the_nveu_table_applies_from_the_rule_s_effective_date_not_before() -> None:
    # 90 FR 4544 took effect on 2025-01-13 (regulation.md §0): Table 1's 2025 Q1 row cannot apply before it.
    reg = load_registry()
    assert reg.find("nveu-allocation", date(2025, 1, 12)) is None
    q1 = reg.provision("nveu-allocation", date(2025, 1, 13))
    assert q1.value("cumulative_tpp") == 633_000_000 and q1.codified and q1.enforced


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    message = _refused(tmp_path, {"x.yaml": text})
    assert "must be a mapping" in message, message


def test_an_empty_pack_file_says_it_is_empty(tmp_path: Path) -> None:
    message = _refused(tmp_path, {"x.yaml": "# nothing yet\n"})
    assert "x.yaml" in message and "empty" in message, message


def _run_load(directory: Path) -> subprocess.CompletedProcess[str]:
    code = ("import sys\nfrom pathlib import Path\nfrom agent.packs import load_dir\nfrom policies.errors import "
            "PackError\ntry:\n    load_dir(Path(sys.argv[1]))\nexcept PackError as e:\n    print(e)\n")
    return subprocess.run([sys.executable, "-c", code, str(directory)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_yaml_aliases_that_expand_to_billions_of_values_are_refused_quickly(tmp_path: Path) -> None:
    # A 500-byte file whose aliases expand to 9**10 values hung the loader (the value checks walk every one).
    lines = ['x-a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"x-a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    body = _tier2().replace("excludes_authorizations: [LPP, UVEU, NVEU]",
                            "excludes_authorizations: [LPP, UVEU, NVEU]\n      bomb: *a9")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n" + body)
    result = _run_load(tmp_path)
    assert "bomb.yaml" in result.stdout and "alias" in result.stdout, (result.stdout, result.stderr[-500:])


def test_a_yaml_value_that_contains_itself_is_refused_naming_the_file(tmp_path: Path) -> None:
    # It raised RecursionError (a traceback) from the value checks.
    body = _tier2().replace("excludes_authorizations: [LPP, UVEU, NVEU]",
                            "excludes_authorizations: [LPP, UVEU, NVEU]\n      loop: &a [1, *a]")
    (tmp_path / "loop.yaml").write_text(body)
    result = _run_load(tmp_path)
    assert "loop.yaml" in result.stdout and "itself" in result.stdout, (result.stdout, result.stderr[-500:])


def test_a_pack_file_far_larger_than_any_pack_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:
        f.write("id: huge\nversion: '1'\ntitle: huge\nx-pad: |\n")
        line = "  " + "x" * 98 + "\n"
        for _ in range(110_000):  # about 11 MB
            f.write(line)
    with pytest.raises(PackError) as err:
        load_dir(tmp_path)
    assert str(err.value).startswith(f"{path}: ") and "MB" in str(err.value), str(err.value)


@pytest.mark.parametrize(("pid", "day", "before", "after"), [
    ("country-group-d5", date(2026, 2, 3), True, False),  # Cambodia leaves D:5 (BIS rule of 2026-02-03)
])
def test_cambodia_is_tier_3_the_day_before_it_left_d5_and_tier_2_from_that_day(
        pid: str, day: date, before: bool, after: bool) -> None:
    reg = load_registry()
    assert ("KH" in reg.value(pid, "countries", day - DAY)) is before
    assert ("KH" in reg.value(pid, "countries", day)) is after
    assert [tier(reg, "KH", d).tier for d in (day - DAY, day, day + DAY)] == [3, 2, 2]
    assert tier(reg, "KH", day).groups == ("D:1",)


def test_the_diffusion_rule_is_enforced_until_may_12_2025_and_codified_but_not_enforced_from_may_13() -> None:
    reg = load_registry()
    for pid in ("red-flag-28", "tier1-destinations", "uveu-geographic-allocation", "supp10-p14"):
        flags = [(p.codified, p.enforced) for p in (reg.provision(pid, d) for d in
                                                    (date(2025, 5, 12), date(2025, 5, 13), date(2025, 5, 14)))]
        assert flags == [(True, True), (True, False), (True, False)], pid


@pytest.mark.parametrize(("pid", "day"), [
    ("red-flag-28", date(2025, 5, 15)), ("veu-notices", date(2025, 5, 15)), ("supp10-p08", date(2025, 5, 15)),
    ("supp10-p14", date(2026, 1, 15)), ("supp10-p15", date(2026, 1, 15)), ("supp10-p18", date(2026, 1, 15)),
    ("supp10-delayed-compliance", date(2026, 1, 15)), ("foundry-presumption", date(2025, 1, 31)),
])
def test_compliance_starts_on_the_compliance_date_and_not_the_day_before(pid: str, day: date) -> None:
    reg = load_registry()
    assert [reg.provision(pid, d).in_compliance_period for d in (day - DAY, day, day + DAY)] == [False, True, True]


def test_the_d5_itar_sample_takes_cambodia_out_of_tier_3_from_its_own_date() -> None:
    reg = load_registry([ROOT / "policies" / "samples" / "valid"])
    day = date(2025, 11, 7)
    assert [tier(reg, "KH", d).tier for d in (day - DAY, day, day + DAY, date(2026, 2, 3))] == [3, 2, 2, 2]
    assert not reg.provision("country-group-d5", day).confirmed


def test_no_rescission_is_confirmed_through_the_july_2026_ecfr_and_unconfirmed_after_it() -> None:
    # regulation.md §12: still codified in the eCFR of 2026-07-23; uveu-nveu-primary.md §6: after that UNCONFIRMED.
    reg = load_registry()
    day = date(2026, 7, 24)
    flags = [reg.provision("diffusion-non-enforcement", d).confirmed for d in (day - DAY, day, day + DAY)]
    assert flags == [True, False, False]
    assert reg.provision("diffusion-non-enforcement", day).value("rescission_published") is False


def test_an_nveu_cap_with_no_allocation_in_effect_is_not_reported_as_codified_and_enforced() -> None:
    # Table 1 ends with 2027: on 2028-01-01 no provision is behind the cap, and "every provision behind it is
    # enforced" held vacuously, so the cap read codified and enforced the day after it read not enforced.
    from policies.caps import Authorization, nveu_caps

    reg = load_registry()
    auth = Authorization("acme-ae", "nveu", "Acme", "AE")
    last, after = (nveu_caps(reg, auth, [], d)[0] for d in (date(2027, 12, 31), date(2028, 1, 1)))
    assert last.limit == 5_064_000_000 and last.codified and not last.enforced
    assert after.limit is None and after.provisions == ()
    assert (after.codified, after.enforced) == (False, False)
