"""The GCP collector against a local server speaking the Compute Engine REST API (aggregatedList, paging)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.collectors.base import build
from agent.inventory import sync
from agent.kb import catalog
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from tests.inventory.gcpfake import ComputeFake, instance


@pytest.fixture()
def gce() -> Iterator[ComputeFake]:
    fake = ComputeFake().start()
    yield fake
    fake.stop()


def _collector(fake: ComputeFake, *projects: str, page_size: int = 500):  # type: ignore[no-untyped-def]
    return build(
        "gcp",
        {
            "api_endpoint": fake.url,
            "anonymous": True,
            "page_size": page_size,
            "projects": [{"id": p, "owner": "Acme Cloud", "operator": "Acme Ops"} for p in projects],
        },
    )


def _acc(alias: str) -> str:
    return catalog().resolve(alias).accelerator.id


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


def test_guest_accelerators_machine_types_and_tpu_vms_are_counted_by_chip(gce: ComputeFake, store: str) -> None:
    gce.instances["ml-prod"] = [
        instance("ml-prod", "t4-box", "us-central1-a", "n1-standard-8", accelerators=[("nvidia-tesla-t4", 2)], iid=1),
        instance("ml-prod", "a3", "europe-west4-b", "a3-highgpu-8g", iid=2),  # GPUs carried in the machine type
        instance("ml-prod", "tpu-node", "us-east5-a", "ct5lp-hightpu-4t", iid=3),  # GKE TPU v5e node VM
        instance("ml-prod", "web", "us-central1-a", "e2-standard-4", iid=4),  # no accelerator
        instance("ml-prod", "stopped", "us-central1-a", "a3-highgpu-8g", status="TERMINATED", iid=5),
    ]
    summary = sync(_collector(gce, "ml-prod"), store)
    assert summary.status == "ok", summary.as_dict()
    live = _live(store)
    assert set(live) == {"ml-prod/1", "ml-prod/2", "ml-prod/3"}
    assert (live["ml-prod/1"].accelerator, live["ml-prod/1"].count) == (_acc("nvidia-tesla-t4"), 2)
    assert (live["ml-prod/2"].accelerator, live["ml-prod/2"].count) == (_acc("nvidia-h100-80gb"), 8)
    assert (live["ml-prod/3"].accelerator, live["ml-prod/3"].count) == (_acc("tpu-v5-lite-podslice"), 4)
    with session_scope(store) as s:
        countries = {x.region: x.country for x in s.exec(select(Site))}
    assert countries == {"us-central1": "US", "europe-west4": "NL", "us-east5": "US"}


def test_aggregated_list_is_followed_across_pages(gce: ComputeFake, store: str) -> None:
    gce.instances["big"] = [instance("big", f"vm{i}", "us-central1-a", "a3-highgpu-8g", iid=100 + i) for i in range(7)]
    sync(_collector(gce, "big", page_size=3), store)
    assert len(_live(store)) == 7
    assert sum("pageToken" in r for r in gce.requests) == 2


def test_failing_project_keeps_its_holdings_and_unreachable_zones_retire_nothing(gce: ComputeFake, store: str) -> None:
    gce.instances["a"] = [instance("a", "x", "us-central1-a", "a3-highgpu-8g", iid=1)]
    gce.instances["b"] = [instance("b", "y", "europe-west4-b", "a3-highgpu-8g", iid=2)]
    sync(_collector(gce, "a", "b"), store)
    gce.failing.add("a")
    gce.instances["b"] = []
    gce.unreachable["b"] = ["zones/europe-west4-b"]
    summary = sync(_collector(gce, "a", "b"), store)
    assert summary.status == "failed"
    assert set(_live(store)) == {"a/1", "b/2"}
    gce.failing.clear()
    gce.unreachable.clear()
    assert sync(_collector(gce, "a", "b"), store).status == "ok"
    assert set(_live(store)) == {"a/1"}


def test_zone_reported_unreachable_in_its_scope_warning_retires_nothing(gce: ComputeFake, store: str) -> None:
    gce.instances["p"] = [
        instance("p", "x", "us-central1-a", "a3-highgpu-8g", iid=1),
        instance("p", "y", "europe-west4-b", "a3-highgpu-8g", iid=2),
    ]
    sync(_collector(gce, "p"), store)
    # europe-west4-b is down: aggregatedList answers 200 with that zone's scope carrying warning UNREACHABLE.
    gce.instances["p"] = [instance("p", "x", "us-central1-a", "a3-highgpu-8g", iid=1)]
    gce.unreachable_scopes["p"] = ["zones/europe-west4-b"]
    summary = sync(_collector(gce, "p"), store)
    assert summary.status == "partial" and "europe-west4-b" in (summary.scopes[0].error or "")
    assert set(_live(store)) == {"p/1", "p/2"}


def test_every_unreachable_zone_is_named_not_only_the_last(gce: ComputeFake, store: str) -> None:
    gce.instances["p"] = [instance("p", "x", "us-central1-a", "a3-highgpu-8g", iid=1)]
    gce.unreachable_scopes["p"] = ["zones/europe-west4-b", "zones/asia-east1-a"]
    error = sync(_collector(gce, "p"), store).scopes[0].error or ""
    assert "europe-west4-b" in error and "asia-east1-a" in error


def test_vm_in_graceful_shutdown_still_holds_its_gpus_and_stopped_states_do_not(gce: ComputeFake, store: str) -> None:
    gce.instances["p"] = [
        instance("p", f"vm-{st.lower()}", "us-central1-a", "a3-highgpu-8g", status=st, iid=i)
        for i, st in enumerate(["PENDING", "PENDING_STOP", "DEPROVISIONING", "TERMINATED", "STOPPED", "SUSPENDED"])
    ]
    assert sync(_collector(gce, "p"), store).status == "ok"
    # PENDING: a Flex Start VM still waiting for capacity holds no GPU yet.
    assert set(_live(store)) == {"p/1", "p/2"}
