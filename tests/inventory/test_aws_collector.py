"""The AWS collector against moto in server mode: accounts via AssumeRole, every region, faults by region."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import moto.ec2
import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.inventory import sync
from agent.kb import catalog
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from agent.store.tables.inventory import CollectorError, CollectorRun
from policies.errors import PolicyError
from tests.inventory.awsfake import AwsFake, run, seed_client

ACCOUNT_A = "123456789012"  # moto's default account (the caller's own credentials)
ACCOUNT_B = "222222222222"
ROLE_B = f"arn:aws:iam::{ACCOUNT_B}:role/veu-inventory"
P5 = "p5.48xlarge"


def _h100() -> str:
    return catalog().instance("aws", P5).accelerator.id


def _collector(regions: list[str] | None = None, **kw: object):  # type: ignore[no-untyped-def]
    acct = {"owner": "Acme Cloud", "operator": "Acme Ops"}
    if regions is not None:
        acct["regions"] = regions  # type: ignore[assignment]
    cfg = {"accounts": [acct, {**acct, "role_arn": ROLE_B}], "max_attempts": 3, "retry_mode": "standard"} | kw
    return build("aws", cfg)


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


def test_instances_in_every_enabled_region_of_two_accounts_become_holdings(aws: AwsFake, store: str) -> None:
    a_use1 = run(seed_client(aws.moto_url, "ec2", "us-east-1"), P5, 2)
    run(seed_client(aws.moto_url, "ec2", "us-east-1"), "t3.micro", 3)  # no accelerators: not a holding
    a_euw1 = run(seed_client(aws.moto_url, "ec2", "eu-west-1"), P5, 1)
    b_apse1 = run(seed_client(aws.moto_url, "ec2", "ap-southeast-1", ROLE_B), P5, 2)

    aws.faults.enabled_regions = ["ap-southeast-1", "eu-west-1", "us-east-1", "us-west-2"]
    summary = sync(_collector(), store)  # no regions configured: every region each account reports

    assert summary.status == "ok", summary.as_dict()
    live = _live(store)
    expected = {f"{ACCOUNT_A}:{i}" for i in a_use1 + a_euw1} | {f"{ACCOUNT_B}:{i}" for i in b_apse1}
    assert set(live) == expected
    assert {h.accelerator for h in live.values()} == {_h100()}
    assert all(h.count == 8 for h in live.values())
    assert {h.scope for h in live.values()} == {
        f"{ACCOUNT_A}/us-east-1",
        f"{ACCOUNT_A}/eu-west-1",
        f"{ACCOUNT_B}/ap-southeast-1",
    }
    with session_scope(store) as s:
        sites = {x.region: x for x in s.exec(select(Site))}
    assert sites["eu-west-1"].country == "IE" and sites["ap-southeast-1"].country == "SG"
    # Every region the accounts report, for both accounts, was a scope of its own; nothing else was listed.
    assert sorted(x.scope for x in summary.scopes) == sorted(
        f"{a}/{r}" for a in (ACCOUNT_A, ACCOUNT_B) for r in aws.faults.enabled_regions)


def test_pagination_follows_next_token_to_the_last_page(aws: AwsFake, store: str) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    ids = [i for _ in range(12) for i in run(ec2, P5, 1)]  # 12 reservations; pages of 5 -> 3 pages
    summary = sync(_collector(["us-east-1"], page_size=5), store)
    assert summary.status == "ok"
    assert {f"{ACCOUNT_A}:{i}" for i in ids} <= set(_live(store))


def test_terminated_instance_is_retired_not_deleted_and_history_kept(aws: AwsFake, store: str) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    keep, gone = run(ec2, P5, 1)[0], run(ec2, P5, 1)[0]
    sync(_collector(["us-east-1"]), store)
    ec2.terminate_instances(InstanceIds=[gone])
    sync(_collector(["us-east-1"]), store)
    with session_scope(store) as s:
        rows = {h.external_id: h for h in s.exec(select(Holding))}
    assert rows[f"{ACCOUNT_A}:{gone}"].retired_at is not None
    assert rows[f"{ACCOUNT_A}:{keep}"].retired_at is None
    assert len(rows) == 2


def test_throttled_region_is_retried_with_backoff_and_completes(aws: AwsFake, store: str) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "eu-west-1"), P5, 2)
    aws.faults.throttle["eu-west-1"] = 2  # two RequestLimitExceeded answers, then moto
    summary = sync(_collector(["eu-west-1", "us-east-1"], max_attempts=5), store)
    assert aws.faults.throttled["eu-west-1"] == 2
    assert summary.status == "ok"
    assert {f"{ACCOUNT_A}:{i}" for i in ids} <= set(_live(store))


def test_erroring_region_keeps_its_holdings_and_records_the_error(aws: AwsFake, store: str) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "eu-west-1"), P5, 2)
    use1 = run(seed_client(aws.moto_url, "ec2", "us-east-1"), P5, 1)
    sync(_collector(["eu-west-1", "us-east-1"]), store)
    aws.faults.error.add("eu-west-1")
    seed_client(aws.moto_url, "ec2", "us-east-1").terminate_instances(InstanceIds=use1)

    summary = sync(_collector(["eu-west-1", "us-east-1"], max_attempts=2), store)

    assert summary.status == "partial"
    live = _live(store)
    assert {f"{ACCOUNT_A}:{i}" for i in ids} <= set(live)  # the failing region retired nothing
    assert f"{ACCOUNT_A}:{use1[0]}" not in live  # the healthy region still retires what vanished
    with session_scope(store) as s:
        errs = s.exec(select(CollectorError).where(CollectorError.run_id == summary.run_id)).all()
        run_row = s.get(CollectorRun, summary.run_id)
    assert any(e.scope == f"{ACCOUNT_A}/eu-west-1" and "Unavailable" in e.message for e in errs)
    assert all("test-secret-never-logged" not in e.message for e in errs)
    assert run_row is not None and run_row.status == "partial"


def test_partial_listing_of_a_region_never_retires_chips_in_that_region(aws: AwsFake, store: str) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    ids = [i for _ in range(6) for i in run(ec2, P5, 1)]
    sync(_collector(["us-east-1"], page_size=5), store)
    aws.faults.fail_on_next_page.add("us-east-1")  # page 1 arrives, page 2 fails

    summary = sync(_collector(["us-east-1"], page_size=5), store)

    assert summary.status != "ok"
    assert {f"{ACCOUNT_A}:{i}" for i in ids} <= set(_live(store))


def test_active_capacity_block_counts_its_unused_slots_as_held(aws: AwsFake, store: str) -> None:
    aws.faults.reservations["us-east-1"] = [
        {"id": "cr-0123456789abcdef0", "type": P5, "available": 2, "total": 4},
        {"id": "cr-0fffffffffffffff0", "type": P5, "available": 0, "total": 1},  # fully used: instances count
    ]
    sync(_collector(["us-east-1"]), store)
    live = _live(store)
    cr = live[f"{ACCOUNT_A}:cr-0123456789abcdef0"]
    assert (cr.accelerator, cr.count) == (_h100(), 16)
    assert f"{ACCOUNT_A}:cr-0fffffffffffffff0" not in live


def test_capacity_reservation_shared_from_another_account_is_counted_by_its_owner_only(
    aws: AwsFake, store: str,
) -> None:
    aws.faults.reservations["us-east-1"] = [
        {"id": "cr-0aaaaaaaaaaaaaaa0", "type": P5, "available": 1, "total": 1, "owner": ACCOUNT_A},
        {"id": "cr-0bbbbbbbbbbbbbbb0", "type": P5, "available": 3, "total": 3, "owner": "999999999999"},
    ]
    sync(_collector(["us-east-1"]), store)
    live = _live(store)
    assert f"{ACCOUNT_A}:cr-0aaaaaaaaaaaaaaa0" in live
    assert f"{ACCOUNT_A}:cr-0bbbbbbbbbbbbbbb0" not in live  # shared in: the owner's listing holds its slots


def _moto_type_only_the_api_describes() -> tuple[str, str, float]:
    """An instance type with GpuInfo in moto's data that the catalog lacks but whose GPU it resolves."""
    path = Path(moto.ec2.__file__).parent / "resources" / "instance_types.json.gz"
    with gzip.open(path) as f:
        types = json.loads(f.read())
    cat = catalog()
    for name, info in sorted(types.items()):
        gpus = ((info.get("GpuInfo") or {}).get("Gpus")) or []
        if not gpus:
            continue
        try:
            cat.instance("aws", name)
            continue
        except PolicyError:
            pass
        g = gpus[0]
        if g.get("GpuPartitionSize", 1.0) != 1.0:
            continue  # fractional GPU types: test_fractional_l4_instances_hold_their_share_of_one_gpu
        mib = g.get("MemoryInfo", {}).get("SizeInMiB")
        found = cat.find(f"{g['Manufacturer']} {g['Name']}", mib) or cat.find(g["Name"], mib)
        if found is not None:
            return name, found.id, float(g["Count"])
    pytest.skip("every moto GPU type is already in the catalog")


def test_unknown_instance_type_falls_back_to_describe_instance_types_once_per_run(aws: AwsFake, store: str) -> None:
    itype, acc, count = _moto_type_only_the_api_describes()
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-1"), itype, 2) + run(
        seed_client(aws.moto_url, "ec2", "eu-west-1"), itype, 1
    )
    col = _collector(["us-east-1", "eu-west-1"])
    sync(col, store)
    live = _live(store)
    for i in ids:
        h = next(v for k, v in live.items() if k.endswith(i))
        assert (h.accelerator, h.count, h.instance_type) == (acc, count, itype)
    assert col.types.api_calls == 1  # cached for the run across regions and accounts


def test_fractional_l4_instances_hold_their_share_of_one_gpu(aws: AwsFake, store: str) -> None:
    # g6f types are slices of one L4: DescribeInstanceTypes reports Count 0 with LogicalGpuCount 1 and
    # GpuPartitionSize (accelerators.md §3.1: fraction = memory / 22,888 MiB). Eight g6f.large are one L4.
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    small, half = run(ec2, "g6f.large", 8), run(ec2, "g6f.4xlarge", 1)
    assert sync(_collector(["us-east-1"]), store).status == "ok"
    live = _live(store)
    l4 = catalog().resolve("NVIDIA L4").accelerator.id
    assert {(h.accelerator, h.count) for k, h in live.items() if k.split(":")[1] in small} == {(l4, 0.125)}
    assert [h.count for k, h in live.items() if k.split(":")[1] in half] == [0.5]


def test_unreachable_account_retires_nothing(aws: AwsFake, store: str) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-1", ROLE_B), P5, 1)
    sync(_collector(["us-east-1"]), store)
    bad = build(
        "aws",
        {
            "accounts": [{"role_arn": ROLE_B, "regions": ["us-east-1"], "owner": "Acme Cloud"}],
            "endpoint_url": "http://127.0.0.1:9",
            "max_attempts": 1,
        },
    )
    summary = sync(bad, store)
    assert summary.status == "failed"
    assert f"{ACCOUNT_B}:{ids[0]}" in _live(store)


def test_each_account_reads_its_own_credentials_file_and_the_environment_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    keys = {"a": "AKIAAAAAAAAAAAAAAAAA", "b": "AKIABBBBBBBBBBBBBBBB"}
    for name, key in keys.items():
        (tmp_path / name).write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = s-{name}\n")
    col = build(
        "aws",
        {"accounts": [{"id": "111111111111", "credentials_file": str(tmp_path / "a")},
                      {"id": "222222222222", "credentials_file": str(tmp_path / "b")}]},
    )
    # Sessions are all made before the region threads resolve credentials, as collect() does.
    sessions = [col._session(a)[0] for a in col.config.accounts]  # type: ignore[attr-defined]
    assert [s.get_credentials().access_key for s in sessions] == [keys["a"], keys["b"]]
    assert "AWS_SHARED_CREDENTIALS_FILE" not in os.environ


# --- Local Zones and Wavelength Zones: an instance is in the zone's country, not its parent region's ------------

TOKYO, TAIPEI_ZONE, TAIPEI_GROUP = "ap-northeast-1", "ap-northeast-1-tpe-1a", "ap-northeast-1-tpe-1"


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    """Run veuctl in-process as the console script does (errors: one line on stderr, exit code 2)."""
    import sys

    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = capsys.readouterr()
    return code, out.out + out.err


def _site_of(url: str, external_id: str) -> Site:
    with session_scope(url) as s:
        h = s.exec(select(Holding).where(Holding.external_id == external_id)).one()
        site = s.get(Site, h.site_id)
        assert site is not None
        s.expunge(site)
        return site


def test_gpu_in_the_taipei_local_zone_counts_in_taiwan_not_japan(
    aws: AwsFake, store: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", TOKYO)
    tokyo = run(ec2, P5, 1)[0]
    taipei = run(ec2, P5, 1)[0]
    aws.faults.placement[taipei] = TAIPEI_ZONE  # moto refuses Local Zone names; the proxy reports it there
    # The operator registers the zone group as a site; its country is checked against the catalog.
    code, out = _veuctl(capsys, monkeypatch, "sites", "add", "aws-taipei", "--country", "JP", "--provider", "aws",
                        "--region", TAIPEI_GROUP, "--db", store)
    assert code == 2 and "JP disagrees" in out and "TW" in out
    code, out = _veuctl(capsys, monkeypatch, "sites", "add", "aws-taipei", "--country", "TW", "--provider", "aws",
                        "--region", TAIPEI_GROUP, "--db", store, "--json")
    assert code == 0, out

    summary = sync(_collector([TOKYO]), store)

    assert summary.status == "ok", summary.as_dict()
    tw = _site_of(store, f"{ACCOUNT_A}:{taipei}")
    jp = _site_of(store, f"{ACCOUNT_A}:{tokyo}")
    assert (tw.name, tw.country, tw.region) == ("aws-taipei", "TW", TAIPEI_GROUP)
    assert (jp.country, jp.region) == ("JP", TOKYO)
    # Per-country sums: one p5 (8 H100) in each country, none of Taipei's in Japan.
    live = _live(store)
    with session_scope(store) as s:
        by_country: dict[str, float] = {}
        for h in live.values():
            site = s.get(Site, h.site_id)
            assert site is not None
            by_country[site.country] = by_country.get(site.country, 0) + h.count
    assert by_country == {"JP": 8, "TW": 8}


def test_gpu_in_an_unregistered_foreign_local_zone_is_counted_nowhere_and_the_region_retires_nothing(
    aws: AwsFake, store: str,
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", TOKYO)
    tokyo = run(ec2, P5, 1)[0]
    sync(_collector([TOKYO]), store)
    ec2.terminate_instances(InstanceIds=[tokyo])
    taipei = run(ec2, P5, 1)[0]
    aws.faults.placement[taipei] = TAIPEI_ZONE
    also_tokyo = run(ec2, P5, 1)[0]

    summary = sync(_collector([TOKYO]), store)

    assert summary.status == "partial"
    live = _live(store)
    assert f"{ACCOUNT_A}:{taipei}" not in live  # not folded into Tokyo's site
    assert f"{ACCOUNT_A}:{tokyo}" in live  # the scope was not listed completely: nothing retired
    assert f"{ACCOUNT_A}:{also_tokyo}" in live  # only the zone's chips wait: the rest of the region is applied
    with session_scope(store) as s:
        errs = [e.message for e in s.exec(select(CollectorError).where(CollectorError.run_id == summary.run_id))]
        assert not s.exec(select(Site).where(Site.region == TAIPEI_GROUP)).all()  # never created from the catalog
    msg = next(m for m in errs if TAIPEI_GROUP in m)
    assert f"veuctl sites add aws-{TAIPEI_GROUP} --country TW --provider aws --region {TAIPEI_GROUP}" in msg


def test_gpu_in_a_local_zone_the_catalog_lacks_is_counted_nowhere_and_the_region_retires_nothing(
    aws: AwsFake, store: str,
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", TOKYO)
    gone = run(ec2, P5, 1)[0]
    sync(_collector([TOKYO]), store)
    ec2.terminate_instances(InstanceIds=[gone])
    stays, odd = run(ec2, P5, 1)[0], run(ec2, P5, 1)[0]
    aws.faults.placement[odd] = "ap-northeast-1-zzz-1a"

    summary = sync(_collector([TOKYO]), store)

    assert summary.status == "partial"
    live = _live(store)
    assert f"{ACCOUNT_A}:{stays}" in live  # the rest of the region is still upserted
    assert f"{ACCOUNT_A}:{odd}" not in live  # unknown country: not counted at Tokyo
    assert f"{ACCOUNT_A}:{gone}" in live  # partial scope: nothing retired
    with session_scope(store) as s:
        errs = [e.message for e in s.exec(select(CollectorError).where(CollectorError.run_id == summary.run_id))]
    msg = next(m for m in errs if "ap-northeast-1-zzz-1a" in m)
    assert "zones.aws" in msg and "ap-northeast-1-zzz-1" in msg and odd in msg


def test_gpu_in_a_us_local_zone_under_a_us_region_stays_at_the_region_site(aws: AwsFake, store: str) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    boston, wavelength = run(ec2, P5, 1)[0], run(ec2, P5, 1)[0]
    aws.faults.placement.update({boston: "us-east-1-bos-1a", wavelength: "us-east-1-wl1-bos-wlz-1"})

    summary = sync(_collector(["us-east-1"]), store)

    assert summary.status == "ok", summary.as_dict()
    for iid in (boston, wavelength):
        site = _site_of(store, f"{ACCOUNT_A}:{iid}")
        assert (site.region, site.country) == ("us-east-1", "US")


def test_gpu_in_a_us_local_zone_with_its_own_registered_site_is_accounted_at_that_facility(
    aws: AwsFake, store: str,
) -> None:
    # § 748.15 / Supp. 10 ¶10: facility-specific accounting. A site registered for the Boston zone group
    # receives its chips; a zone group without one stays at the region's site.
    from agent.parties import add_site

    with session_scope(store) as s:
        add_site(s, "aws-boston", "US", "aws", "us-east-1-bos-1")
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    boston, wavelength, plain = run(ec2, P5, 1)[0], run(ec2, P5, 1)[0], run(ec2, P5, 1)[0]
    aws.faults.placement.update({boston: "us-east-1-bos-1a", wavelength: "us-east-1-wl1-bos-wlz-1"})

    assert sync(_collector(["us-east-1"]), store).status == "ok"
    assert _site_of(store, f"{ACCOUNT_A}:{boston}").name == "aws-boston"
    assert _site_of(store, f"{ACCOUNT_A}:{wavelength}").region == "us-east-1"
    assert _site_of(store, f"{ACCOUNT_A}:{plain}").region == "us-east-1"


def test_capacity_reservation_in_the_buenos_aires_local_zone_counts_in_argentina(aws: AwsFake, store: str) -> None:
    from agent.parties import add_site

    with session_scope(store) as s:
        add_site(s, "aws-bue", "AR", "aws", "us-east-1-bue-1", "", catalog().place("aws", "us-east-1-bue-1").country)
    aws.faults.reservations["us-east-1"] = [
        {"id": "cr-0bbbbbbbbbbbbbbb1", "type": P5, "available": 1, "total": 1, "zone": "us-east-1-bue-1a"},
        {"id": "cr-0aaaaaaaaaaaaaaa1", "type": P5, "available": 1, "total": 1, "zone": "us-east-1a"},
    ]
    summary = sync(_collector(["us-east-1"]), store)
    assert summary.status == "ok", summary.as_dict()
    assert _site_of(store, f"{ACCOUNT_A}:cr-0bbbbbbbbbbbbbbb1").country == "AR"
    assert _site_of(store, f"{ACCOUNT_A}:cr-0aaaaaaaaaaaaaaa1").country == "US"
