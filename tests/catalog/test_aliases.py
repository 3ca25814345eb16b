"""Real-world device names resolve to one catalog id: nvidia-smi, GFD, GKE, Karpenter, AWS, AMD labels, MIG."""

from __future__ import annotations

from fractions import Fraction

import pytest

from policies.catalog import Catalog
from policies.errors import UnknownAccelerator


@pytest.mark.parametrize(
    ("name", "chip"),
    [
        # nvidia-smi product names
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("NVIDIA H200", "h200-sxm"),
        ("Tesla T4", "t4"),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        # GPU Feature Discovery nvidia.com/gpu.product
        ("NVIDIA-H100-80GB-HBM3", "h100-sxm"),
        ("A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("NVIDIA-L40S", "l40s"),
        ("NVIDIA-GeForce-RTX-4090", "rtx-4090"),
        # GKE cloud.google.com/gke-accelerator
        ("nvidia-h100-80gb", "h100-sxm"),
        ("nvidia-h100-mega-80gb", "h100-sxm"),
        ("nvidia-tesla-a100", "a100-sxm4-40gb"),
        ("nvidia-a100-80gb", "a100-sxm4-80gb"),
        ("nvidia-l4", "l4"),
        ("nvidia-h200-141gb", "h200-sxm"),
        ("nvidia-b200", "b200"),
        ("nvidia-gb200", "gb200"),
        ("nvidia-tesla-t4", "t4"),
        # GKE cloud.google.com/gke-tpu-accelerator
        ("tpu-v5-lite-podslice", "tpu-v5e"),
        ("tpu-v5p-slice", "tpu-v5p"),
        ("tpu-v6e-slice", "tpu-v6e"),
        ("tpu-v4-podslice", "tpu-v4"),
        # Karpenter instance-gpu-name / instance-accelerator-name
        ("h100", "h100-sxm"),
        ("l4", "l4"),
        ("l40s", "l40s"),
        ("a10g", "a10g"),
        ("t4", "t4"),
        ("trainium", "trainium"),
        ("inferentia2", "inferentia2"),
        # AWS GpuInfo / NeuronInfo names
        ("H100", "h100-sxm"),
        ("H200", "h200-sxm"),
        ("L4", "l4"),
        ("Trainium", "trainium"),
        ("Trainium2", "trainium2"),
        ("Inferentia2", "inferentia2"),
        # AMD node label amd.com/gpu.product-name
        ("AMD_Instinct_MI300X_OAM", "mi300x"),
        # Huawei 910B variants
        ("Ascend 910B3", "ascend-910b3"),
        ("ascend910b4", "ascend-910b4"),
    ],
)
def test_alias_resolves_to_catalog_id(cat: Catalog, name: str, chip: str) -> None:
    assert cat.accelerator(name).id == chip


def test_resolution_is_case_and_separator_insensitive(cat: Catalog) -> None:
    assert cat.accelerator("nvidia_h100_80gb_hbm3").id == "h100-sxm"
    assert cat.accelerator("  NVIDIA-H100-80GB-HBM3 ").id == "h100-sxm"
    assert cat.accelerator("TPU-V6E-SLICE").id == "tpu-v6e"


def test_aws_a100_is_disambiguated_by_gpu_memory(cat: Catalog) -> None:
    assert cat.accelerator("A100", memory_mib=40960).id == "a100-sxm4-40gb"
    assert cat.accelerator("A100", memory_mib=81920).id == "a100-sxm4-80gb"
    assert cat.accelerator("a100", memory_mib=81920).id == "a100-sxm4-80gb"


def test_aws_v100_is_disambiguated_by_gpu_memory(cat: Catalog) -> None:
    assert cat.accelerator("V100", memory_mib=32768).id == "v100-sxm2-32gb"
    assert cat.accelerator("V100", memory_mib=16384).id == "v100-sxm2-16gb"


def test_gfd_single_strategy_mig_product_maps_to_parent_with_fraction(cat: Catalog) -> None:
    r = cat.resolve("NVIDIA-A100-SXM4-80GB-MIG-1g.10gb")
    assert r.accelerator.id == "a100-sxm4-80gb" and r.fraction == Fraction(1, 7) and r.mig_profile == "1g.10gb"
    r = cat.resolve("A100-SXM4-40GB-MIG-3g.20gb")
    assert r.accelerator.id == "a100-sxm4-40gb" and r.fraction == Fraction(3, 7)
    r = cat.resolve("NVIDIA-H100-80GB-HBM3-MIG-7g.80gb")
    assert r.accelerator.id == "h100-sxm" and r.fraction == 1


def test_accelerator_of_a_mig_name_is_the_parent_chip(cat: Catalog) -> None:
    assert cat.accelerator("NVIDIA-H200-MIG-2g.35gb").id == "h200-sxm"


def test_mixed_strategy_mig_resource_with_parent_hint(cat: Catalog) -> None:
    r = cat.resolve("nvidia.com/mig-1g.10gb", parent="NVIDIA-A100-SXM4-80GB")
    assert r.accelerator.id == "a100-sxm4-80gb" and r.fraction == Fraction(1, 7)


def test_mixed_strategy_mig_resource_without_parent_takes_the_highest_tpp_candidate(cat: Catalog) -> None:
    r = cat.resolve("nvidia.com/mig-1g.10gb")
    assert r.fraction == Fraction(1, 7)
    assert r.accelerator.tpp == 15832  # H100-class, not the A100 that shares the profile
    assert "a100-sxm4-80gb" in r.ambiguous_parents and "h100-sxm" in r.ambiguous_parents


def test_a_mig_profile_with_media_extensions_is_the_same_compute_slice_however_the_plugin_spells_it(
    cat: Catalog,
) -> None:
    # NVML's 1g.10gb+me; the device plugin's resource name writes "+" as "."; newer profiles add "-me", ".all".
    for name in ("nvidia.com/mig-1g.10gb+me", "nvidia.com/mig-1g.10gb.me", "nvidia.com/mig-1g.10gb.me.all",
                 "nvidia.com/mig-1g.10gb-me"):
        r = cat.resolve(name, parent="NVIDIA-H100-80GB-HBM3")
        assert (r.accelerator.id, r.fraction, r.mig_profile) == ("h100-sxm", Fraction(1, 7), "1g.10gb"), name
    r = cat.resolve("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb.me")
    assert r.accelerator.id == "h100-sxm" and r.fraction == Fraction(1, 7)
    with pytest.raises(UnknownAccelerator, match="not in catalog"):
        cat.resolve("nvidia.com/mig-1g.10gbx")  # not a suffix: a different, unknown name


def test_mig_profile_the_parent_does_not_offer_is_rejected(cat: Catalog) -> None:
    with pytest.raises(UnknownAccelerator, match=r"no MIG profile 1g\.18gb"):
        cat.resolve("NVIDIA-A100-SXM4-80GB-MIG-1g.18gb")


def test_unknown_accelerator_says_how_to_add_it_and_suggests(cat: Catalog) -> None:
    with pytest.raises(UnknownAccelerator) as exc:
        cat.accelerator("H1000")
    msg = str(exc.value)
    assert msg.startswith("H1000: not in catalog; add it to policies/data/accelerators.yaml")
    assert "VEU_CATALOG_FILES" in msg and "did you mean" in msg and "H100" in msg


def test_every_alias_resolves_back_to_its_own_chip(cat: Catalog) -> None:
    for acc in cat.accelerators():
        for alias in acc.aliases:
            assert cat.accelerator(alias.name, memory_mib=alias.memory_mib).id == acc.id, alias
        assert cat.accelerator(acc.name).id == acc.id
        assert cat.accelerator(acc.id).id == acc.id


def test_every_family_is_represented(cat: Catalog) -> None:
    families = {a.family for acc in cat.accelerators() for a in acc.aliases}
    assert {"nvidia-smi", "gfd", "gke", "gke-tpu", "karpenter", "aws", "amd"} <= families
