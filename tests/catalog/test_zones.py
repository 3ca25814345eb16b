"""AWS Local Zones and Wavelength Zones -> the country they are really in (not their parent region's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import kb
from policies.catalog import Catalog, CatalogDataError
from policies.errors import UnknownRegion


@pytest.mark.parametrize(
    ("zone", "country", "parent_country"),
    [
        ("ap-northeast-1-tpe-1a", "TW", "JP"),
        ("us-east-1-bue-1a", "AR", "US"),
        ("us-east-1-lim-1a", "PE", "US"),
        ("us-east-1-qro-1a", "MX", "US"),
        ("us-east-1-scl-1a", "CL", "US"),
        ("ap-southeast-1-bkk-1a", "TH", "SG"),
        ("ap-southeast-1-mnl-1a", "PH", "SG"),
        ("eu-central-1-waw-1a", "PL", "DE"),
        ("eu-central-1-ham-1a", "DE", "DE"),
        ("eu-north-1-cph-1a", "DK", "SE"),
        ("eu-north-1-hel-1a", "FI", "SE"),
        ("me-south-1-mct-1a", "OM", "BH"),
        ("af-south-1-los-1a", "NG", "ZA"),
        ("ap-south-1-ccu-1a", "IN", "IN"),
        ("ap-south-1-del-1a", "IN", "IN"),
        ("ap-southeast-2-akl-1a", "NZ", "AU"),
        ("ap-southeast-2-per-1a", "AU", "AU"),
        ("us-west-2-lax-1b", "US", "US"),
        ("us-east-1-bos-1a", "US", "US"),
        ("us-east-1-wl1-bos-wlz-1", "US", "US"),
        ("ap-northeast-2-wl1-cjj-wlz-1", "KR", "KR"),
    ],
)
def test_local_and_wavelength_zone_maps_to_its_own_country(cat: Catalog, zone: str, country: str,
                                                           parent_country: str) -> None:
    assert cat.zone_country("aws", zone) == country
    spec = cat.zone("AWS", zone.upper())
    assert spec is not None and spec.country == country
    assert cat.region("aws", spec.region).country == parent_country


def test_the_taipei_local_zone_is_in_taiwan_while_its_region_is_in_japan(cat: Catalog) -> None:
    spec = cat.zone("aws", "ap-northeast-1-tpe-1a")
    assert spec is not None
    assert (spec.zone_group, spec.region, spec.country, spec.location, spec.kind) == (
        "ap-northeast-1-tpe-1", "ap-northeast-1", "TW", "Taipei", "local")
    assert cat.region("aws", "ap-northeast-1").country == "JP"


@pytest.mark.parametrize("zone", ["us-east-1a", "ap-northeast-1c", "us-gov-west-1a", "cn-north-1a", "eu-central-2b",
                                  "us-east-1", ""])
def test_ordinary_availability_zone_or_region_is_not_a_local_zone(cat: Catalog, zone: str) -> None:
    assert cat.zone("aws", zone) is None
    assert cat.zone_country("aws", zone) is None


@pytest.mark.parametrize("zone", ["ap-northeast-1-zzz-1a", "us-east-1-wl1-zzz-wlz-1"])
def test_local_or_wavelength_zone_the_catalog_lacks_says_how_to_add_it(cat: Catalog, zone: str) -> None:
    with pytest.raises(UnknownRegion) as exc:
        cat.zone("aws", zone)
    msg = str(exc.value)
    assert zone in msg and "zones.aws" in msg and "policies/data/zones.yaml" in msg


def test_a_name_no_aws_zone_has_is_refused(cat: Catalog) -> None:
    with pytest.raises(UnknownRegion, match="not an availability zone name"):
        cat.zone("aws", "tokyo-local")


def test_a_site_region_may_be_a_zone_group_but_not_one_zone_of_it(cat: Catalog) -> None:
    assert cat.place("aws", "ap-northeast-1-tpe-1").country == "TW"
    assert cat.place("aws", "ap-northeast-1").country == "JP"
    with pytest.raises(UnknownRegion, match="give the zone group"):
        cat.place("aws", "ap-northeast-1-tpe-1a")
    with pytest.raises(UnknownRegion, match=r"regions\.aws"):
        cat.place("aws", "ap-northeast-1-zzz-1")


def test_every_zone_hangs_off_a_catalogued_region_and_unconfirmed_rows_say_why(cat: Catalog) -> None:
    zones = cat.zones("aws")
    assert len(zones) > 50
    for z in zones:
        assert cat.region("aws", z.region)
        assert z.zone_group.startswith(f"{z.region}-")
        assert z.confirmed or z.note
        assert "available-local-zones" in z.source


def _load(tmp_path: Path, text: str) -> Catalog:
    f = tmp_path / "z.yaml"
    f.write_text(text)
    return kb.load_catalog((f,))


def test_operator_file_adds_a_zone(tmp_path: Path) -> None:
    c = _load(tmp_path, "zones:\n  aws:\n    us-east-1-xyz-1: {country: US, location: Somewhere}\n")
    assert c.zone_country("aws", "us-east-1-xyz-1a") == "US"
    assert c.zone_country("aws", "ap-northeast-1-tpe-1a") == "TW"  # built-ins still there


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ("us-east-1-xyz-1: {country: QQ, location: X}", r"zones\.aws\.us-east-1-xyz-1\.country: 'QQ' is not an ISO"),
        ("us-east-1-xyz-1: {country: Germany, location: X}", r"zones\.aws\.us-east-1-xyz-1\.country"),
        ("us-east-1-xyz-1: {country: US, location: X, city: Y}", r"zones\.aws\.us-east-1-xyz-1\.city"),
        ("us-east-1-xyz-1: {country: US}", r"zones\.aws\.us-east-1-xyz-1\.location"),
        ("us-east-1-xyz-1: {country: US, location: X, confirmed: false}", r"zones\.aws\.us-east-1-xyz-1: .*note"),
        ("us-east-1: {country: US, location: X}", r"zones\.aws\.us-east-1: not a Local Zone group"),
        ("us-east-1-xyz-1a: {country: US, location: X}", r"zones\.aws\.us-east-1-xyz-1a: not a Local Zone group"),
        ("xx-north-9-abc-1: {country: US, location: X}", r"zones\.aws\.xx-north-9-abc-1: parent region 'xx-north-9'"),
    ],
)
def test_malformed_zone_row_names_the_file_and_field(tmp_path: Path, row: str, needle: str) -> None:
    with pytest.raises(CatalogDataError, match=rf"z\.yaml: {needle}"):
        _load(tmp_path, f"zones:\n  aws:\n    {row}\n")


def test_unknown_key_in_the_zones_section_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogDataError, match=r"z\.yaml: zone_source"):
        _load(tmp_path, "zone_source: {aws: x}\n")
