"""GCP TPU VM machine types the catalog lacked (session 21c): their VMs were left uncounted and the project partial.

Sources (each row in policies/data/instance_types.yaml names its own):
- ct5l-hightpu-1t / 4t / 8t: TPU v5e single-host (serving) VMs, GKE label ``tpu-v5-lite-device``, 1 / 4 / 8 chips.
  GKE cluster-autoscaler's machine-type table (Google LLC; ``fixedTpuCount``, ``machineFamilyForTpuType``),
  Cloud TPU v5e docs (single-host serving slices 1x1 / 2x2 / 2x4 hold 1 / 4 / 8 chips), and GCE's machine-type
  listing (same vCPU/RAM as ct5lp: 24/112/224 vCPU, 48/192/384 GB). Not in accelerators.md, so confirmed: false.
- ct3-hightpu-4t / ct3p-hightpu-4t: TPU v3 (``tpu-v3-device`` / ``tpu-v3-slice``), 4 chips per VM. GKE release
  notes 2024-10-31 name both types; the count is the autoscaler's and Cloud TPU v3 docs' (v3-8 = 8 TensorCores,
  2 per chip = 4 chips on one host). Not in accelerators.md, so confirmed: false.
- tpu7x-ultranet-4t: TPU7x (``tpu7x``), 4 chips, from the autoscaler table only: confirmed: false.
- TPU API slice names v3-N count TensorCores, 2 per chip (Cloud TPU v3 docs); a v3 pod is 1,024 chips.
TPU v3 itself was not a catalogued chip: Cloud TPU v3 docs give 123 TFLOPS BF16 per chip (TPP 123 x 16 = 1,968),
32 GiB HBM2 at 900 GBps; no die area is sourced, so its density is unknown and the chip is marked unconfirmed.
"""

from __future__ import annotations

import pytest

from policies.catalog import Catalog
from policies.errors import UnknownInstanceType

NEW_TYPES = [
    ("ct5l-hightpu-1t", "tpu-v5e", 1),
    ("ct5l-hightpu-4t", "tpu-v5e", 4),
    ("ct5l-hightpu-8t", "tpu-v5e", 8),
    ("ct3-hightpu-4t", "tpu-v3", 4),
    ("ct3p-hightpu-4t", "tpu-v3", 4),
    ("tpu7x-ultranet-4t", "tpu-v7", 4),
]


@pytest.mark.parametrize(("itype", "chip", "count"), NEW_TYPES)
def test_tpu_machine_type_resolves_to_its_chip_and_count(cat: Catalog, itype: str, chip: str, count: int) -> None:
    spec = cat.instance("gcp", itype)
    assert (spec.accelerator.id, spec.count) == (chip, count)
    # Secondary sources only (not in accelerators.md): shown as unconfirmed, with a note naming the source.
    assert spec.confirmed is False and spec.note, itype
    assert cat.instance("GCP", itype.upper()).count == count


def test_tpu_v3_chip_has_the_cloud_tpu_docs_rate_and_no_invented_density(cat: Catalog) -> None:
    acc = cat.accelerator("tpu-v3")
    assert acc.kind == "tpu" and acc.vendor == "google" and acc.datacenter
    assert acc.tpp == pytest.approx(123 * 16) and acc.tpp_precision == "BF16"
    assert acc.performance_density is None  # no die area sourced
    view = acc.to_dict()
    assert view["confirmed"] is False and view["unconfirmed_notes"]


@pytest.mark.parametrize(("label", "chip"), [("tpu-v3-device", "tpu-v3"), ("tpu-v3-slice", "tpu-v3"),
                                             ("tpu-v5-lite-device", "tpu-v5e")])
def test_gke_tpu_accelerator_labels_resolve(cat: Catalog, label: str, chip: str) -> None:
    assert cat.resolve(label).accelerator.id == chip


@pytest.mark.parametrize(("slice_name", "chips"), [("v3-8", 4), ("v3-32", 16), ("v3-2048", 1024)])
def test_v3_slice_names_count_tensorcores_two_per_chip(cat: Catalog, slice_name: str, chips: int) -> None:
    spec = cat.instance("gcp", slice_name)
    assert (spec.accelerator.id, spec.count) == ("tpu-v3", chips)


@pytest.mark.parametrize("slice_name", ["v3-7", "v3-4096"])
def test_v3_slice_with_odd_cores_or_more_than_a_pod_is_refused(cat: Catalog, slice_name: str) -> None:
    with pytest.raises(UnknownInstanceType, match="v3"):
        cat.instance("gcp", slice_name)


def test_unsourced_tpu_machine_types_are_still_unknown_not_guessed(cat: Catalog) -> None:
    """ct4l (TPU v4 lite, a different chip from v4) and tpu7-standard-* (TPU7, not TPU7x) have no sourced chip."""
    for itype in ("ct4l-hightpu-4t", "tpu7-standard-4t", "ct2-hightpu-4t"):
        with pytest.raises(UnknownInstanceType, match=r"instance_types\.gcp"):
            cat.instance("gcp", itype)
