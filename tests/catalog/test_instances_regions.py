"""Cloud instance types -> (accelerator, chips) and regions -> country, with errors that say how to add them."""

from __future__ import annotations

import pytest

from policies.catalog import Catalog
from policies.errors import UnknownInstanceType, UnknownRegion


@pytest.mark.parametrize(
    ("provider", "itype", "chip", "count"),
    [
        ("aws", "p3.16xlarge", "v100-sxm2-16gb", 8),
        ("aws", "p3dn.24xlarge", "v100-sxm2-32gb", 8),
        ("aws", "p4d.24xlarge", "a100-sxm4-40gb", 8),
        ("aws", "p4de.24xlarge", "a100-sxm4-80gb", 8),
        ("aws", "p5.48xlarge", "h100-sxm", 8),
        ("aws", "p5.4xlarge", "h100-sxm", 1),
        ("aws", "p5e.48xlarge", "h200-sxm", 8),
        ("aws", "p5en.48xlarge", "h200-sxm", 8),
        ("aws", "p6-b200.48xlarge", "b200", 8),
        ("aws", "g4dn.12xlarge", "t4", 4),
        ("aws", "g5.48xlarge", "a10g", 8),
        ("aws", "g5.12xlarge", "a10g", 4),
        ("aws", "g6.48xlarge", "l4", 8),
        ("aws", "g6e.12xlarge", "l40s", 4),
        ("aws", "g6e.xlarge", "l40s", 1),
        ("aws", "trn1.32xlarge", "trainium", 16),
        ("aws", "trn1n.32xlarge", "trainium", 16),
        ("aws", "trn2.48xlarge", "trainium2", 16),
        ("aws", "inf2.48xlarge", "inferentia2", 12),
        ("aws", "inf2.24xlarge", "inferentia2", 6),
        ("gcp", "a2-highgpu-8g", "a100-sxm4-40gb", 8),
        ("gcp", "a2-megagpu-16g", "a100-sxm4-40gb", 16),
        ("gcp", "a2-ultragpu-8g", "a100-sxm4-80gb", 8),
        ("gcp", "a3-highgpu-8g", "h100-sxm", 8),
        ("gcp", "a3-megagpu-8g", "h100-sxm", 8),
        ("gcp", "a3-ultragpu-8g", "h200-sxm", 8),
        ("gcp", "a4-highgpu-8g", "b200", 8),
        ("gcp", "a4x-highgpu-4g", "gb200", 4),
        ("gcp", "g2-standard-96", "l4", 8),
        ("gcp", "g2-standard-24", "l4", 2),
        ("gcp", "ct4p-hightpu-4t", "tpu-v4", 4),
        ("gcp", "ct5lp-hightpu-8t", "tpu-v5e", 8),
        ("gcp", "ct5p-hightpu-4t", "tpu-v5p", 4),
        ("gcp", "ct6e-standard-8t", "tpu-v6e", 8),
        ("gcp", "tpu7x-standard-4t", "tpu-v7", 4),
    ],
)
def test_instance_type_maps_to_accelerator_and_chip_count(cat: Catalog, provider: str, itype: str, chip: str,
                                                          count: int) -> None:
    spec = cat.instance(provider, itype)
    assert (spec.accelerator.id, spec.count) == (chip, count)


def test_instance_tpp_is_chips_times_chip_tpp(cat: Catalog) -> None:
    assert cat.instance("aws", "p5.48xlarge").tpp == pytest.approx(8 * 15832)
    assert cat.instance("AWS", "P5.48XLARGE").count == 8


@pytest.mark.parametrize(
    ("slice_name", "chip", "chips"),
    [
        ("v5p-8", "tpu-v5p", 4),      # v5p-N counts TensorCores, 2 per chip
        ("v4-32", "tpu-v4", 16),      # v4-N counts TensorCores
        ("v5litepod-16", "tpu-v5e", 16),  # v5e counts chips
        ("v6e-8", "tpu-v6e", 8),      # v6e counts chips
        ("v6e-256", "tpu-v6e", 256),
    ],
)
def test_tpu_slice_names_count_chips_not_cores(cat: Catalog, slice_name: str, chip: str, chips: int) -> None:
    spec = cat.instance("gcp", slice_name)
    assert (spec.accelerator.id, spec.count) == (chip, chips)


def test_odd_core_count_for_a_core_counted_tpu_family_is_rejected(cat: Catalog) -> None:
    with pytest.raises(UnknownInstanceType, match="multiple of 2"):
        cat.instance("gcp", "v5p-7")


def test_unknown_instance_type_says_how_to_add_it(cat: Catalog) -> None:
    with pytest.raises(UnknownInstanceType) as exc:
        cat.instance("aws", "p5.96xlarge")
    msg = str(exc.value)
    assert "p5.96xlarge" in msg and "instance_types.aws" in msg and "did you mean" in msg


def test_unknown_provider_for_instances(cat: Catalog) -> None:
    with pytest.raises(UnknownInstanceType, match="provider"):
        cat.instance("oracle", "bm.gpu.h100.8")


@pytest.mark.parametrize(
    ("provider", "region", "country"),
    [
        ("aws", "us-east-1", "US"), ("aws", "eu-west-1", "IE"), ("aws", "eu-central-2", "CH"),
        ("aws", "me-central-1", "AE"), ("aws", "ap-east-1", "HK"), ("aws", "cn-northwest-1", "CN"),
        ("aws", "ap-southeast-5", "MY"), ("aws", "il-central-1", "IL"),
        ("gcp", "europe-west4", "NL"), ("gcp", "me-central2", "SA"), ("gcp", "asia-east1", "TW"),
        ("gcp", "europe-north2", "SE"), ("gcp", "northamerica-south1", "MX"),
        ("azure", "norwayeast", "NO"), ("azure", "westeurope", "NL"), ("azure", "northeurope", "IE"),
        ("azure", "uaenorth", "AE"), ("azure", "qatarcentral", "QA"), ("azure", "eastasia", "HK"),
        ("azure", "southeastasia", "SG"), ("azure", "mexicocentral", "MX"),
    ],
)
def test_region_maps_to_country(cat: Catalog, provider: str, region: str, country: str) -> None:
    assert cat.region(provider, region).country == country


def test_every_requested_azure_region_is_present_and_marked_unsourced(cat: Catalog) -> None:
    wanted = [
        "eastus", "eastus2", "westus2", "westus3", "centralus", "southcentralus", "northeurope", "westeurope",
        "uksouth", "francecentral", "germanywestcentral", "swedencentral", "norwayeast", "switzerlandnorth",
        "japaneast", "koreacentral", "australiaeast", "canadacentral", "centralindia", "southeastasia",
        "eastasia", "uaenorth", "qatarcentral", "brazilsouth", "southafricanorth", "israelcentral",
        "polandcentral", "italynorth", "spaincentral", "mexicocentral",
    ]
    for r in wanted:
        spec = cat.region("azure", r)
        assert spec.confirmed is False and "Azure" in spec.source


def test_unknown_region_says_how_to_add_it(cat: Catalog) -> None:
    with pytest.raises(UnknownRegion) as exc:
        cat.region("aws", "eu-west-9")
    assert "regions.aws" in str(exc.value) and "policies/data/regions.yaml" in str(exc.value)


def test_every_instance_row_references_a_catalogued_chip(cat: Catalog) -> None:
    specs = cat.instance_types()
    assert len(specs) > 80
    assert all(s.count > 0 for s in specs)


@pytest.mark.parametrize("slice_name", ["v5p-0", "v4-00", "v6e-0", "v5litepod-0"])
def test_empty_tpu_slice_is_rejected_not_zero_chips(cat: Catalog, slice_name: str) -> None:
    with pytest.raises(UnknownInstanceType, match="N must be positive"):
        cat.instance("gcp", slice_name)


def test_a_v5e_or_v6e_slice_is_at_most_one_256_chip_pod(cat: Catalog) -> None:
    # accelerators.md §3.2: v5e and v6e pods max 256 chips.
    assert cat.instance("gcp", "v6e-256").count == 256
    for name in ("v6e-512", "v5litepod-1024"):
        with pytest.raises(UnknownInstanceType, match="at most 256 chips"):
            cat.instance("gcp", name)
