"""Every accelerator in the reference (accelerators.md §1) is in the built-in catalog, with its facts."""

from __future__ import annotations

import pytest

from policies.catalog import Catalog

# Each name as the reference's tables spell it -> catalog id.
REFERENCE_CHIPS = {
    "A100 SXM4 40 GB": "a100-sxm4-40gb", "A100 SXM4 80 GB": "a100-sxm4-80gb", "A100 PCIe 40 GB": "a100-pcie-40gb",
    "A100 PCIe 80 GB": "a100-pcie-80gb", "A800 SXM": "a800-sxm4-80gb", "A800 PCIe": "a800-pcie",
    "H100 SXM5 80 GB": "h100-sxm", "H100 PCIe": "h100-pcie", "H100 NVL": "h100-nvl", "H800 SXM5": "h800-sxm",
    "H800 PCIe": "h800-pcie", "H200 SXM": "h200-sxm", "H200 NVL": "h200-nvl", "H20": "h20", "L40S": "l40s",
    "L40": "l40", "L4": "l4", "L20": "l20", "L2": "l2", "A10": "a10", "A10G": "a10g", "B100": "b100",
    "B200": "b200", "GB200": "gb200", "B300": "b300", "GB300": "gb300", "GH200": "gh200",
    "RTX PRO 6000 Blackwell": "rtx-pro-6000-blackwell",
    "GeForce RTX 4090": "rtx-4090", "GeForce RTX 4090D": "rtx-4090d", "GeForce RTX 5090": "rtx-5090",
    "GeForce RTX 5090D": "rtx-5090d",
    "Instinct MI250X": "mi250x", "Instinct MI300X": "mi300x", "Instinct MI325X": "mi325x",
    "Instinct MI355X": "mi355x", "Instinct MI350X": "mi350x", "Instinct MI308X": "mi308x",
    "Gaudi 2": "gaudi2", "Gaudi 3": "gaudi3",
    "TPU v4": "tpu-v4", "TPU v5e": "tpu-v5e", "TPU v5p": "tpu-v5p", "TPU v6e": "tpu-v6e", "TPU v7": "tpu-v7",
    "Trainium": "trainium", "Trainium2": "trainium2", "Trainium3": "trainium3", "Inferentia2": "inferentia2",
    "Ascend 910B": "ascend-910b", "Ascend 910B1": "ascend-910b1", "Ascend 910B2": "ascend-910b2",
    "Ascend 910B3": "ascend-910b3", "Ascend 910B4": "ascend-910b4", "Ascend 910C": "ascend-910c",
}


@pytest.mark.parametrize(("ref_name", "chip_id"), sorted(REFERENCE_CHIPS.items()))
def test_reference_chip_is_catalogued_with_rates_vendor_and_source(cat: Catalog, ref_name: str, chip_id: str) -> None:
    acc = cat.accelerator(chip_id)
    assert acc.rates and acc.vendor and acc.source, ref_name
    assert acc.tpp > 0


def test_consumer_geforce_cards_are_not_datacenter_and_everything_else_is(cat: Catalog) -> None:
    for acc in cat.accelerators():
        assert acc.datacenter is (not acc.id.startswith("rtx-") or acc.id == "rtx-pro-6000-blackwell"), acc.id


def test_every_unconfirmed_item_carries_a_note(cat: Catalog) -> None:
    for acc in cat.accelerators():
        for p, r in acc.rates.items():
            if not r.confirmed or not r.in_tpp:
                assert r.note, (acc.id, p)
        if not acc.confirmed:
            assert acc.unconfirmed_note, acc.id
