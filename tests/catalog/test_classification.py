"""ECCN 3A090.a / .b / not 3A090 at the threshold edges, the datacenter note, and 4A090 for systems."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.catalog import Catalog
from policies.classification import classify, classify_accelerator, classify_system
from policies.errors import NotInEffect, PolicyError
from policies.packs import PackRegistry

D = date(2026, 6, 1)


def test_tpp_4800_is_3a090a_and_4799_is_not_on_tpp_alone(packs: PackRegistry) -> None:
    assert classify(packs, 4800, None, True, D).eccn == "3A090.a"
    assert classify(packs, 4800, None, True, D).paragraph == "a.1"
    low_pd = classify(packs, 4799, 1.0, True, D)
    assert low_pd.eccn == "not-3A090" and low_pd.determined


def test_tpp_1600_with_pd_exactly_5_92_is_3a090a2(packs: PackRegistry) -> None:
    c = classify(packs, 1600, 5.92, True, D)
    assert (c.eccn, c.paragraph) == ("3A090.a", "a.2")


def test_tpp_1600_with_pd_5_919_falls_to_3a090b2(packs: PackRegistry) -> None:
    c = classify(packs, 1600, 5.919, True, D)
    assert (c.eccn, c.paragraph) == ("3A090.b", "b.2")


def test_tpp_1599_is_below_every_threshold_even_at_high_density(packs: PackRegistry) -> None:
    assert classify(packs, 1599, 50.0, True, D).eccn == "not-3A090"


@pytest.mark.parametrize(
    ("tpp", "pd", "eccn", "para"),
    [
        (2400, 1.6, "3A090.b", "b.1"),      # b.1 lower corner, inclusive
        (2399, 1.6, "not-3A090", None),     # b.1 needs TPP >= 2400; b.2 needs PD >= 3.2
        (2400, 1.59, "not-3A090", None),    # b.1 needs PD >= 1.6
        (4799, 5.919, "3A090.b", "b.1"),    # b.1 upper corner, exclusive bounds
        (4799, 5.92, "3A090.a", "a.2"),     # PD 5.92 moves it to a.2
        (1600, 3.2, "3A090.b", "b.2"),      # b.2 lower corner
        (1600, 3.199, "not-3A090", None),   # just under b.2, and TPP too low for b.1
        (2400, 3.199, "3A090.b", "b.1"),    # b.1 catches what b.2 misses
        (4800, 2.0, "3A090.a", "a.1"),      # a.1 regardless of density
    ],
)
def test_3a090_bands(packs: PackRegistry, tpp: float, pd: float, eccn: str, para: str | None) -> None:
    c = classify(packs, tpp, pd, True, D)
    assert (c.eccn, c.paragraph) == (eccn, para), c.reason


def test_non_datacenter_chip_at_4799_is_not_3a090_whatever_its_density(packs: PackRegistry) -> None:
    c = classify(packs, 4799, 40.0, False, D)
    assert c.eccn == "not-3A090" and not c.nac_aca_eligible
    assert "not considered" in c.reason


def test_non_datacenter_chip_at_4800_is_3a090a_and_nac_aca_eligible(packs: PackRegistry) -> None:
    c = classify(packs, 4800, 0.5, False, D)
    assert c.eccn == "3A090.a" and c.nac_aca_eligible
    assert c.licence_exceptions == ("NAC", "ACA")


def test_datacenter_chip_at_4800_is_not_nac_aca_eligible_by_the_datacenter_note(packs: PackRegistry) -> None:
    assert not classify(packs, 4800, 0.5, True, D).nac_aca_eligible


def test_unknown_density_in_the_density_band_is_presumed_3a090a_not_determined(packs: PackRegistry) -> None:
    c = classify(packs, 3040, None, True, D)
    assert c.eccn == "3A090.a" and c.determined is False
    assert "die area is unknown" in c.reason


def test_classification_carries_the_provision_and_its_status(packs: PackRegistry) -> None:
    c = classify(packs, 15832, 19.45, True, D)
    d = c.to_dict()
    assert d["provision"]["id"] == "eccn-3a090"
    assert d["provision"]["citation"].startswith("15 CFR 774")
    assert isinstance(d["provision"]["codified"], bool) and isinstance(d["provision"]["enforced"], bool)


def test_thresholds_come_from_the_pack_not_the_code(packs: PackRegistry) -> None:
    from policies.packs import PolicyPack

    base = [p for p in packs.packs]
    override = PolicyPack.model_validate({
        "id": "operator-test", "version": "1", "title": "t",
        "provisions": [{
            "id": "eccn-3a090", "title": "raised", "citation": "test", "effective_from": "2020-01-01",
            "status": [{"since": "2020-01-01", "codified": True, "enforced": True}],
            "values": {**packs.provision("eccn-3a090", D).values, "a1_tpp_min": 5000},
        }],
    })
    reg = PackRegistry([*base, override])
    assert classify(reg, 4800, 1.0, True, D).eccn == "not-3A090"


def test_before_the_october_2023_rule_3a090_is_not_in_effect(packs: PackRegistry) -> None:
    with pytest.raises(NotInEffect):
        classify(packs, 15832, 19.45, True, date(2023, 1, 1))


def test_negative_tpp_is_rejected(packs: PackRegistry) -> None:
    with pytest.raises(PolicyError, match="tpp"):
        classify(packs, -1, None, True, D)


@pytest.mark.parametrize(
    ("chip", "eccn"),
    [
        ("h100-sxm", "3A090.a"), ("h20", "not-3A090"), ("l4", "3A090.a"), ("l40", "3A090.b"),
        ("l20", "not-3A090"), ("a100-sxm4-40gb", "3A090.a"), ("rtx-4090", "3A090.a"),
        ("rtx-5090d", "not-3A090"), ("rtx-4090d", "not-3A090"), ("tpu-v5e", "3A090.a"), ("t4", "not-3A090"),
    ],
)
def test_catalogued_chips_classify_as_the_reference_expects(packs: PackRegistry, cat: Catalog, chip: str,
                                                            eccn: str) -> None:
    assert classify_accelerator(packs, cat.accelerator(chip), D).eccn == eccn


def test_l4_is_3a090a_by_density_although_under_4800(packs: PackRegistry, cat: Catalog) -> None:
    c = classify_accelerator(packs, cat.accelerator("l4"), D)
    assert c.paragraph == "a.2"


def test_rtx_4090_consumer_card_is_3a090_with_nac_aca(packs: PackRegistry, cat: Catalog) -> None:
    c = classify_accelerator(packs, cat.accelerator("NVIDIA GeForce RTX 4090"), D)
    assert c.eccn == "3A090.a" and c.nac_aca_eligible


def test_system_with_3a090a_chips_is_4a090a(packs: PackRegistry, cat: Catalog) -> None:
    chips = [classify_accelerator(packs, cat.accelerator("h100-sxm"), D)] * 8
    assert classify_system(packs, chips, D).eccn == "4A090.a"


def test_system_with_3a090b_chips_is_4a090b(packs: PackRegistry, cat: Catalog) -> None:
    chips = [classify_accelerator(packs, cat.accelerator("l40"), D), classify(packs, 100, None, True, D)]
    assert classify_system(packs, chips, D).eccn == "4A090.b"


def test_system_without_3a090_chips_is_not_4a090(packs: PackRegistry, cat: Catalog) -> None:
    chips = [classify_accelerator(packs, cat.accelerator("t4"), D)]
    assert classify_system(packs, chips, D).eccn == "not-4A090"


_RANK = {"not-3A090": 0, "3A090.b": 1, "3A090.a": 2}


@settings(max_examples=300, deadline=None)
@given(
    tpp=st.floats(min_value=0, max_value=60000, allow_nan=False),
    pd=st.floats(min_value=0, max_value=60, allow_nan=False),
    dtpp=st.floats(min_value=0, max_value=5000, allow_nan=False),
    dpd=st.floats(min_value=0, max_value=10, allow_nan=False),
)
def test_more_performance_or_density_never_loosens_the_control(packs: PackRegistry, tpp: float, pd: float,
                                                               dtpp: float, dpd: float) -> None:
    base = _RANK[classify(packs, tpp, pd, True, D).eccn]
    assert _RANK[classify(packs, tpp + dtpp, pd, True, D).eccn] >= base
    assert _RANK[classify(packs, tpp, pd + dpd, True, D).eccn] >= base
    # Unknown density is never less restrictive than any known density.
    assert _RANK[classify(packs, tpp, None, True, D).eccn] >= base


def test_density_exactly_5_92_from_a_float_quotient_is_not_lost_to_rounding(packs: PackRegistry) -> None:
    # For many die areas A, (5.92 x A) / A is 5.919999999999999 in binary floating point.
    area = next(a / 10 for a in range(1000, 20000) if (5.92 * (a / 10)) / (a / 10) < 5.92)
    pd = (5.92 * area) / area
    assert pd < 5.92
    assert classify(packs, 2000, pd, True, D).eccn == "3A090.a"


@pytest.mark.parametrize(
    ("tpp", "pd", "dc", "shown"),
    [
        (4799.9992, 0.96, True, "TPP 4799.999 < 4800"),          # not "TPP 4800 < 4800"
        (4799.9992, None, False, "TPP 4799.999 < 4800"),         # datacenter note
        (1600, 1600 / 270.28, True, "performance density 5.9198 < 5.92"),  # not "5.92 < 5.92"
        (2399.9999, 3.19999, True, "TPP 2399.9999"),
    ],
)
def test_reason_never_shows_a_value_on_the_wrong_side_of_its_threshold(
    packs: PackRegistry, tpp: float, pd: float | None, dc: bool, shown: str
) -> None:
    c = classify(packs, tpp, pd, dc, D)
    assert shown in c.reason, c.reason


def test_reason_keeps_short_figures_away_from_thresholds(packs: PackRegistry) -> None:
    c = classify(packs, 2896, 2896 / 608, True, D)
    assert c.reason.startswith("2400 <= TPP 2896 < 4800 and 1.6 <= performance density 4.763 < 5.92 (3A090.b.1)")


@pytest.mark.parametrize(("tpp", "pd", "para"), [(2896, 4.76, "b.1"), (1936, 3.5, "b.2")])
def test_3a090b_datacenter_chip_is_nac_aca_eligible(packs: PackRegistry, tpp: float, pd: float, para: str) -> None:
    # 3A090.b is the NAC/ACA band of the Oct 2023 rule (accelerators.md §0: "3A090.b (NAC/ACA eligible)").
    c = classify(packs, tpp, pd, True, D)
    assert (c.eccn, c.paragraph) == ("3A090.b", para)
    assert c.nac_aca_eligible and c.licence_exceptions == ("NAC", "ACA")
    assert "NAC/ACA" in c.reason


def test_l40_shows_nac_aca_but_3a090a_datacenter_chips_do_not(packs: PackRegistry, cat: Catalog) -> None:
    assert classify_accelerator(packs, cat.accelerator("l40"), D).nac_aca_eligible
    assert not classify_accelerator(packs, cat.accelerator("l4"), D).nac_aca_eligible  # 3A090.a.2
    assert not classify_accelerator(packs, cat.accelerator("h20"), D).nac_aca_eligible  # not 3A090
