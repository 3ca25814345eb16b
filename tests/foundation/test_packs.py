"""Policy packs: validation on load, as-of resolution, dated status, operator overrides."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from agent.packs import BUILTIN_DIR, load_dir, load_registry
from policies.errors import NotInEffect, PackError, UnknownProvision
from policies.packs import PackRegistry, diff, parse_pack

MINIMAL = {
    "id": "licence-acme",
    "version": "1",
    "title": "Acme NVEU licence conditions",
    "provisions": [
        {
            "id": "nveu-allocation",
            "title": "Licence-specific NVEU cap",
            "citation": "BIS licence D123456 condition 4",
            "effective_from": "2025-01-01",
            "status": [{"since": "2025-01-01", "codified": False, "enforced": True}],
            "values": {"cumulative_tpp": 1000},
        }
    ],
}


def test_builtin_packs_load_and_every_provision_has_citation_and_status(packs: PackRegistry) -> None:
    assert {"ai-diffusion-2025", "due-diligence-2025", "guidance-2025-05", "ear-country-groups"} <= set(
        packs.pack_ids()
    )
    for pack in packs.packs:
        for prov in pack.provisions:
            assert prov.citation and prov.status, prov.id
            if not prov.confirmed:
                assert prov.unconfirmed_note, prov.id


def test_ai_diffusion_is_codified_and_enforced_until_may_13_2025_then_codified_not_enforced(
    packs: PackRegistry,
) -> None:
    before = packs.provision("red-flag-28", date(2025, 5, 12))
    after = packs.provision("red-flag-28", date(2025, 5, 13))
    assert (before.codified, before.enforced) == (True, True)
    assert (after.codified, after.enforced) == (True, False)


def test_red_flag_28_not_in_effect_before_the_rule(packs: PackRegistry) -> None:
    with pytest.raises(NotInEffect, match="red-flag-28: not in effect on 2024-12-31"):
        packs.provision("red-flag-28", date(2024, 12, 31))


def test_nveu_allocation_steps_each_quarter(packs: PackRegistry) -> None:
    assert packs.value("nveu-allocation", "cumulative_tpp", date(2025, 3, 31)) == 633_000_000
    assert packs.value("nveu-allocation", "cumulative_tpp", date(2025, 4, 1)) == 949_500_000
    assert packs.value("nveu-allocation", "cumulative_tpp", date(2026, 12, 31)) == 4_272_750_000
    assert packs.value("nveu-allocation", "cumulative_tpp", date(2027, 6, 1)) == 5_064_000_000


def test_transistor_threshold_2028_is_marked_unconfirmed(packs: PackRegistry) -> None:
    p2027 = packs.provision("transistor-count-thresholds", date(2027, 6, 1))
    p2028 = packs.provision("transistor-count-thresholds", date(2028, 6, 1))
    p2029 = packs.provision("transistor-count-thresholds", date(2029, 6, 1))
    assert p2027.confirmed and not p2028.confirmed and p2029.confirmed
    assert p2029.value("max_transistors_without_hbm") == 40_000_000_000


def test_unknown_provision_and_unknown_value_name_the_id(packs: PackRegistry) -> None:
    with pytest.raises(UnknownProvision, match="no-such-thing"):
        packs.provision("no-such-thing", date(2026, 1, 1))
    with pytest.raises(UnknownProvision, match="'nope'"):
        packs.value("eccn-3a090", "nope", date(2026, 1, 1))


def test_operator_pack_overrides_builtin_provision_without_editing_the_package(tmp_path: Path) -> None:
    (tmp_path / "acme.yaml").write_text(yaml.safe_dump(MINIMAL))
    reg = load_registry([tmp_path])
    p = reg.provision("nveu-allocation", date(2026, 6, 1))
    assert p.pack_id == "licence-acme" and p.value("cumulative_tpp") == 1000
    assert load_registry().value("nveu-allocation", "cumulative_tpp", date(2026, 6, 1)) == 2_690_250_000


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["provisions"][0].pop("citation"), r"provisions\[0:nveu-allocation\]\.citation: Field required"),
        (lambda d: d["provisions"][0].update(effective_from="2025-13-01"), r"effective_from"),
        (lambda d: d["provisions"][0].update(confirmed=False), r"unconfirmed_note"),
        (lambda d: d["provisions"][0].update(extra_field=1), r"extra_field: Extra inputs are not permitted"),
        (lambda d: d["provisions"][0]["status"].insert(0, {"since": "2026-01-01", "codified": True,
                                                           "enforced": True}), r"strictly increasing"),
        # An operator's tier list with UK (not an ISO code: GB) would have left the United Kingdom out of Tier 1.
        (lambda d: d["provisions"][0]["values"].update(countries=["US", "UK"]),
         r"countries: 'UK' is not an ISO 3166 alpha-2 country code \(did you mean GB\?\)"),
        (lambda d: d["provisions"][0]["values"].update(treat_as={"HK": "China"}),
         r"treat_as: 'China' is not an ISO 3166 alpha-2 country code \(did you mean CN\?\)"),
        (lambda d: d["provisions"][0]["values"].update(treat_as={"HK": "ZZ"}), r"treat_as: 'ZZ' is not an ISO"),
    ],
)
def test_malformed_pack_fails_with_file_field_and_reason(tmp_path: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    import copy

    data = copy.deepcopy(MINIMAL)
    mutate(data)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump({**MINIMAL, "id": "other-pack"}))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PackError, match=message) as err:
        load_dir(tmp_path)
    assert "bad.yaml" in str(err.value)


def test_invalid_yaml_is_reported_with_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n")
    with pytest.raises(PackError, match=r"broken\.yaml: not valid YAML"):
        load_dir(tmp_path)


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(PackError, match=r"x\.yaml: a policy pack must be a mapping"):
        parse_pack(["a"], "x.yaml")


def test_diff_between_dates_shows_cambodia_leaving_d5(packs: PackRegistry) -> None:
    changes = {c["id"]: c for c in diff(packs, date(2026, 1, 1), date(2026, 3, 1))}
    d5 = changes["country-group-d5"]["fields"]["values.countries"]
    assert "KH" in d5["before"] and "KH" not in d5["after"]


def test_diff_shows_enforcement_change_in_may_2025(packs: PackRegistry) -> None:
    changes = {c["id"]: c for c in diff(packs, date(2025, 5, 1), date(2025, 6, 1))}
    assert changes["eccn-4e091"]["fields"]["enforced"] == {"before": True, "after": False}


def test_builtin_directory_is_inside_the_package() -> None:
    assert (BUILTIN_DIR / "ai-diffusion-2025.yaml").is_file()


def test_number_written_as_string_is_rejected_naming_the_value(tmp_path: Path) -> None:
    import copy
    import json

    data = copy.deepcopy(MINIMAL)
    data["provisions"][0]["values"] = {"cumulative_tpp": "1.0e26"}
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(PackError, match=r"p\.json: .*cumulative_tpp: '1\.0e26' is a string that looks like a number"):
        load_dir(tmp_path)


def test_yaml_exponent_without_sign_is_a_float() -> None:
    from agent.packs import load_yaml

    assert load_yaml("t: 1.0e26") == {"t": 1e26}


def test_yaml_no_is_norway_not_false() -> None:
    from agent.packs import load_yaml

    assert load_yaml("countries: [NO, SE, yes, on]\nflag: true") == {
        "countries": ["NO", "SE", "yes", "on"], "flag": True}


def test_norway_is_tier1_and_in_a1(packs: PackRegistry) -> None:
    from policies.jurisdictions import groups_of, tier

    assert tier(packs, "Norway", date(2025, 6, 1)).tier == 1
    assert "A:1" in groups_of(packs, "NO", date(2025, 6, 1))
