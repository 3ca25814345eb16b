"""Collectors QA (session 21b): accelerator types a collector cannot place are never silently counted as none."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from agent.collectors.aws import _from_type_info
from agent.inventory import sync
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.errors import PolicyError
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.gcpfake import gcp_collector as _gcp


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


# --- GCP: an accelerator-optimised machine type the catalog lacks ------------------------------------------


def test_gcp_vm_of_an_uncatalogued_accelerator_machine_type_is_named_and_the_project_retires_nothing(
    gce: ComputeFake, store: str
) -> None:
    """A TPU or GPU machine type (ct*, tpu*, a2+, g2+) carries its chips in the type, with no guestAccelerators.
    One the catalog lacks used to be taken as "no accelerator": the project listed as complete, its chips counted
    nowhere, and every other VM that left the listing retired on that guess."""
    gce.instances["ml"] = [instance("ml", "old", "us-central1-a", "a3-highgpu-8g", iid=1)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    gce.instances["ml"] = [
        instance("ml", "tpu-a", "us-east5-a", "ct9p-hightpu-4t", iid=2),
        instance("ml", "tpu-b", "us-east5-a", "ct9p-hightpu-4t", iid=3),
        instance("ml", "gpu-x", "us-central1-a", "a9-futuregpu-8g", iid=4),
        # General-purpose and shared-core types hold no accelerator: never an error.
        instance("ml", "web", "us-central1-a", "e2-standard-4", iid=5),
        instance("ml", "tiny", "us-central1-a", "g1-small", iid=6),
        instance("ml", "micro", "us-central1-a", "f1-micro", iid=7),
        instance("ml", "cpu", "us-central1-a", "c3-standard-8", iid=8),
        instance("ml", "custom", "us-central1-a", "custom-8-30720", iid=9),
    ]
    summary = sync(_gcp(gce, "ml"), store)
    scope = summary.as_dict()["scopes"][0]
    assert summary.status != "ok" and scope["complete"] is False, summary.as_dict()
    err = scope["error"]
    assert "ct9p-hightpu-4t" in err and "tpu-a" in err and "tpu-b" in err, err
    assert "a9-futuregpu-8g" in err and "gpu-x" in err, err
    assert "VEU_CATALOG_FILES" in err and "instance_types.gcp" in err, err  # what to do
    for ok in ("e2-standard-4", "g1-small", "f1-micro", "c3-standard-8", "custom-8-30720"):
        assert ok not in err, err
    assert set(_live(store)) == {"ml/1"}  # partial: the VM no longer listed is kept, not retired


def test_gcp_mixed_guest_accelerators_name_the_instance_once(gce: ComputeFake, store: str) -> None:
    gce.instances["ml"] = [instance("ml", "mixed", "us-central1-a", "n1-standard-8",
                                    accelerators=[("nvidia-tesla-t4", 1), ("nvidia-tesla-v100", 1)], iid=1)]
    summary = sync(_gcp(gce, "ml"), store)
    err = summary.as_dict()["scopes"][0]["error"]
    assert err.count("instance mixed") == 1, err


# --- AWS: DescribeInstanceTypes with more than one accelerator entry ----------------------------------------


def _gpu(name: str, count: int, mib: int, maker: str = "NVIDIA") -> dict[str, Any]:
    return {"Manufacturer": maker, "Name": name, "Count": count, "MemoryInfo": {"SizeInMiB": mib}}


def test_aws_type_listing_one_gpu_in_several_entries_counts_them_all() -> None:
    info = {"GpuInfo": {"Gpus": [_gpu("T4", 1, 16384), _gpu("T4", 2, 16384)]}}
    assert _from_type_info(info) == ("t4", 3.0)  # was 1: only the first entry was read


def test_aws_type_with_two_kinds_of_accelerator_is_refused_naming_both_not_counted_as_the_first() -> None:
    for info in (
        {"GpuInfo": {"Gpus": [_gpu("T4", 1, 16384), _gpu("A10G", 4, 24576)]}},
        {"GpuInfo": {"Gpus": [_gpu("T4", 1, 16384)]},
         "NeuronInfo": {"NeuronDevices": [{"Name": "Inferentia2", "Count": 4, "MemoryInfo": {"SizeInMiB": 32768}}]}},
    ):
        with pytest.raises(PolicyError) as e:
            _from_type_info(info)
        msg = str(e.value)
        assert "T4" in msg and ("A10G" in msg or "Inferentia2" in msg), msg


def test_aws_neuron_type_also_listed_as_inference_accelerator_is_counted_once() -> None:
    dev = {"Name": "Inferentia2", "Count": 6, "MemoryInfo": {"SizeInMiB": 32768}}
    info = {"NeuronInfo": {"NeuronDevices": [dev]},
            "InferenceAcceleratorInfo": {"Accelerators": [dict(dev, Manufacturer="AWS")]}}
    _acc, n = _from_type_info(info) or ("", 0.0)
    assert n == 6.0
