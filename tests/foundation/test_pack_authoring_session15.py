"""Authoring a policy pack: a new dated version resolves on both sides of its date; a broken one is refused on load.

Each broken pack must fail with one line naming the file and the field, and leave the packs loaded unchanged.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from agent.packs import load_dir, load_registry
from policies.errors import PackError

# A later version of the Supp. 10 ¶6 UVEU caps, as an operator would write it (enforced: false, like the
# AI Diffusion rule after the May 2025 non-enforcement announcement).
UVEU = """\
id: operator-uveu-2027
version: "2027.01-r1"
title: UVEU caps from 2027 (test)
provisions:
  - id: uveu-geographic-allocation
    title: "UVEU geographic allocations, 2027"
    citation: "hypothetical amendment of 15 CFR 748 Supp. 10 para 6"
    effective_from: 2027-01-01
    status:
      - {since: 2027-01-01, codified: true, enforced: false}
    values:
      max_share_outside_tier1: 0.20
      max_share_single_non_tier1_country: 0.07
      us_hq_max_share_outside_us: 0.50
      us_hq_country: US
      tier_caps_apply_to: hq-in-supp5a
      base: owned
      counts_eccn: "3A090.a"
"""

FOURE091 = """\
id: operator-4e091-2027
version: "1"
title: 4E091 threshold from 2027 (test)
provisions:
  - id: eccn-4e091
    title: "ECCN 4E091, 2027"
    citation: "hypothetical amendment of ECCN 4E091"
    effective_from: 2027-01-01
    status:
      - {since: 2027-01-01, codified: true, enforced: true}
    values:
      status_label: "4E091"
      operations_threshold: 5.0e25
      synthetic_data_fraction: 0.10
      derivative_absolute_operations: 2.5e25
      derivative_fraction_of_base: 0.25
"""


def _refused(tmp_path: Path, text: str, name: str = "pack.yaml") -> str:
    """The one-line error loading ``text`` as a pack gives; the built-in packs are not changed by it."""
    before = load_registry().value("uveu-geographic-allocation", "max_share_outside_tier1", date(2027, 6, 1))
    (tmp_path / name).write_text(text)
    with pytest.raises(PackError) as err:
        load_registry([tmp_path])
    message = str(err.value)
    assert message.startswith(f"{tmp_path / name}: ") and "\n" not in message, message
    assert load_registry().value("uveu-geographic-allocation", "max_share_outside_tier1", date(2027, 6, 1)) == before
    return message


def test_a_new_uveu_cap_version_applies_from_its_own_day_and_not_the_day_before(tmp_path: Path) -> None:
    (tmp_path / "uveu.yaml").write_text(UVEU)
    reg = load_registry([tmp_path])
    eve, day, after = (reg.provision("uveu-geographic-allocation", d)
                       for d in (date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 2)))
    assert (eve.pack_id, eve.value("max_share_outside_tier1")) == ("ai-diffusion-2025", 0.25)
    assert (day.pack_id, day.value("max_share_outside_tier1")) == ("operator-uveu-2027", 0.20)
    assert after.value("max_share_outside_tier1") == 0.20
    # Codified but not enforced on both sides: the built-in since 2025-05-13, the new version by its own status.
    assert [(p.codified, p.enforced) for p in (eve, day, after)] == [(True, False)] * 3


@pytest.mark.parametrize(("written", "expected"), [
    ("25", r"max_share_outside_tier1: 25 is not a fraction between 0 and 1 \(25% is written 0\.25\)"),
    ("125", r"max_share_outside_tier1: 125 is not a fraction between 0 and 1"),
    ("-0.25", r"max_share_outside_tier1: -0\.25 is not a fraction between 0 and 1"),
    ("true", r"max_share_outside_tier1: True is not a number"),
    ("quarter", r"max_share_outside_tier1: 'quarter' is not a number"),
])
def test_a_uveu_cap_that_is_not_a_share_between_0_and_1_is_refused(tmp_path: Path, written: str,
                                                                   expected: str) -> None:
    # Supp. 10 ¶6 caps are shares of the UVEU's TPP: 25 (for 25%) would have been a cap of 2500%, never binding.
    message = _refused(tmp_path, UVEU.replace("max_share_outside_tier1: 0.20", f"max_share_outside_tier1: {written}"))
    assert "provisions[0:uveu-geographic-allocation]" in message
    assert re.search(expected, message), message


@pytest.mark.parametrize("written", [".nan", ".inf", "-.inf"])
def test_a_threshold_that_is_not_a_finite_number_is_refused(tmp_path: Path, written: str) -> None:
    # NaN fails every comparison (no model would ever reach 4E091); inf is a threshold nothing reaches.
    message = _refused(tmp_path, FOURE091.replace("5.0e25", written))
    assert "operations_threshold:" in message and "is not a finite number" in message


@pytest.mark.parametrize("written", ["0", "-1.0e26"])
def test_a_4e091_threshold_of_zero_or_below_is_refused(tmp_path: Path, written: str) -> None:
    message = _refused(tmp_path, FOURE091.replace("5.0e25", written))
    assert "provisions[0:eccn-4e091]" in message and "operations_threshold:" in message
    assert "is not a number above 0" in message


def test_a_synthetic_data_share_written_as_a_percentage_is_refused(tmp_path: Path) -> None:
    # "more than ten percent" is 0.10; 10 would have let every synthetic-data generator go uncounted.
    message = _refused(tmp_path, FOURE091.replace("synthetic_data_fraction: 0.10", "synthetic_data_fraction: 10"))
    assert "synthetic_data_fraction: 10 is not a fraction between 0 and 1 (10% is written 0.1)" in message


def test_a_misspelt_value_key_is_refused_naming_the_key_it_resembles(tmp_path: Path) -> None:
    # The caps read max_share_outside_tier1: under another name the 25% cap would only fail when first computed.
    message = _refused(tmp_path, UVEU.replace("max_share_outside_tier1:", "max_share_outside_tier_1:"))
    assert "values.max_share_outside_tier_1: not a value of uveu-geographic-allocation" in message
    assert "did you mean max_share_outside_tier1?" in message
    message = _refused(tmp_path, FOURE091.replace("operations_threshold", "operations_treshold"))
    assert "did you mean operations_threshold?" in message


def test_a_value_the_rule_needs_left_out_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, UVEU.replace("      max_share_single_non_tier1_country: 0.07\n", ""))
    assert "values.max_share_single_non_tier1_country: missing" in message


def test_a_notice_period_in_days_must_be_a_whole_number(tmp_path: Path) -> None:
    text = UVEU.replace("id: uveu-geographic-allocation", "id: veu-notices").split("    values:")[0] + (
        "    values: {uveu_new_datacenter_notice_days: 180.5, inter_country_transfer_notice_days: 60,\n"
        "             theft_loss_report_days: 30}\n")
    assert "uveu_new_datacenter_notice_days: 180.5 is not a whole number above 0" in _refused(tmp_path, text)


def test_a_licence_specific_nveu_cap_below_zero_is_refused(tmp_path: Path) -> None:
    text = UVEU.replace("id: uveu-geographic-allocation", "id: nveu-licence-acme-gulf").split("    values:")[0] + (
        "    values: {cumulative_tpp: -5}\n")
    assert "provisions[0:nveu-licence-acme-gulf]" in (m := _refused(tmp_path, text)) and "cumulative_tpp: -5" in m


@pytest.mark.parametrize("written", ["USA", "United States"])
def test_the_us_headquarters_country_must_be_an_iso_code(tmp_path: Path, written: str) -> None:
    # "USA" matched no party's headquarters: the US-HQ 50% cap would never have applied.
    message = _refused(tmp_path, UVEU.replace("us_hq_country: US", f"us_hq_country: {written}"))
    assert f"us_hq_country: must be an ISO 3166 alpha-2 code, got {written!r}" in message


def test_a_key_written_twice_in_yaml_is_refused_naming_both_lines(tmp_path: Path) -> None:
    # PyYAML kept the second silently: a later `enforced: true` overrode the `enforced: false` an author meant.
    text = UVEU.replace("      base: owned\n", "      base: owned\n      base: operated\n")
    message = _refused(tmp_path, text)
    assert "not valid YAML: line 18, column 7: duplicate key 'base' (first written on line 17)" in message


def test_a_key_overridden_after_a_yaml_merge_is_still_allowed(tmp_path: Path) -> None:
    text = UVEU.replace("    status:\n      - {since: 2027-01-01, codified: true, enforced: false}\n",
                        "    status:\n      - <<: {since: 2027-01-01, codified: true, enforced: true}\n"
                        "        enforced: false\n")
    (tmp_path / "merge.yaml").write_text(text)
    assert load_dir(tmp_path)[0].provisions[0].status[0].enforced is False


def test_a_key_written_twice_in_json_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, '{"id": "a-b", "id": "c-d", "version": "1", "title": "t", "provisions": []}',
                       name="pack.json")
    assert "not valid JSON: duplicate key 'id'" in message


def test_a_date_that_does_not_exist_is_refused_naming_the_line(tmp_path: Path) -> None:
    # 2027-02-30 matches YAML's date pattern; PyYAML raised a bare ValueError (a traceback in veuctl).
    message = _refused(tmp_path, UVEU.replace("effective_from: 2027-01-01", "effective_from: 2027-02-30"))
    assert "not valid YAML: line 8, column 21: '2027-02-30' is not a valid date" in message


def test_broken_yaml_is_reported_on_one_readable_line(tmp_path: Path) -> None:
    message = _refused(tmp_path, "id: [unclosed\n")
    assert "not valid YAML: line 2, column 1: expected ',' or ']'" in message and "\\n" not in message


def test_a_pack_that_is_not_utf8_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_bytes(UVEU.replace("(test)", "(caf\xe9)").encode("latin-1"))
    with pytest.raises(PackError, match=r"pack\.yaml: not UTF-8 text"):
        load_dir(tmp_path)


def test_a_misspelt_field_is_reported_as_the_unknown_key_with_the_field_it_resembles(tmp_path: Path) -> None:
    message = _refused(tmp_path, UVEU.replace("effective_from:", "efective_from:"))
    assert "provisions[0:uveu-geographic-allocation].efective_from: Extra inputs are not permitted " \
           "(did you mean effective_from?)" in message


def test_versions_whose_dates_overlap_are_refused(tmp_path: Path) -> None:
    # The first version said it ran to 2028 while the second started mid-2027: after the second's end the
    # first would have applied again.
    first = UVEU.replace("effective_from: 2027-01-01\n", "effective_from: 2027-01-01\n    effective_to: 2028-01-01\n")
    second = UVEU.split("provisions:\n")[1].replace("2027-01-01", "2027-06-01").replace("0.20", "0.15")
    message = _refused(tmp_path, first + second)
    assert "provision 'uveu-geographic-allocation': the version effective_from 2027-01-01 runs to 2028-01-01" in message
    assert "<root>" not in message


def test_the_built_in_packs_and_the_samples_still_load() -> None:
    samples = Path(__file__).resolve().parents[2] / "policies" / "samples" / "valid"
    reg = load_registry([samples])
    assert reg.value("uveu-geographic-allocation", "max_share_single_non_tier1_country", date(2026, 1, 1)) == 0.07
    assert json.dumps(reg.versions())


def test_two_packs_with_one_id_in_one_directory_are_refused_rather_than_chosen_by_file_name(tmp_path: Path) -> None:
    # A copy left beside the original (the 0.20 cap and an edited 0.25 one): which applied was the alphabet's choice.
    (tmp_path / "a-uveu.yaml").write_text(UVEU)
    message = _refused(tmp_path, UVEU.replace("0.20", "0.25"), name="b-uveu-edited.yaml")
    assert "'operator-uveu-2027' is also the id of a-uveu.yaml in the same directory" in message


def test_a_pack_in_a_later_directory_still_replaces_one_of_the_same_id(tmp_path: Path) -> None:
    first, second = tmp_path / "site", tmp_path / "override"
    first.mkdir()
    second.mkdir()
    (first / "uveu.yaml").write_text(UVEU)
    (second / "uveu.yaml").write_text(UVEU.replace("0.20", "0.25"))
    reg = load_registry([first, second])
    assert reg.value("uveu-geographic-allocation", "max_share_outside_tier1", date(2027, 6, 1)) == 0.25
