"""Data-center accelerators that NVML, GFD and the clouds report are catalogued, so their hosts are counted.

A chip the catalog lacks leaves its host (NVML), node (GFD) or region (AWS) "partial" for good and its chips counted
nowhere. Session 23q adds the V100 PCIe 16/32 GB and V100S, A40, A30, RTX 6000 Ada Generation and first-generation
Intel Gaudi (HL-205, AWS dl1.24xlarge). L40 and L40S were catalogued already.

Each chip's TPP is checked against the rates its source publishes, written out here (TPP = dense rate x bit length,
the 3A090 technical note's 2 x MacTOPS x bit length, maximised over precisions), not against the catalog's own
arithmetic; performance density is TPP / applicable die area.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from agent.collectors.aws import _from_type_info
from agent.collectors.base import resolve_alias
from agent.inventory import sync
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.catalog import Catalog
from policies.classification import classify_accelerator
from policies.packs import PackRegistry
from tests.inventory.conftest import store  # noqa: F401  (fixture)
from tests.inventory.test_nvml_collector import FakeGpu, FakeNvml, _collector

D = date(2025, 6, 1)

# Every name a host or cluster reports for the chip: the NVML / nvidia-smi product name, and GFD's
# nvidia.com/gpu.product label (the NVML name with spaces turned into hyphens).
NAMES = {
    "v100-pcie-16gb": ["Tesla V100-PCIE-16GB", "Tesla-V100-PCIE-16GB"],
    "v100-pcie-32gb": ["Tesla V100-PCIE-32GB", "Tesla-V100-PCIE-32GB"],
    "v100s-pcie-32gb": ["Tesla V100S-PCIE-32GB", "Tesla-V100S-PCIE-32GB"],
    "a40": ["NVIDIA A40", "NVIDIA-A40"],
    "a30": ["NVIDIA A30", "NVIDIA-A30"],
    "nvidia-rtx-6000-ada": ["NVIDIA RTX 6000 Ada Generation", "NVIDIA-RTX-6000-Ada-Generation"],
    # AWS DescribeInstanceTypes GpuInfo (Manufacturer "Habana", Name "Gaudi HL-205"); Karpenter's
    # instance-gpu-name label; the product number Habana's own pages and device plugin use.
    "gaudi1": ["Gaudi HL-205", "gaudi-hl-205", "HL-205"],
    # Already catalogued before this session: they must keep resolving to their own rows.
    "l40": ["NVIDIA L40", "NVIDIA-L40"],
    "l40s": ["NVIDIA L40S", "NVIDIA-L40S"],
}

# (chip, TPP from the sourced rates, precision that sets it, performance density or None, ECCN, paragraph)
CHIPS = [
    # Epoch 'NVIDIA Tesla V100 PCIe 16 GB' / '32 GB': 112 tensor TFLOPS FP16 (NVIDIA PCIe figure); GV100 815 mm2.
    # TPP 1,792 < 2,400 and PD 2.20 < 3.2: neither 3A090.b paragraph.
    ("v100-pcie-16gb", 112 * 16, "FP16", 112 * 16 / 815, "not-3A090", None),
    ("v100-pcie-32gb", 112 * 16, "FP16", 112 * 16 / 815, "not-3A090", None),
    # Epoch 'NVIDIA Tesla V100S PCIe 32 GB': 130 tensor TFLOPS; GV100 815 mm2 -> PD 2.55.
    ("v100s-pcie-32gb", 130 * 16, "FP16", 130 * 16 / 815, "not-3A090", None),
    # NVIDIA A40 datasheet: FP16 149.7 (> INT8 299.3 x 8 = 2,394.4 and INT4 598.7 x 4 = 2,394.8); GA102 628 mm2.
    # TPP 2,395.2 is under b.1's 2,400, but PD 3.81 is in b.2's 3.2-5.92 band with TPP >= 1,600.
    ("a40", 149.7 * 16, "FP16", 149.7 * 16 / 628, "3A090.b", "b.2"),
    # NVIDIA A30 figures (UNCONFIRMED, not retrieved): INT4 661 x 4 = 2,644 (FP16 165 x 16 = INT8 330 x 8 = 2,640);
    # GA100 826 mm2 -> PD 3.20. 2,400 <= TPP < 4,800 and 1.6 <= PD < 5.92: 3A090.b.1.
    ("a30", 661 * 4, "INT4", 661 * 4 / 826, "3A090.b", "b.1"),
    # Epoch 'NVIDIA RTX 6000 Ada Generation': FP8 1,457 sparse / 2, rounded to 729 dense; AD102 608 mm2. TPP >= 4,800
    # (and would be at NVIDIA's unrounded 728.5 x 8 = 5,828 too).
    ("nvidia-rtx-6000-ada", 729 * 8, "FP8", 729 * 8 / 608, "3A090.a", "a.1"),
    # No published rate (Epoch's HL-205 row is blank): counted at its successor Gaudi 2's BF16 450 as an upper
    # bound, no die area. TPP 7,200 >= 4,800 whatever the density; UNCONFIRMED, shown as such.
    ("gaudi1", 450 * 16, "BF16", None, "3A090.a", "a.1"),
]


@pytest.mark.parametrize(("chip", "name"), [(c, n) for c, names in NAMES.items() for n in names])
def test_each_chip_resolves_from_its_nvml_name_and_gfd_label(cat: Catalog, chip: str, name: str) -> None:
    assert cat.resolve(name).accelerator.id == chip


@pytest.mark.parametrize(("chip", "tpp", "precision", "pd", "eccn", "paragraph"), CHIPS)
def test_each_chip_classifies_with_the_tpp_and_density_of_its_sourced_rates(
    packs: PackRegistry, cat: Catalog, chip: str, tpp: float, precision: str, pd: float | None, eccn: str,
    paragraph: str | None,
) -> None:
    acc = cat.accelerator(chip)
    assert acc.datacenter is True
    assert acc.tpp == pytest.approx(tpp, rel=1e-9) and acc.tpp_precision == precision, acc
    if pd is None:
        assert acc.performance_density is None and acc.unconfirmed_notes
    else:
        assert acc.performance_density == pytest.approx(pd, rel=1e-9)
    c = classify_accelerator(packs, acc, D)
    assert (c.eccn, c.paragraph) == (eccn, paragraph), c.reason


def test_the_computed_tpp_matches_epochs_published_figure_where_epoch_has_one(cat: Catalog) -> None:
    # Epoch's "Total processing performance (bit-OP/s)" for the same rows, in TPP units.
    epoch = {"v100-pcie-16gb": 1792, "v100-pcie-32gb": 1792, "v100s-pcie-32gb": 2080, "a40": 2395.2,
             "nvidia-rtx-6000-ada": 5832}
    for chip, value in epoch.items():
        acc = cat.accelerator(chip)
        assert any(p.value == value for p in acc.published_tpp), chip
        assert acc.tpp == pytest.approx(value, rel=1e-9), chip


def test_figures_no_retrieved_source_gives_are_unconfirmed_never_silent(cat: Catalog) -> None:
    for chip in ("a30", "gaudi1", "nvidia-rtx-6000-ada"):
        view = cat.accelerator(chip).to_dict()
        assert view["confirmed"] is False and view["unconfirmed_notes"], chip
    assert all(not r.confirmed for r in cat.accelerator("a30").rates.values())
    gaudi = cat.accelerator("gaudi1")
    assert all(not r.confirmed for r in gaudi.rates.values()) and gaudi.die_area_mm2 is None
    for chip in ("v100-pcie-16gb", "v100-pcie-32gb", "v100s-pcie-32gb", "a40"):
        assert cat.accelerator(chip).to_dict()["confirmed"] is True, chip


def test_an_a30_mig_slice_is_a_quarter_of_the_gpu(cat: Catalog) -> None:
    # NVIDIA MIG user guide, A30-24GB: 1g.6gb x 4, 2g.12gb x 2, 4g.24gb x 1.
    r = cat.resolve("NVIDIA-A30-MIG-1g.6gb")
    assert (r.accelerator.id, float(r.fraction)) == ("a30", 0.25)
    assert float(cat.resolve("NVIDIA-A30-MIG-2g.12gb").fraction) == 0.5


def test_an_aws_dl1_instance_is_eight_first_generation_gaudis() -> None:
    spec = catalog().instance("aws", "dl1.24xlarge")
    assert (spec.accelerator.id, spec.count) == ("gaudi1", 8)
    # What DescribeInstanceTypes reported for dl1.24xlarge (Habana, 8 x 32,768 MiB) resolves to the same.
    info = {"InstanceType": "dl1.24xlarge", "GpuInfo": {"Gpus": [
        {"Name": "Gaudi HL-205", "Manufacturer": "Habana", "Count": 8, "MemoryInfo": {"SizeInMiB": 32768}}],
        "TotalGpuMemoryInMiB": 262144}}
    assert _from_type_info(info) == ("gaudi1", 8.0)
    assert resolve_alias("gaudi-hl-205") == ("gaudi1", 1.0)  # Karpenter instance-gpu-name


@pytest.fixture()
def dc(store: str) -> str:  # noqa: F811
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def test_a_host_nvml_reports_an_a40_on_is_counted_not_left_partial(dc: str) -> None:
    # nvidia-smi on an A40 host reports "NVIDIA A40" with 46,068 MiB (public nvidia-smi captures).
    # Beside it an H100 the catalog always knew: with the A40 unknown the host was "partial" (the H100 counted, the
    # A40 nowhere, nothing on the host ever retiring).
    lib = FakeNvml([FakeGpu("NVIDIA H100 80GB HBM3", "GPU-h100-0", "1650923000001"),
                    FakeGpu("NVIDIA A40", "GPU-a40-0", "1320821000001", total_bytes=46068 * 1024**2),
                    FakeGpu("NVIDIA A40", "GPU-a40-1", "1320821000002", total_bytes=46068 * 1024**2)])
    summary = sync(_collector(lib), dc)
    assert summary.status == "ok", summary.as_dict()
    with session_scope(dc) as s:
        rows = {h.external_id: (h.accelerator, h.count) for h in s.exec(select(Holding))}
    assert rows == {"GPU-h100-0": ("h100-sxm", 1.0), "GPU-a40-0": ("a40", 1.0), "GPU-a40-1": ("a40", 1.0)}


def test_a_job_on_rtx_6000_ada_at_the_default_precision_is_bounded_not_refused() -> None:
    """The default precision is BF16: a chip with no BF16 rate gave a job pinned to it no bound (refused as
    invalid). Ada's FP16/BF16 tensor rate is half its FP8 dense rate, 364.2 TFLOPS (unconfirmed)."""
    from agent.kb import catalog

    rtx = catalog().find("nvidia-rtx-6000-ada")
    assert rtx is not None
    assert rtx.rates["BF16"].value == pytest.approx(729 / 2, abs=0.5) and not rtx.rates["BF16"].confirmed
    assert rtx.rates["FP16"].value == rtx.rates["BF16"].value
