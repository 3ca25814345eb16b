"""Collector defects found in QA session 12: what one odd item must not do to the rest of a listing.

- AWS: one instance whose GPU the catalog lacks (g5g: T4g) made its whole region fail, hiding every other
  instance of the region, with an error that never named the instance type.
- AWS: a misspelt ``states`` entry matched no instance, so the region listed "completely" and retired
  every chip in it.
- NVML: a GPU that has fallen off the bus ended the enumeration, so the GPUs after it were never seen.
- GCP: one VM in a region the catalog lacks made the whole project's listing fail to apply.
- Register (JSON): a misspelt key (``serail``) was dropped without a word, importing serialised chips as
  anonymous lines.
- Register (CSV): a spreadsheet's trailing empty column or row of empty cells refused the whole file with a
  message naming nothing; a semicolon-separated file was reported as five missing columns.
- ``inventory sync``: a holding that came back after a retirement showed in no column of the summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest
from sqlmodel import select

from agent.collectors.base import CollectorConfigError, build
from agent.collectors.nvml import NvmlCollector, NvmlConfig
from agent.inventory import import_register, sync
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import CollectorError
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.test_nvml_collector import FakeGpu, FakeNvml

ACCOUNT = "123456789012"  # moto's default account
P5 = "p5.48xlarge"
G5G = "g5g.xlarge"  # an NVIDIA T4g; the catalog lists it since session 20, so `no_t4g` takes it out again


@pytest.fixture()
def no_t4g(monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog that does not know the T4g (as it did not until session 20): neither the g5g instance types
    nor the name DescribeInstanceTypes gives the chip."""
    import agent.collectors.aws as aws_collector

    known, real = aws_collector.instance_accelerators, aws_collector.resolve_alias

    def instance_accelerators(provider: str, instance_type: str) -> Any:
        return None if instance_type.startswith("g5g.") else known(provider, instance_type)

    def resolve_alias(name: str, *args: Any, **kw: Any) -> Any:
        return real(name.replace("T4g", "T4g-not-in-this-catalog"), *args, **kw)

    monkeypatch.setattr(aws_collector, "instance_accelerators", instance_accelerators)
    monkeypatch.setattr(aws_collector, "resolve_alias", resolve_alias)


def _aws(**kw: object) -> Any:
    acct = {"owner": "Acme Cloud", "operator": "Acme Ops", "regions": ["us-east-1"]}
    return build("aws", {"accounts": [acct], "max_attempts": 2, "retry_mode": "standard"} | kw)


def _holdings(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding))}


def _errors(url: str, run_id: int) -> list[str]:
    with session_scope(url) as s:
        return [e.message for e in s.exec(select(CollectorError).where(CollectorError.run_id == run_id))]


# --- AWS ---------------------------------------------------------------------------------------------------


def test_an_instance_type_with_an_uncatalogued_gpu_leaves_only_its_instances_uncounted_and_names_the_type(
    aws: AwsFake, store: str, no_t4g: None
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    before = run(ec2, P5, 1)[0]
    assert sync(_aws(), store).status == "ok"

    odd = run(ec2, G5G, 1)[0]
    new = run(ec2, P5, 1)[0]  # listed on the same page as the odd one
    ec2.terminate_instances(InstanceIds=[before])
    summary = sync(_aws(), store)

    assert summary.status == "partial"  # the only scope is partial
    rows = _holdings(store)
    assert rows[f"{ACCOUNT}:{new}"].retired_at is None  # the rest of the region is counted
    assert rows[f"{ACCOUNT}:{before}"].retired_at is None  # a partial region retires nothing
    assert f"{ACCOUNT}:{odd}" not in rows
    [err] = _errors(store, summary.run_id)
    assert G5G in err and odd in err and "T4g" in err
    assert "not counted anywhere" in err and "accelerators.yaml" in err  # how to add it


def test_a_capacity_reservation_of_an_uncatalogued_gpu_type_is_named_and_the_rest_still_counts(
    aws: AwsFake, store: str, no_t4g: None
) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-1"), P5, 1)
    aws.faults.reservations["us-east-1"] = [{"id": "cr-0aaaaaaaaaaaaaaa0", "type": G5G, "available": 2, "total": 2}]
    summary = sync(_aws(), store)
    assert summary.status == "partial"
    assert f"{ACCOUNT}:{ids[0]}" in _holdings(store)
    [err] = _errors(store, summary.run_id)
    assert G5G in err and "cr-0aaaaaaaaaaaaaaa0" in err


def test_a_misspelt_instance_state_is_a_config_error_not_a_listing_that_retires_every_chip() -> None:
    with pytest.raises(CollectorConfigError, match=r"collectors\.aws\.states.*'Running'.*running"):
        build("aws", {"states": ["Running"]})
    assert build("aws", {"states": ["running", "stopped"]}).config.states == ["running", "stopped"]


# --- NVML --------------------------------------------------------------------------------------------------


class _BusLoss(FakeNvml):
    """A host where the GPU at ``lost`` has fallen off the bus: the driver counts it, NVML cannot reach it."""

    lost: int = 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if index == self.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return super().nvmlDeviceGetHandleByIndex(index)


def test_a_gpu_fallen_off_the_bus_is_named_and_the_gpus_after_it_are_still_counted(store: str) -> None:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    h100 = "NVIDIA H100 80GB HBM3"
    gpus = [FakeGpu(h100, f"GPU-{c * 4}", str(n)) for n, c in enumerate("abc")]
    collector = NvmlCollector(NvmlConfig(site="Dublin DC1", host="gpu-host-1", owner="Acme Cloud"), nvml=FakeNvml(gpus))
    assert sync(collector, store).status == "ok"

    gpus.append(FakeGpu(h100, "GPU-dddd", "3"))  # a GPU added after the lost one
    lib = _BusLoss(gpus)
    summary = sync(NvmlCollector(collector.config, nvml=lib), store)

    assert summary.status == "partial"
    rows = _holdings(store)
    assert rows["GPU-dddd"].retired_at is None  # seen although the GPU before it was lost
    assert rows["GPU-bbbb"].retired_at is None  # the lost GPU is still in the host: nothing retires
    assert all(h.retired_at is None for h in rows.values())
    err = summary.scopes[0].error or ""
    assert "GPU 1" in err and "lost" in err.lower()
    assert lib.calls[-1] == "shutdown"


def test_every_gpu_the_catalog_lacks_is_named_not_only_the_last(store: str) -> None:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    lib = FakeNvml([FakeGpu("NVIDIA Foo 1", "GPU-f1", "1"), FakeGpu("NVIDIA Foo 2", "GPU-f2", "2"),
                    FakeGpu("NVIDIA H100 80GB HBM3", "GPU-ok", "3")])
    summary = sync(NvmlCollector(NvmlConfig(site="Dublin DC1", host="h"), nvml=lib), store)
    err = summary.scopes[0].error or ""
    assert "GPU-f1" in err and "GPU-f2" in err
    assert set(_holdings(store)) == {"GPU-ok"}


# --- register ----------------------------------------------------------------------------------------------


def test_a_json_register_key_that_is_no_register_field_is_named_and_nothing_is_imported(
    store: str, tmp_path: Path
) -> None:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    f = tmp_path / "assets.json"
    f.write_text(
        '[{"site": "Dublin DC1", "accelerator": "h100", "count": 1, "owner": "Acme Cloud",'
        ' "operator": "Acme Ops", "serail": "SN-1"}]'
    )
    with pytest.raises(Exception, match=r"row 2, field serail: .*serial"):
        import_register(f, store)
    assert _holdings(store) == {}


def test_json_register_keys_are_read_like_a_csv_header_whatever_their_case(store: str, tmp_path: Path) -> None:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    f = tmp_path / "assets.json"
    f.write_text(
        '[{"Site": "Dublin DC1", "Accelerator": "h100", "Count": 1, "Owner": "Acme Cloud",'
        ' "Operator": "Acme Ops", "Serial": "SN-1"}]'
    )
    import_register(f, store)
    h = _holdings(store)["serial:SN-1"]
    assert (h.accelerator, h.serial) == (catalog().resolve("h100").accelerator.id, "SN-1")


# --- GCP ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    fake = ComputeFake().start()
    yield fake
    fake.stop()


def _gcp(fake: ComputeFake) -> Any:
    return build("gcp", {"api_endpoint": fake.url, "anonymous": True,
                         "projects": [{"id": "ml-prod", "owner": "Acme Cloud", "operator": "Acme Ops"}]})


def test_a_vm_in_a_region_the_catalog_lacks_leaves_only_that_vm_uncounted_and_names_the_region(
    gce: ComputeFake, store: str
) -> None:
    gce.instances["ml-prod"] = [instance("ml-prod", "old", "us-central1-a", "a3-highgpu-8g", iid=1)]
    assert sync(_gcp(gce), store).status == "ok"

    gce.instances["ml-prod"] = [
        instance("ml-prod", "new", "us-central1-b", "a3-highgpu-8g", iid=2),
        instance("ml-prod", "far", "xx-newregion9-a", "a3-highgpu-8g", iid=3),
    ]
    summary = sync(_gcp(gce), store)

    assert summary.status == "partial"  # the project is partial
    rows = _holdings(store)
    assert rows["ml-prod/2"].retired_at is None  # the rest of the project is applied
    assert rows["ml-prod/1"].retired_at is None  # and nothing retires
    assert "ml-prod/3" not in rows
    [err] = _errors(store, summary.run_id)
    assert "xx-newregion9" in err and "far" in err and "regions" in err


def _dublin(url: str) -> None:
    with session_scope(url) as s:
        add_site(s, "Dublin DC1", "IE")


def test_a_register_saved_with_an_empty_trailing_column_imports_and_a_value_under_it_is_refused(
    store: str, tmp_path: Path
) -> None:
    # Spreadsheets export a stray empty column as a trailing comma on every line, header included.
    _dublin(store)
    f = tmp_path / "register.csv"
    f.write_text("site,accelerator,count,owner,operator,serial,\n"
                 "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1,\n")
    assert import_register(f, store).status == "ok"
    assert set(_holdings(store)) == {"serial:SN-1"}
    f.write_text("site,accelerator,count,owner,operator,serial,\n"
                 "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1,\n"
                 "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-2,oops\n")
    with pytest.raises(Exception, match=r"row 3: .*'oops'"):
        import_register(f, store)
    assert set(_holdings(store)) == {"serial:SN-1"}


def test_a_spreadsheet_row_of_empty_cells_is_a_blank_line_and_keeps_its_number(store: str, tmp_path: Path) -> None:
    _dublin(store)
    f = tmp_path / "register.csv"
    f.write_text("site,accelerator,count,owner,operator,serial\n"
                 "Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-1\n"
                 ",,,,,\n"
                 "Dublin DC1,h100,1,Acme Cloud,Acme Op,SN-2\n")
    with pytest.raises(Exception, match=r"^1 bad row\(s\), nothing imported: row 4, field operator: party 'Acme Op'"):
        import_register(f, store)
    f.write_text(f.read_text().replace("Acme Op,", "Acme Ops,"))
    assert import_register(f, store).status == "ok"
    assert set(_holdings(store)) == {"serial:SN-1", "serial:SN-2"}


def test_a_register_separated_by_semicolons_is_refused_with_what_to_do(store: str, tmp_path: Path) -> None:
    f = tmp_path / "register.csv"
    f.write_text("site;accelerator;count;owner;operator\nDublin DC1;h100;1;Acme Cloud;Acme Ops\n")
    with pytest.raises(Exception, match=r"separated by ';'.*comma"):
        import_register(f, store)


# --- the sync summary --------------------------------------------------------------------------------------


def test_a_sync_that_brings_back_a_retired_gpu_says_so_in_its_summary(store: str) -> None:
    _dublin(store)
    gpus = [FakeGpu("NVIDIA H100 80GB HBM3", "GPU-aaaa", "1"), FakeGpu("NVIDIA H100 80GB HBM3", "GPU-bbbb", "2")]
    cfg = NvmlConfig(site="Dublin DC1", host="gpu-host-1")
    sync(NvmlCollector(cfg, nvml=FakeNvml(gpus[:1])), store)  # GPU-bbbb was out for repair ...
    sync(NvmlCollector(cfg, nvml=FakeNvml(gpus)), store)
    sync(NvmlCollector(cfg, nvml=FakeNvml(gpus[:1])), store)  # ... pulled again ...
    back = sync(NvmlCollector(cfg, nvml=FakeNvml(gpus)), store).as_dict()  # ... and back
    assert (back["added"], back["reactivated"], back["updated"], back["retired"]) == (0, 1, 0, 0)
    # The run's record (veuctl inventory runs) counts it the same way, not as added.
    from sqlmodel import col, select

    from agent.store.tables.inventory import CollectorRun

    with session_scope(store) as s:
        last = s.exec(select(CollectorRun).order_by(col(CollectorRun.id).desc())).first()
        assert last is not None and (last.added, last.reactivated) == (0, 1)
