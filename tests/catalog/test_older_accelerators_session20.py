"""Older accelerators the AWS and GCP APIs still report are catalogued, so their instances are counted.

A chip the catalog does not know leaves its instance uncounted and its region/project "partial" for good
(nothing there ever retires). Found by comparing moto 5.2.5's DescribeInstanceTypes snapshot
(``moto/ec2/resources/instance_types.json.gz``) with ``agent.collectors.aws._from_type_info``, and GCE's
accelerator types (accelerators.md §3.2; Notebooks API AcceleratorType enum for the ``-vws`` types) with the
catalog: AWS inf1 (Inferentia), g5g (T4G), g7 (RTX PRO 4500 Blackwell Server Edition), dl2q (Qualcomm AI 100,
reported only in InferenceAcceleratorInfo, which the collector does not read), GCE nvidia-tesla-p4/-p100/-k80
and the P4/P100 vWS types. Each chip's TPP is checked against its sourced rates (TPP = rate x bit length, the
3A090 technical note's 2 x MacTOPS x bit length), not against the catalog's own arithmetic.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import moto.ec2
import pytest
from sqlmodel import select

from agent.collectors.aws import _from_type_info
from agent.collectors.base import build
from agent.inventory import sync
from agent.kb import catalog
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.catalog import Catalog
from policies.classification import classify_accelerator
from policies.errors import PolicyError
from policies.packs import PackRegistry
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.conftest import aws, store  # noqa: F401  (fixtures)
from tests.inventory.gcpfake import ComputeFake, instance

D = date(2025, 6, 1)
MOTO_TYPES = Path(moto.ec2.__file__).parent / "resources" / "instance_types.json.gz"
ACCEL_KEYS = ("GpuInfo", "NeuronInfo", "InferenceAcceleratorInfo", "FpgaInfo", "MediaAcceleratorInfo")

# (chip id, TPP from the sourced rates, precision that sets it, performance density or None, ECCN)
NEW_CHIPS = [
    # AWS Neuron docs: 64 FP16/BF16 TFLOPS, 128 INT8 TOPS per Inferentia chip; die area not sourced.
    ("inferentia", 64 * 16, "FP16", None, "not-3A090"),
    # T4G assumed = T4 (Epoch FP16 65.13); TU104 545 mm2.
    ("t4g", 65.13 * 16, "FP16", 65.13 * 16 / 545, "not-3A090"),
    # NVIDIA P4 datasheet: 5.5 TFLOPS FP32 (= 22 TOPS INT8 x 8 = 176); GP104 314 mm2.
    ("tesla-p4", 5.5 * 32, "FP32", 176 / 314, "not-3A090"),
    # NVIDIA P100 PCIe datasheet: FP64 4.7 x 64 = 300.8 beats FP16 18.7 x 16 = 299.2; GP100 610 mm2.
    ("tesla-p100-pcie-16gb", 4.7 * 64, "FP64", 300.8 / 610, "not-3A090"),
    # NVIDIA K80 board 8.74 TFLOPS FP32 with boost, two GPUs: 4.37 x 32 per GPU; GK210 561 mm2.
    ("tesla-k80", 4.37 * 32, "FP32", 139.84 / 561, "not-3A090"),
    # UNCONFIRMED third-party dense rates (FP4 879 x 4); GB203 ~378 mm2 -> PD 9.3: 3A090.a.2 if they hold.
    ("nvidia-rtx-pro-4500-blackwell-server", 879 * 4, "FP4", 3516 / 378, "3A090.a"),
    # Qualcomm SDK, AI 100 Standard: INT8 325 x 8; no die area, so presumed 3A090.a (not determined).
    ("qualcomm-ai100-standard", 325 * 8, "INT8", None, "3A090.a"),
]

# Accelerator instance types in moto's snapshot that no catalog chip stands for, and why. FPGAs and video
# transcoders are not the GPUs/AI accelerators the catalog models: the collector reads only GpuInfo and
# NeuronInfo, so these instances carry no chips (they neither count nor keep a region partial).
EXCLUDED = {
    "f2.6xlarge": "Xilinx Virtex UltraScale+ VU47P FPGA (FpgaInfo): programmable logic, not a catalogued accelerator",
    "f2.12xlarge": "Xilinx Virtex UltraScale+ VU47P FPGA (FpgaInfo): programmable logic, not a catalogued accelerator",
    "f2.48xlarge": "Xilinx Virtex UltraScale+ VU47P FPGA (FpgaInfo): programmable logic, not a catalogued accelerator",
    "vt1.3xlarge": "Xilinx U30 video transcoder (MediaAcceleratorInfo): media encode/decode, not an AI accelerator",
    "vt1.6xlarge": "Xilinx U30 video transcoder (MediaAcceleratorInfo): media encode/decode, not an AI accelerator",
    "vt1.24xlarge": "Xilinx U30 video transcoder (MediaAcceleratorInfo): media encode/decode, not an AI accelerator",
}

# GCE accelerator types: accelerators.md §3.2 (n1 attached T4/P4/V100/P100/K80 and the A/G series), the vWS
# types from the Notebooks API AcceleratorType enum (T4, P100, P4 only: K80 has none) and GCE's GPU page.
GCE_TYPES = {
    "nvidia-tesla-t4": "t4", "nvidia-tesla-t4-vws": "t4",
    "nvidia-tesla-p4": "tesla-p4", "nvidia-tesla-p4-vws": "tesla-p4",
    "nvidia-tesla-p100": "tesla-p100-pcie-16gb", "nvidia-tesla-p100-vws": "tesla-p100-pcie-16gb",
    "nvidia-tesla-k80": "tesla-k80",
    "nvidia-tesla-v100": "v100-sxm2-16gb",
    "nvidia-tesla-a100": "a100-sxm4-40gb", "nvidia-a100-80gb": "a100-sxm4-80gb",
    "nvidia-h100-80gb": "h100-sxm", "nvidia-h100-mega-80gb": "h100-sxm", "nvidia-h200-141gb": "h200-sxm",
    "nvidia-b200": "b200", "nvidia-gb200": "gb200",
    "nvidia-l4": "l4", "nvidia-l4-vws": "l4",
    "nvidia-rtx-pro-6000": "rtx-pro-6000-blackwell", "nvidia-rtx-pro-6000-vws": "rtx-pro-6000-blackwell",
}


def _moto_types() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(gzip.decompress(MOTO_TYPES.read_bytes()))
    return {t: info for t, info in data.items() if any(info.get(k) for k in ACCEL_KEYS)}


@pytest.mark.parametrize(("chip", "tpp", "precision", "pd", "eccn"), NEW_CHIPS)
def test_each_new_chip_classifies_with_the_tpp_of_its_sourced_rates(
    packs: PackRegistry, cat: Catalog, chip: str, tpp: float, precision: str, pd: float | None, eccn: str
) -> None:
    acc = cat.accelerator(chip)
    assert acc.tpp == pytest.approx(tpp, rel=1e-9) and acc.tpp_precision == precision, acc
    if pd is None:
        assert acc.performance_density is None and acc.unconfirmed_notes  # die area UNCONFIRMED, shown as such
    else:
        assert acc.performance_density == pytest.approx(pd, rel=1e-9)
    c = classify_accelerator(packs, acc, D)
    assert c.eccn == eccn, c.reason
    assert c.determined is (pd is not None or tpp < 1600), c.reason


def test_unsourced_figures_are_marked_unconfirmed_never_silent(cat: Catalog) -> None:
    for chip in ("t4g", "nvidia-rtx-pro-4500-blackwell-server", "qualcomm-ai100-standard", "inferentia",
                 "tesla-p100-pcie-16gb"):
        view = cat.accelerator(chip).to_dict()
        assert view["confirmed"] is False and view["unconfirmed_notes"], chip
    rtx = cat.accelerator("nvidia-rtx-pro-4500-blackwell-server")
    assert all(not r.confirmed for r in rtx.rates.values()) and not rtx.die_area_confirmed
    # The datasheet-sourced chips carry no unconfirmed item.
    for chip in ("tesla-p4", "tesla-k80"):
        assert cat.accelerator(chip).to_dict()["confirmed"] is True, chip


def test_every_accelerator_instance_type_in_motos_data_resolves_or_is_a_documented_exclusion() -> None:
    types = _moto_types()
    unresolved = {}
    for t, info in sorted(types.items()):
        listed = catalog().instance("aws", t) if _catalogued(t) else None
        try:
            api = _from_type_info(info)
        except PolicyError as exc:
            api = None
            why = str(exc)
        else:
            why = "no GpuInfo/NeuronInfo device"
        if listed is not None and api is not None:
            # Both paths must agree: the catalog's row and what the API itself reports.
            assert (listed.accelerator.id, float(listed.count)) == api, t
        if listed is None and api is None and t not in EXCLUDED:
            unresolved[t] = why
    assert not unresolved, unresolved
    # No stale exclusion: each names a type moto has that truly resolves to no chip.
    for t, reason in EXCLUDED.items():
        assert t in types and reason, t
        assert not _catalogued(t) and _from_type_info(types[t]) is None, t


def _catalogued(instance_type: str) -> bool:
    from policies.errors import UnknownInstanceType

    try:
        catalog().instance("aws", instance_type)
    except UnknownInstanceType:
        return False
    return True


def test_inference_accelerator_only_types_are_catalogued_because_the_collector_ignores_that_field() -> None:
    """dl2q reports its Qualcomm AI 100s only in InferenceAcceleratorInfo; _from_type_info sees no device, so
    without a catalog row its instances would be counted as holding nothing."""
    types = _moto_types()
    only_inference = [t for t, i in types.items()
                      if i.get("InferenceAcceleratorInfo") and not i.get("GpuInfo") and not i.get("NeuronInfo")]
    assert only_inference == ["dl2q.24xlarge"]
    spec = catalog().instance("aws", "dl2q.24xlarge")
    acc = types["dl2q.24xlarge"]["InferenceAcceleratorInfo"]["Accelerators"][0]
    assert (spec.accelerator.id, spec.count) == (catalog().resolve(acc["Name"]).accelerator.id, acc["Count"])


def test_p6_b300_is_confirmed_by_the_api_snapshot() -> None:
    info = _moto_types()["p6-b300.48xlarge"]["GpuInfo"]["Gpus"][0]
    assert (info["Name"], info["Count"], info["MemoryInfo"]["SizeInMiB"]) == ("B300", 8, 275040)
    spec = catalog().instance("aws", "p6-b300.48xlarge")
    assert (spec.accelerator.id, spec.count, spec.confirmed) == ("b300", 8, True)


@pytest.mark.parametrize(("gce_type", "chip"), sorted(GCE_TYPES.items()))
def test_every_gce_accelerator_type_resolves_to_its_chip(gce_type: str, chip: str) -> None:
    assert catalog().resolve(gce_type).accelerator.id == chip


def test_aws_instances_of_the_older_chips_are_counted_and_the_region_is_complete(
    aws: AwsFake, store: str  # noqa: F811
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    want = {"g5g.16xlarge": ("t4g", 2), "g7.12xlarge": ("nvidia-rtx-pro-4500-blackwell-server", 2),
            "inf1.6xlarge": ("inferentia", 4), "dl2q.24xlarge": ("qualcomm-ai100-standard", 8)}
    ids = {run(ec2, t, 1)[0]: t for t in want}
    summary = sync(build("aws", {"accounts": [{"owner": "Acme Cloud", "operator": "Acme Ops",
                                              "regions": ["us-east-1"]}], "retry_mode": "standard"}), store)
    assert summary.status == "ok", summary.as_dict()
    with session_scope(store) as s:
        live = {h.external_id.split(":", 1)[1]: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711
    assert {ids[i]: (h.accelerator, h.count) for i, h in live.items()} == {
        t: (catalog().accelerator(c).id, float(n)) for t, (c, n) in want.items()}


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    fake = ComputeFake().start()
    yield fake
    fake.stop()


def test_gce_n1_instances_with_p4_p100_vws_and_k80_are_counted(gce: ComputeFake, store: str) -> None:  # noqa: F811
    gce.instances["old"] = [
        instance("old", "p4", "us-central1-a", "n1-standard-8", accelerators=[("nvidia-tesla-p4-vws", 2)], iid=1),
        instance("old", "p100", "us-central1-a", "n1-standard-8", accelerators=[("nvidia-tesla-p100", 1)], iid=2),
        instance("old", "k80", "us-central1-a", "n1-standard-8", accelerators=[("nvidia-tesla-k80", 4)], iid=3),
    ]
    summary = sync(build("gcp", {"api_endpoint": gce.url, "anonymous": True,
                                 "projects": [{"id": "old", "owner": "Acme Cloud", "operator": "Acme Ops"}]}), store)
    assert summary.status == "ok", summary.as_dict()
    with session_scope(store) as s:
        live = {h.external_id: (h.accelerator, h.count)
                for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711
    assert live == {"old/1": ("tesla-p4", 2.0), "old/2": ("tesla-p100-pcie-16gb", 1.0), "old/3": ("tesla-k80", 4.0)}
