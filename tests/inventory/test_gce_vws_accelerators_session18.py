"""GCE/GKE NVIDIA RTX Virtual Workstation accelerator types (`-vws`) are the same chips with a vWS licence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.collectors.k8s_nodes import node_accelerators
from agent.inventory import sync
from agent.kb import catalog
from agent.store import session_scope
from agent.store.tables.core import Holding
from tests.inventory.gcpfake import ComputeFake, instance

# Compute Engine's GPU machine types page lists each vWS type beside its plain one; P4 and P100 vWS types
# exist too but those chips are not in the catalog, so they stay unknown (refused, never guessed).
VWS = [
    ("nvidia-l4-vws", "nvidia-l4"),
    ("nvidia-tesla-t4-vws", "nvidia-tesla-t4"),
    ("nvidia-rtx-pro-6000-vws", "nvidia-rtx-pro-6000"),
]


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    fake = ComputeFake().start()
    yield fake
    fake.stop()


def _acc(alias: str) -> str:
    return catalog().resolve(alias).accelerator.id


@pytest.mark.parametrize(("vws", "plain"), VWS)
def test_a_virtual_workstation_accelerator_type_is_the_same_chip_as_the_plain_one(vws: str, plain: str) -> None:
    assert _acc(vws) == _acc(plain)


def test_a_gce_instance_with_nvidia_l4_vws_is_counted_as_l4s(gce: ComputeFake, store: str) -> None:
    gce.instances["viz"] = [
        instance("viz", "ws-1", "us-central1-a", "g2-standard-8", accelerators=[("nvidia-l4-vws", 1)], iid=1),
    ]
    summary = sync(
        build("gcp", {"api_endpoint": gce.url, "anonymous": True,
                      "projects": [{"id": "viz", "owner": "Acme Cloud", "operator": "Acme Ops"}]}),
        store,
    )
    assert summary.status == "ok", summary.as_dict()
    with session_scope(store) as s:
        (h,) = s.exec(select(Holding).where(Holding.retired_at == None)).all()  # noqa: E711
    assert (h.accelerator, h.count) == (_acc("nvidia-l4"), 1.0)


def test_a_gke_node_labelled_nvidia_l4_vws_holds_l4s() -> None:
    labels = {"cloud.google.com/gke-accelerator": "nvidia-l4-vws", "cloud.google.com/gke-accelerator-count": "4"}
    assert node_accelerators(labels, {"nvidia.com/gpu": "4"}) == (_acc("nvidia-l4"), 4.0)
