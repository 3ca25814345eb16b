"""Accelerator names the providers really report, end to end through the collectors (session 20).

- AWS G7e: DescribeInstanceTypes names its GPU "RTX PRO Server 6000" (98,304 MiB; moto 5.2.5's
  instance_types.json, a snapshot of the real API). It is the RTX PRO 6000 Blackwell Server Edition (96 GB; the
  nodes' GFD label is NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition, aws/sagemaker-hyperpod-cli PR #390).
  Karpenter's instance-gpu-name is the same name in lower kebab case.
- NVML/GFD B300: the device name is "NVIDIA B300 SXM6 AC" (nvidia-smi / cudaDeviceProp.name seen in several public
  repositories), so GFD labels nvidia.com/gpu.product=NVIDIA-B300-SXM6-AC.
- NVML GH200 with HBM3e: "NVIDIA GH200 144G HBM3e" (146,831 MiB; NVIDIA driver README's supported-GPU table).
- The DescribeInstanceTypes fallback with the API's own answers for partial-GPU and Neuron types.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import node_accelerators
from agent.collectors.nvml import NvmlCollector, NvmlConfig
from agent.inventory import sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.errors import PolicyError
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.test_nvml_collector import FakeGpu, FakeNvml

ACCOUNT = "123456789012"


def _aws() -> object:
    acct = {"owner": "Acme Cloud", "operator": "Acme Ops", "regions": ["us-east-2"]}
    return build("aws", {"accounts": [acct], "max_attempts": 2, "retry_mode": "standard"})


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


@pytest.mark.parametrize(("itype", "gpus"), [("g7e.2xlarge", 1), ("g7e.48xlarge", 8)])
def test_g7e_instances_hold_rtx_pro_6000_blackwell(aws: AwsFake, store: str, itype: str, gpus: int) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-2"), itype, 1)
    summary = sync(_aws(), store)  # type: ignore[arg-type]
    assert summary.status == "ok", summary.as_dict()
    h = _live(store)[f"{ACCOUNT}:{ids[0]}"]
    assert (h.accelerator, h.count) == ("rtx-pro-6000-blackwell", gpus)


@pytest.mark.parametrize(
    ("itype", "acc", "count"),
    [("g6f.large", "l4", 0.125), ("g6f.4xlarge", "l4", 0.5), ("gr6f.4xlarge", "l4", 0.5),
     ("trn2.3xlarge", "trainium2", 1)],
)
def test_api_fallback_counts_partial_gpus_and_neuron_devices(
    aws: AwsFake, store: str, itype: str, acc: str, count: float
) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "us-east-2"), itype, 1)
    summary = sync(_aws(), store)  # type: ignore[arg-type]
    assert summary.status == "ok", summary.as_dict()
    h = _live(store)[f"{ACCOUNT}:{ids[0]}"]
    assert (h.accelerator, h.count) == (acc, count)


def test_karpenter_gpu_name_of_g7e_resolves() -> None:
    labels = {"karpenter.k8s.aws/instance-gpu-name": "rtx-pro-server-6000",
              "karpenter.k8s.aws/instance-gpu-count": "4", "karpenter.k8s.aws/instance-gpu-memory": "98304"}
    assert node_accelerators(labels, {"nvidia.com/gpu": "4"}) == ("rtx-pro-6000-blackwell", 4.0)


def test_gfd_b300_product_label_resolves() -> None:
    labels = {"nvidia.com/gpu.product": "NVIDIA-B300-SXM6-AC", "nvidia.com/gpu.count": "8"}
    assert node_accelerators(labels, {"nvidia.com/gpu": "8"}) == ("b300", 8.0)


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def test_nvml_b300_and_gh200_hbm3e_are_counted(dc: str) -> None:
    lib = FakeNvml([
        FakeGpu("NVIDIA B300 SXM6 AC", "GPU-b300", "1", total_bytes=275040 * 1024**2),
        FakeGpu("NVIDIA GH200 144G HBM3e", "GPU-gh200", "2", total_bytes=146831 * 1024**2),
    ])
    collector = NvmlCollector(
        NvmlConfig(site="Dublin DC1", host="gpu-host-1", owner="Acme Cloud", operator="Acme Ops"), nvml=lib
    )
    summary = sync(collector, dc)
    assert summary.status == "ok", summary.as_dict()
    assert {k: h.accelerator for k, h in _live(dc).items()} == {"GPU-b300": "b300", "GPU-gh200": "gh200"}


# --- AWS retry time per call ------------------------------------------------------------------------------------
# botocore's standard and adaptive modes cap each backoff at 20 s (botocore.retries.standard.ExponentialBackoff);
# legacy mode sleeps rand x 2^(n-1) s before retry n with no cap, so max_attempts 20 could sleep ~2^19 s (6 days)
# before the last retry alone, holding the run (and, with max_instances=1, every later run) far past its deadline.


def _legacy_worst_backoff(max_attempts: int) -> float:
    """Sum of the largest sleeps botocore's legacy handler can make for one call (random base taken as 1)."""
    import random
    from unittest import mock

    import boto3
    import botocore.config
    from botocore import retryhandler

    client = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b",
                          config=botocore.config.Config(retries={"mode": "legacy", "max_attempts": max_attempts}))
    handlers = client.meta.events._emitter._handlers.prefix_search("needs-retry.ec2.DescribeInstances")
    handler = next(h for h in handlers if isinstance(h, retryhandler.RetryHandler))
    with mock.patch.object(random, "random", return_value=1.0):
        return sum(handler._action(attempts=a) for a in range(1, max_attempts + 1))


def test_legacy_retry_mode_refuses_attempts_whose_backoff_is_unbounded() -> None:
    from agent.collectors.base import CollectorConfigError

    with pytest.raises(CollectorConfigError) as err:
        build("aws", {"retry_mode": "legacy", "max_attempts": 12})
    msg = str(err.value)
    assert msg.startswith("collectors.aws.max_attempts:"), msg
    assert "legacy" in msg and "standard" in msg and "8" in msg
    for kw in ({"retry_mode": "legacy", "max_attempts": 8}, {"retry_mode": "standard", "max_attempts": 20},
               {"retry_mode": "adaptive", "max_attempts": 20}):
        build("aws", kw)
    # What the accepted legacy maximum really costs: at most 255 s of backoff for one call.
    assert _legacy_worst_backoff(8) <= 255.0
    assert _legacy_worst_backoff(12) > 3600.0


def test_an_inference_only_type_is_read_from_inference_accelerator_info() -> None:
    """dl2q and inf1 report their chips only in InferenceAcceleratorInfo: without it a new such type was counted
    as holding no accelerator at all (not even left partial)."""
    from agent.collectors.aws import _from_type_info

    info = {"InstanceType": "dl2q.24xlarge", "InferenceAcceleratorInfo": {"Accelerators": [
        {"Count": 8, "Manufacturer": "Qualcomm", "MemoryInfo": {"SizeInMiB": 16000}, "Name": "Qualcomm AI100"}]}}
    assert _from_type_info(info) == ("qualcomm-ai100-standard", 8.0)
    unknown = {"InferenceAcceleratorInfo": {"Accelerators": [
        {"Count": 2, "Manufacturer": "Acme", "MemoryInfo": {"SizeInMiB": 1}, "Name": "Widget 9"}]}}
    with pytest.raises(PolicyError, match="unknown to the catalog"):
        _from_type_info(unknown)
