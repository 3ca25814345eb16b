"""CPU-only VMs next to GPU ones (session 24D): a CPU fleet is no noise, an unknown GPU type is still reported.

- AWS: a type the catalog lacks is looked up with DescribeInstanceTypes; no GpuInfo/NeuronInfo/
  InferenceAcceleratorInfo means no accelerators. But the API has omitted NeuronInfo for real accelerator types
  (trn2.48xlarge in SkyPilot's snapshot, trn2u.48xlarge in moto's): a type of an accelerator family (p, g, trn,
  inf, dl) that the API describes without accelerators is not taken for CPU-only on that guess.
- A type the catalog states has no accelerators (``count: 0``) needs no DescribeInstanceTypes at all, so a policy
  without that action no longer fails every region with CPU VMs in it.
- A device the provider lists with no chip count is not "0 chips": the holding stays as last seen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent import kb
from agent.collectors.aws import _from_type_info
from agent.collectors.gcp import instance_accelerators_gcp
from agent.inventory import sync
from policies.catalog import Catalog
from policies.errors import PolicyError
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.test_aws_collector import ACCOUNT_A, _collector, _live
from tests.inventory.test_aws_estate_session23p import Denying, denying  # noqa: F401 (fixture)

CPU_TYPES = ("m7i.large", "c7i.large", "t3.micro", "m8g.large")


def _catalog_without(provider: str, *types: str) -> Catalog:
    """The built-in catalog with ``types`` removed, as for a type released after this catalog was written."""
    docs: list[tuple[str, Any]] = []
    for name in kb.BUILTIN_FILES:
        data = kb._read(kb.DATA_DIR / name)
        if isinstance(data, dict) and "instance_types" in data:
            for t in types:
                data["instance_types"][provider].pop(t)
        docs.append((name, data))
    return Catalog.from_data(*docs)


def _scope(summary: Any, scope: str) -> Any:
    return {x.scope: x for x in summary.scopes}[scope]


# --- AWS -------------------------------------------------------------------------------------------------------


def test_a_fleet_of_cpu_vms_beside_gpu_vms_is_neither_counted_nor_reported(aws: AwsFake, store: str) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    p5 = run(ec2, "p5.48xlarge", 1)
    cpu = [i for t in CPU_TYPES for i in run(ec2, t, 2)]
    summary = sync(_collector(["us-east-1"]), store)
    scope = _scope(summary, f"{ACCOUNT_A}/us-east-1")
    assert summary.status == "ok" and scope.error is None, scope.error
    live = _live(store)
    assert {f"{ACCOUNT_A}:{i}" for i in p5} <= set(live)
    assert not {f"{ACCOUNT_A}:{i}" for i in cpu} & set(live)


def test_an_accelerator_family_type_aws_describes_without_accelerators_is_not_taken_for_cpu_only(
    aws: AwsFake, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's DescribeInstanceTypes snapshot has no NeuronInfo for trn2u.48xlarge (16 Trainium2). Were it not
    catalogued, its chips were counted as none and the "complete" region retired the holding."""
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    trn = run(ec2, "trn2u.48xlarge", 1)
    run(ec2, "m7i.large", 1)
    assert sync(_collector(["us-east-1"]), store).status == "ok"  # catalogued: 16 Trainium2 held
    assert _live(store)[f"{ACCOUNT_A}:{trn[0]}"].count == 16

    stripped = _catalog_without("aws", "trn2u.48xlarge")
    monkeypatch.setattr(kb, "catalog", lambda: stripped)
    summary = sync(_collector(["us-east-1"]), store)

    scope = _scope(summary, f"{ACCOUNT_A}/us-east-1")
    assert summary.status == "partial" and not scope.complete
    err = scope.error or ""
    assert "trn2u.48xlarge" in err and trn[0] in err, err
    assert "instance_types.aws" in err and "VEU_CATALOG_FILES" in err, err  # what to add
    assert "m7i.large" not in err, err  # the CPU VM beside it is still no noise
    assert f"{ACCOUNT_A}:{trn[0]}" in _live(store)  # not retired on a guess


def test_cpu_types_catalogued_with_no_accelerators_need_no_describe_instance_types(
    aws: AwsFake, denying: Denying, store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    f = tmp_path / "cpu.yaml"
    f.write_text("instance_types:\n  aws:\n"
                 + "".join(f"    {t}: {{count: 0, source: \"AWS DescribeInstanceTypes: no GpuInfo\"}}\n"
                           for t in CPU_TYPES))
    monkeypatch.setenv("VEU_CATALOG_FILES", str(f))
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    p5 = run(ec2, "p5.48xlarge", 1)
    cpu = [i for t in CPU_TYPES for i in run(ec2, t, 1)]
    denying.deny[("us-east-1", "DescribeInstanceTypes")] = (
        403, "UnauthorizedOperation", "You are not authorized to perform this operation.")

    summary = sync(_collector(["us-east-1"]), store)

    scope = _scope(summary, f"{ACCOUNT_A}/us-east-1")
    assert scope.error is None and summary.status == "ok", scope.error
    live = _live(store)
    assert f"{ACCOUNT_A}:{p5[0]}" in live and not {f"{ACCOUNT_A}:{i}" for i in cpu} & set(live)


def test_a_gpu_aws_lists_without_a_count_is_not_zero_chips() -> None:
    """GpuInfo with a GPU but Count 0 or absent (AWS once reported a wrong count for p5.4xlarge) would rewrite the
    holding to 0 chips in a complete listing: the type is refused instead, so its instances stay as last seen."""
    for gpu in ({"Name": "H100", "Manufacturer": "NVIDIA", "Count": 0, "MemoryInfo": {"SizeInMiB": 81920}},
                {"Name": "H100", "Manufacturer": "NVIDIA", "MemoryInfo": {"SizeInMiB": 81920}}):
        with pytest.raises(PolicyError) as err:
            _from_type_info({"InstanceType": "p9.4xlarge", "GpuInfo": {"Gpus": [gpu]}})
        assert "count" in str(err.value).lower() and "instance_types.aws" in str(err.value), str(err.value)
    assert _from_type_info({"InstanceType": "m7i.large", "VCpuInfo": {"DefaultVCpus": 2}}) is None


# --- GCP -------------------------------------------------------------------------------------------------------


def _gcp(fake: ComputeFake, project: str) -> Any:
    from agent.collectors.base import build

    return build("gcp", {"api_endpoint": fake.url, "anonymous": True,
                         "projects": [{"id": project, "owner": "Acme Cloud", "operator": "Acme Ops"}]})


def test_gcp_cpu_machine_types_without_guest_accelerators_are_skipped_quietly(gce: ComputeFake, store: str) -> None:
    cpu = ["n2-standard-8", "e2-medium", "c3-standard-4", "n2-custom-8-32768", "custom-4-8192", "t2a-standard-4",
           "m3-ultramem-32", "c4a-standard-8", "g1-small", "f1-micro"]
    gce.instances["web"] = [instance("web", f"vm{i}", "us-central1-a", t, iid=i) for i, t in enumerate(cpu)]
    gce.instances["web"].append(instance("web", "a3", "us-central1-a", "a3-highgpu-8g", iid=99))
    summary = sync(_gcp(gce, "web"), store)
    assert summary.status == "ok" and summary.scopes[0].error is None, summary.scopes[0].error
    assert set(_live(store)) == {"web/99"}


def test_a_gcp_accelerator_family_type_catalogued_with_no_accelerators_is_still_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accelerator-family name the catalog lacks is reported as unknown; so is one an operator file states has no
    accelerators (session 24M, review R3: a count: 0 row for a GPU/TPU family type is likelier a typo, and believed
    it dropped the VMs' chips from every count)."""
    f = tmp_path / "cpu.yaml"
    f.write_text('instance_types: {gcp: {a9-cpuonly-8: {count: 0, source: "operator: host with no GPUs"}}}\n')
    inst = instance("p", "x", "us-central1-a", "a9-cpuonly-8", iid=1)
    with pytest.raises(PolicyError):
        instance_accelerators_gcp(inst)
    monkeypatch.setenv("VEU_CATALOG_FILES", str(f))
    with pytest.raises(PolicyError) as err:
        instance_accelerators_gcp(inst)
    assert "count: 0" in str(err.value), str(err.value)


def test_a_gcp_guest_accelerator_without_a_count_keeps_the_holding_as_last_seen(
    gce: ComputeFake, store: str
) -> None:
    gce.instances["ml"] = [instance("ml", "t4", "us-central1-a", "n1-standard-8",
                                    accelerators=[("nvidia-tesla-t4", 2)], iid=1)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    del gce.instances["ml"][0]["guestAccelerators"][0]["acceleratorCount"]
    summary = sync(_gcp(gce, "ml"), store)
    err = summary.scopes[0].error or ""
    assert not summary.scopes[0].complete and "t4" in err and "count" in err.lower(), err
    assert _live(store)["ml/1"].count == 2


def test_a_gpu_vm_in_a_status_the_collector_does_not_know_is_not_retired_as_stopped(
    gce: ComputeFake, store: str
) -> None:
    """Every status outside the held list was taken for "stopped": a status GCE adds later (or one missing from a
    damaged answer) retired the VM's chips from a listing that looked complete. Only the statuses known to release
    them (TERMINATED, STOPPED, SUSPENDED, PENDING) do; another leaves the holding as last seen, the project partial."""
    gce.instances["ml"] = [instance("ml", "a3", "us-central1-a", "a3-highgpu-8g", iid=1),
                           instance("ml", "web", "us-central1-a", "n2-standard-8", iid=2)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    for inst in gce.instances["ml"]:
        inst["status"] = "HIBERNATING"
    summary = sync(_gcp(gce, "ml"), store)
    err = summary.scopes[0].error or ""
    assert not summary.scopes[0].complete and "HIBERNATING" in err and "a3" in err, err
    assert "web" not in err, err  # a CPU VM in that status is no noise
    assert _live(store)["ml/1"].count == 8
    gce.instances["ml"][0]["status"] = "TERMINATED"
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    assert "ml/1" not in _live(store)  # a known stopped status still retires
