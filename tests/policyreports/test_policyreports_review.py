"""Whether a held job still exists is read a page at a time: a big namespace is never held in memory whole.

Without ``limit`` the API server answers a list in one piece, so every sync (each minute) read every Pod of a
namespace with a held pod into the agent (as client models), and every object of a held job's kind. The pager
below answers as the API server does: ``limit``/``continue`` pages, and the whole list when no ``limit`` is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi

from controllers.policyreports import PolicyReportWriter
from tests.policyreports.test_policyreports_deleted_jobs import WG, Discovery, held

MOST_PER_PAGE = 500  # what the client keeps of a namespace at once (as the inventory's node lists page)
EXISTING = 1150  # objects in the namespace
LATE = f"obj-{EXISTING - 1:05d}"  # an existing object on the last page


@pytest.fixture()
def api(kmock: kmock.KubernetesEmulator) -> Iterator[CustomObjectsApi]:
    kmock.resources[WG] = kmock.ResourceInfo(kind="PolicyReport", namespaced=True)
    kmock.resources["kubeflow.org/v1/pytorchjobs"] = kmock.ResourceInfo(kind="PyTorchJob", namespaced=True)
    kmock.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
    kmock["get /apis/"] << Discovery().answer
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CustomObjectsApi(client)


class Pager:
    """A list answered as the API server answers it: pages of ``limit`` with a ``continue`` token, else whole."""

    def __init__(self, kind: str, expire_continue: bool = False) -> None:
        self.kind = kind
        self.expire_continue = expire_continue
        self.limits: list[str | None] = []  # each request's limit (None: the whole list was asked for)

    def __call__(self, request: Any) -> Any:
        limit, token = request.params.get("limit"), request.params.get("continue")
        self.limits.append(limit)
        if token and self.expire_continue:
            return kmock.KubernetesError(status=410, reason="Expired")
        start = int(token or 0)
        end = min(start + int(limit), EXISTING) if limit else EXISTING
        meta: dict[str, str] = {"resourceVersion": "7"}
        if end < EXISTING:
            meta["continue"] = str(end)
        return {"apiVersion": "v1", "kind": f"{self.kind}List", "metadata": meta, "items": [
            {"apiVersion": "v1", "kind": self.kind, "metadata": {"name": f"obj-{i:05d}", "namespace": "tenant-a"}}
            for i in range(start, end)]}


KINDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "Pod": ("v1/pods", lambda name: held(kind="Pod", name=name)),
    "PyTorchJob": ("kubeflow.org/v1/pytorchjobs", lambda name: held(name=name)),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(KINDS))
async def test_a_big_namespace_is_listed_a_page_at_a_time_and_a_job_on_a_later_page_is_kept(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi, kind: str,
) -> None:
    resource, job = KINDS[kind]
    pager = Pager(kind)
    kmock[kmock.action.LIST, kmock.resource(resource)] << pager

    result = (await asyncio.to_thread(PolicyReportWriter(api).sync, [job(LATE), job("obj-gone")])).as_dict()

    assert result["gone"] == [f"tenant-a/{kind}/obj-gone"] and result["skipped"] == {}
    assert len(pager.limits) >= EXISTING // MOST_PER_PAGE + 1
    assert all(x is not None and 0 < int(x) <= MOST_PER_PAGE for x in pager.limits), pager.limits


@pytest.mark.asyncio
async def test_a_list_whose_continue_token_expired_keeps_the_jobs_and_says_why(
    kmock: kmock.KubernetesEmulator, api: CustomObjectsApi,
) -> None:
    kmock[kmock.action.LIST, kmock.resource("v1/pods")] << Pager("Pod", expire_continue=True)

    result = (await asyncio.to_thread(PolicyReportWriter(api).sync, [held(kind="Pod", name="obj-gone")])).as_dict()

    assert result["gone"] == []  # page 1 did not show it, but the rest of the list never arrived
    assert "HTTP 410" in result["skipped"]["core/pods:tenant-a"]
