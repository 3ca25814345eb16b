"""Audit of the catalogued chips against the reference: TPP, performance density, ECCN and UNCONFIRMED marks.

Reference lines (in /work/shared/reference):

* regulation.md line 57: "the highest 'TPP' value should be evaluated against parameters in 3A090";
  line 59: PD is "'TPP' divided by 'applicable die area'"; lines 74-75 and 77: 3A090.a/.b and the datacenter note.
* accelerators.md lines 5-6: "Values that could not be tied to a retrieved source are marked **UNCONFIRMED**";
  §1 rows (line numbers below) give each chip's computed TPP, die area and PD.
"""

from __future__ import annotations

from datetime import date

import pytest

from policies.catalog import Catalog
from policies.classification import classify_accelerator
from policies.packs import PackRegistry

D = date(2025, 6, 1)


# (chip id, TPP, PD or None when the die area is UNCONFIRMED, ECCN, accelerators.md line)
SPOT_CHECK = [
    ("h100-sxm", 15832, 19.45, "3A090.a", 74),
    ("h100-pcie", 12104, 14.87, "3A090.a", 75),
    ("h800-sxm", 15832, 19.45, "3A090.a", 77),
    ("h20", 2368, 2.91, "not-3A090", 81),
    ("a100-sxm4-80gb", 4992, 6.04, "3A090.a", 71),
    ("l40", 2896, 4.76, "3A090.b", 83),
    ("l4", 1936, 6.59, "3A090.a", 84),
    ("b200", 36000, 22.11, "3A090.a", 90),
    ("rtx-4090", 5285, 8.69, "3A090.a", 103),
    ("mi300x", 20919, 20.57, "3A090.a", 117),
    ("gaudi3", 26848, None, "3A090.a", 128),
    ("tpu-v5p", 7344, None, "3A090.a", 136),
    ("trainium2", 10672, None, "3A090.a", 145),
]


@pytest.mark.parametrize(("chip", "tpp", "pd", "eccn", "line"), SPOT_CHECK)
def test_catalogued_chip_matches_the_reference_tpp_density_and_eccn(
    packs: PackRegistry, cat: Catalog, chip: str, tpp: float, pd: float | None, eccn: str, line: int
) -> None:
    """accelerators.md §1 (line given per chip): TPP (computed), PD (computed) and the 3A090 outcome it implies."""
    acc = cat.accelerator(chip)
    assert acc.tpp == pytest.approx(tpp, abs=0.5), f"accelerators.md line {line}"
    if pd is None:
        assert acc.performance_density is None, f"accelerators.md line {line}: die area UNCONFIRMED"
    else:
        assert acc.performance_density == pytest.approx(pd, abs=0.005), f"accelerators.md line {line}"
    c = classify_accelerator(packs, acc, D)
    assert c.eccn == eccn and c.determined, f"accelerators.md line {line}: {c.reason}"


def test_every_chip_without_a_die_area_is_marked_unconfirmed(cat: Catalog) -> None:
    """accelerators.md lines 5-6 mark unsourced values UNCONFIRMED, and lines 135-138 give TPU v4, v5p, v6e and v7
    die area as UNCONFIRMED. A chip with no die area has no performance density, so it must not read as fully
    confirmed (``to_dict()["confirmed"]``) while its density is unknown, as TPU v6e and v7 did."""
    missing = [acc.id for acc in cat.accelerators() if acc.die_area_mm2 is None]
    assert {"tpu-v4", "tpu-v5p", "tpu-v6e", "tpu-v7"} <= set(missing)
    for cid in missing:
        acc = cat.accelerator(cid)
        assert acc.to_dict()["confirmed"] is False and acc.unconfirmed_notes, cid
    for cid in ("tpu-v6e", "tpu-v7"):
        assert any("die area" in n for n in cat.accelerator(cid).unconfirmed_notes), cid


def test_a_chip_with_no_die_area_on_record_does_not_show_its_die_area_as_confirmed() -> None:
    """`veuctl chips show tpu-v6e --json` read die_area_confirmed: true beside die_area_mm2: null (no source gives
    the die area, so its performance density is unknown)."""
    from agent.kb import catalog

    view = catalog().accelerator("tpu-v6e").to_dict()
    assert view["die_area_mm2"] is None and view["die_area_confirmed"] is False
    assert catalog().accelerator("h100-sxm").to_dict()["die_area_confirmed"] is True
