"""An operator's catalog files (VEU_CATALOG_FILES) merge over the built-ins; malformed files name file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import kb
from policies.catalog import Catalog, CatalogDataError

NEW_CHIP = """
accelerators:
  - id: acme-x1
    name: ACME X1
    vendor: acme
    datacenter: true
    rates: {BF16: 400, FP8: 800}
    die_area_mm2: 500
    source: "operator datasheet"
    aliases:
      - {name: ACME-X1-96GB, family: gfd}
instance_types:
  aws:
    x1.48xlarge: {accelerator: acme-x1, count: 8}
regions:
  azure:
    newzealandnorth: NZ
"""


def test_operator_file_adds_a_chip_instance_and_region(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "acme.yaml"
    f.write_text(NEW_CHIP)
    monkeypatch.setenv("VEU_CATALOG_FILES", str(f))
    c = kb.catalog()
    assert c.accelerator("acme-x1-96gb").tpp == 6400
    assert c.instance("aws", "x1.48xlarge").tpp == 8 * 6400
    assert c.region("azure", "newzealandnorth").country == "NZ"
    assert c.accelerator("h100-sxm").tpp == 15832  # built-ins still there


def test_operator_file_overrides_a_builtin_chip_by_id(tmp_path: Path) -> None:
    f = tmp_path / "gaudi.yaml"
    f.write_text("""
accelerators:
  - id: gaudi3
    name: Intel Gaudi 3
    vendor: intel
    datacenter: true
    rates: {BF16: 1835, FP8: 1835}
    source: "Intel Gaudi 3 whitepaper (operator confirmed)"
""")
    c = kb.load_catalog((f,))
    assert c.accelerator("gaudi3").tpp == 1835 * 16
    with pytest.raises(Exception, match="not in catalog"):
        c.accelerator("HL-325L")  # the override replaced the whole entry, aliases included


def test_malformed_operator_file_names_file_and_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("accelerators:\n  - id: bad-chip\n    name: Bad\n    vendor: x\n    datacenter: true\n"
                 "    rates: {BF16: -5}\n    source: s\n")
    with pytest.raises(CatalogDataError) as exc:
        kb.load_catalog((f,))
    msg = str(exc.value)
    assert str(f) in msg and "accelerators[0:bad-chip].rates.BF16" in msg


def test_unknown_precision_in_operator_file_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("accelerators:\n  - {id: c1, name: C, vendor: x, datacenter: true, rates: {FP12: 5}, source: s}\n")
    with pytest.raises(CatalogDataError, match=r"rates: .*FP12"):
        kb.load_catalog((f,))


def test_instance_pointing_to_unknown_chip_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("instance_types:\n  aws:\n    z.big: {accelerator: nope, count: 2}\n")
    with pytest.raises(CatalogDataError, match=r"instance_types.aws.z.big.accelerator: 'nope'"):
        kb.load_catalog((f,))


def test_alias_claimed_by_two_chips_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "dup.yaml"
    f.write_text("accelerators:\n  - {id: dup, name: Dup, vendor: x, datacenter: true, rates: {BF16: 5}, "
                 "source: s, aliases: [{name: NVIDIA H100 80GB HBM3, family: nvidia-smi}]}\n")
    with pytest.raises(CatalogDataError, match="names several accelerators"):
        kb.load_catalog((f,))


def test_invalid_yaml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("accelerators: [\n")
    with pytest.raises(CatalogDataError, match=r"broken\.yaml: not valid YAML"):
        kb.load_catalog((f,))
    with pytest.raises(CatalogDataError, match=r"missing\.yaml: cannot read"):
        kb.load_catalog((tmp_path / "missing.yaml",))


def test_region_country_must_be_an_iso_code(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("regions:\n  aws:\n    xx-1: Germany\n")
    with pytest.raises(CatalogDataError, match=r"regions\.aws\.xx-1"):
        kb.load_catalog((f,))


def test_from_data_merges_plain_mappings_in_order() -> None:
    base = {"bit_lengths": {"BF16": 16}, "accelerators": [
        {"id": "c1", "name": "C1", "vendor": "v", "datacenter": True, "rates": {"BF16": 100}, "source": "s"}]}
    over = {"accelerators": [
        {"id": "c1", "name": "C1", "vendor": "v", "datacenter": True, "rates": {"BF16": 200}, "source": "s2"}]}
    c = Catalog.from_data(base, over)
    assert c.accelerator("c1").tpp == 3200


@pytest.mark.parametrize(
    ("field", "value"),
    [("die_area_mm2", ".inf"), ("die_area_mm2", "1e999"), ("rates", "{FP8: .inf}"),
     ("rates", "{FP8: {value: .inf}}"), ("memory_gb", ".nan")],
)
def test_infinite_or_nan_chip_figures_are_rejected_naming_the_field(tmp_path: Path, field: str, value: str) -> None:
    # An infinite die area made performance density 0 and quietly took an L4-class chip out of 3A090.
    doc = {"rates": "{FP8: 242}", "die_area_mm2": "294", "memory_gb": "24", field: value}
    f = tmp_path / "inf.yaml"
    f.write_text("accelerators:\n  - id: inf-chip\n    name: Inf\n    vendor: x\n    datacenter: true\n    source: s\n"
                 + "".join(f"    {k}: {v}\n" for k, v in doc.items()))
    with pytest.raises(CatalogDataError, match=rf"inf\.yaml: accelerators\[0:inf-chip\]\.{field}"):
        kb.load_catalog((f,))


@pytest.mark.parametrize(
    ("bits", "needle"),
    [("{tf32: 32}", "'tf32' is not a canonical precision"), ("{FP8: 0}", r"bit_lengths\.FP8"),
     ("{FP8: -8}", r"bit_lengths\.FP8"), ("{FP8: true}", r"bit_lengths\.FP8")],
)
def test_bad_bit_lengths_are_rejected_not_silently_ignored(tmp_path: Path, bits: str, needle: str) -> None:
    # A misspelt key was ignored (the override never applied); FP8: 0 dropped the L4 from TPP 1,936 to 1,140.
    f = tmp_path / "bits.yaml"
    f.write_text(f"bit_lengths: {bits}\n")
    with pytest.raises(CatalogDataError, match=rf"bits\.yaml: .*{needle}"):
        kb.load_catalog((f,))


@pytest.mark.parametrize("text", ["xx-1: XX", "xx-1: {country: QQ}"])
def test_region_country_must_be_a_real_iso_code(tmp_path: Path, text: str) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(f"regions:\n  aws:\n    {text}\n")
    with pytest.raises(CatalogDataError, match=r"r\.yaml: regions\.aws\.xx-1: .*not an ISO 3166"):
        kb.load_catalog((f,))
