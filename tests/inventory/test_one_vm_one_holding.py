"""One VM, one holding: a Kubernetes node on an EC2 or Compute Engine VM is not counted twice.

The aws/gcp collectors (moto in server mode, a local Compute Engine API) and the k8s nodes collector (kmock)
see the same VMs; the installed base must count each VM's chips once, whichever collector runs first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import node_instance
from agent.inventory import installed_base, sync
from agent.packs import registry
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Holding
from tests.inventory.awsfake import AwsFake, run, seed_client
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.kmockthread import KmockThread, node

H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.count": "8"}


@pytest.fixture()
def k8s() -> Iterator[KmockThread]:
    km = KmockThread().start()
    yield km
    km.stop()


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    fake = ComputeFake().start()
    yield fake
    fake.stop()


@pytest.fixture()
def site(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Virginia Cluster", "US", cluster="eks-1")
    return store


def _k8s(km: KmockThread, **kw: object):  # type: ignore[no-untyped-def]
    cluster = {"name": "eks-1", "api_url": km.url, "owner": "Acme Cloud", "operator": "Acme Ops"} | kw
    return build("k8s", {"clusters": [cluster]})


def _aws():  # type: ignore[no-untyped-def]
    return build("aws", {"accounts": [{"owner": "Acme Cloud", "operator": "Acme Ops", "regions": ["us-east-1"]}]})


def _gcp(fake: ComputeFake):  # type: ignore[no-untyped-def]
    return build("gcp", {"api_endpoint": fake.url, "anonymous": True,
                         "projects": [{"id": "ml-prod", "owner": "Acme Cloud", "operator": "Acme Ops"}]})


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {
            f"{h.source}:{h.external_id}": h
            for h in s.exec(select(Holding).where(Holding.retired_at == None))  # noqa: E711
        }


def _chips(url: str) -> float:
    with session_scope(url) as s:
        return float(installed_base(s, registry())["totals"]["count"])


def test_provider_ids_name_the_vm_the_cloud_collectors_hold() -> None:
    assert node_instance("aws:///us-east-1a/i-0abc1234567890def") == "aws:i-0abc1234567890def"
    assert node_instance("aws:///i-0abc1234567890def") == "aws:i-0abc1234567890def"
    assert node_instance("gce://ml-prod/us-central1-a/gke-pool-1-abcd") == "gcp:ml-prod/us-central1-a/gke-pool-1-abcd"
    # Not a VM a cloud collector lists: Fargate, malformed ids, other providers, bare metal.
    assert node_instance("aws:///us-east-1a/fargate-ip-10-0-0-1.ec2.internal") == ""
    assert node_instance("gce://ml-prod/gke-pool-1-abcd") == ""
    assert node_instance("azure:///subscriptions/x/resourceGroups/y") == ""
    assert node_instance("") == ""


def test_eks_node_counted_first_is_superseded_when_the_aws_collector_lists_its_instance(
    aws: AwsFake, k8s: KmockThread, site: str,
) -> None:
    (iid,) = run(seed_client(aws.moto_url, "ec2", "us-east-1"), "p5.48xlarge", 1)
    v1 = k8s.core()
    v1.create_node(node("eks-gpu", H100, provider_id=f"aws:///us-east-1a/{iid}"))
    v1.create_node(node("rack-7", H100))  # bare metal joined to the cluster: only the node listing sees it

    assert sync(_k8s(k8s), site).status == "ok"
    assert _chips(site) == 16  # no cloud collector has run: the node's chips count here
    aws_run = sync(_aws(), site)
    assert aws_run.status == "ok"
    assert aws_run.scopes[0].superseded == 1
    assert set(_live(site)) == {f"aws:123456789012:{iid}", "k8s:eks-1/rack-7"}
    assert _chips(site) == 16  # 8 on the EC2 instance + 8 in the rack, not 24

    # The node listing now leaves the VM to the aws holding: nothing is revived, nothing added.
    again = sync(_k8s(k8s), site)
    assert again.status == "ok" and again.scopes[0].added == again.scopes[0].reactivated == 0
    assert set(_live(site)) == {f"aws:123456789012:{iid}", "k8s:eks-1/rack-7"}
    with session_scope(site) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "inventory.sync.scope",
                                                AuditEntry.subject == "aws:123456789012/us-east-1")).first()
        assert entry is not None and "k8s:eks-1/eks-gpu" in entry.payload


def test_eks_node_whose_instance_the_aws_collector_already_holds_adds_nothing(
    aws: AwsFake, k8s: KmockThread, site: str,
) -> None:
    (iid,) = run(seed_client(aws.moto_url, "ec2", "us-east-1"), "p5.48xlarge", 1)
    k8s.core().create_node(node("eks-gpu", H100, provider_id=f"aws:///us-east-1a/{iid}"))
    assert sync(_aws(), site).status == "ok"
    assert sync(_k8s(k8s), site).status == "ok"
    assert set(_live(site)) == {f"aws:123456789012:{iid}"}
    assert _chips(site) == 8


def test_node_counts_again_when_its_instance_leaves_the_cloud_listing(
    aws: AwsFake, k8s: KmockThread, site: str,
) -> None:
    ec2 = seed_client(aws.moto_url, "ec2", "us-east-1")
    (iid,) = run(ec2, "p5.48xlarge", 1)
    k8s.core().create_node(node("eks-gpu", H100, provider_id=f"aws:///us-east-1a/{iid}"))
    sync(_aws(), site)
    sync(_k8s(k8s), site)
    ec2.terminate_instances(InstanceIds=[iid])  # the aws holding retires; the node object is still listed
    sync(_aws(), site)
    assert _chips(site) == 0
    sync(_k8s(k8s), site)
    assert set(_live(site)) == {"k8s:eks-1/eks-gpu"}
    assert _chips(site) == 8  # never counted nowhere while the cluster still shows the node


def test_partial_node_listing_still_gives_up_a_vm_the_cloud_collector_holds(
    aws: AwsFake, k8s: KmockThread, site: str,
) -> None:
    (iid,) = run(seed_client(aws.moto_url, "ec2", "us-east-1"), "p5.48xlarge", 1)
    v1 = k8s.core()
    v1.create_node(node("eks-gpu", H100, provider_id=f"aws:///us-east-1a/{iid}"))
    sync(_k8s(k8s), site)
    # Count mode first so the cloud sync does not supersede, then auto with an unreadable node: partial.
    k8s_count = _k8s(k8s, cloud_nodes="count")
    sync(k8s_count, site)
    sync(_aws(), site)
    assert _chips(site) == 16  # count: the operator chose to sum both views
    v1.create_node(node("mystery", {}, {"nvidia.com/gpu": "4"}))  # unnamed GPUs: the listing is partial
    partial = sync(_k8s(k8s), site)
    assert not partial.scopes[0].complete  # the one scope is only partly listed
    assert partial.scopes[0].superseded == 1
    assert set(_live(site)) == {f"aws:123456789012:{iid}"}
    assert _chips(site) == 8


def test_gke_node_and_its_compute_engine_vm_are_one_holding(gce: ComputeFake, k8s: KmockThread, site: str) -> None:
    gce.instances["ml-prod"] = [instance("ml-prod", "gke-pool-1-abcd", "us-central1-a", "a3-highgpu-8g", iid=7)]
    k8s.core().create_node(node("gke-pool-1-abcd", {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                                {"nvidia.com/gpu": "8"}, provider_id="gce://ml-prod/us-central1-a/gke-pool-1-abcd"))
    sync(_k8s(k8s), site)
    assert sync(_gcp(gce), site).scopes[0].superseded == 1
    sync(_k8s(k8s), site)
    assert set(_live(site)) == {"gcp:ml-prod/7"}
    assert _live(site)["gcp:ml-prod/7"].instance == "gcp:ml-prod/us-central1-a/gke-pool-1-abcd"
    assert _chips(site) == 8
