"""The Kueue AdmissionCheck controller against a Kueue serving ``kueue.x-k8s.io/v1beta2`` (session 19).

Kueue 0.15 added v1beta2; from 0.16 it is the storage version and v1beta1 is served ``deprecated: true``
(kubernetes-sigs/kueue config/components/crd/bases/kueue.x-k8s.io_workloads.yaml, ..._admissionchecks.yaml).
The fields the controller reads and writes keep their names and shapes (apis/kueue/v1beta2/workload_types.go,
admissioncheck_types.go): only the path changes. The version is chosen with ``kueue_api_version``
(``veuctl admission controllers --kueue-api-version``); ``auto`` asks the API server's discovery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import kmock
import pytest
from kmock import KubernetesResourceNotFoundError
from kubernetes.client import ApiClient, Configuration, CustomObjectsApi

from controllers import kueue
from controllers.kueue import CONTROLLER_NAME, AdmissionCheckController, KueueNotServed, choose_version

from .conftest import KueueApi, M, Result
from .test_kueue_errors_session18 import no_cluster  # noqa: F401

V2 = "kueue.x-k8s.io/v1beta2"
AC, WL = f"{V2}/admissionchecks", f"{V2}/workloads"
RESERVED = {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved", "message": "Quota reserved"}


@pytest.fixture()
def v1beta2(kmock: kmock.KubernetesEmulator) -> Iterator[CustomObjectsApi]:
    """A Kueue that serves v1beta2 only (as one will once v1beta1 is removed): a v1beta1 request is a 404."""
    kmock.resources[AC] = kmock.ResourceInfo(kind="AdmissionCheck", namespaced=False, subresources={"status"})
    kmock.resources[WL] = kmock.ResourceInfo(kind="Workload", namespaced=True, subresources={"status"})
    kmock.objects[AC, None, "red-flag-28"] = {"apiVersion": V2, "kind": "AdmissionCheck",
                                             "metadata": {"name": "red-flag-28", "generation": 1},
                                             "spec": {"controllerName": CONTROLLER_NAME}}
    # The discovery a Kueue 0.16+ cluster gives (its CRDs serve both, v1beta2 preferred). The kubernetes client
    # asks for "/apis/", which an API server answers as "/apis" and kmock routes to nothing.
    kmock["get /apis/"] << {"apiVersion": "v1", "kind": "APIGroupList", "groups": [
        {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}},
        {"name": "kueue.x-k8s.io", "versions": [{"groupVersion": V2, "version": "v1beta2"},
                                                {"groupVersion": "kueue.x-k8s.io/v1beta1", "version": "v1beta1"}],
         "preferredVersion": {"groupVersion": V2, "version": "v1beta2"}}]}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CustomObjectsApi(client)


def workload(km: kmock.KubernetesEmulator, ns: str, name: str, count: int, hours: str,
             retry_count: int | None = None) -> None:
    ours: dict[str, Any] = {"name": "red-flag-28", "state": "Pending", "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if retry_count is not None:
        ours["retryCount"] = retry_count
    km.objects[WL, ns, name] = {
        "apiVersion": V2, "kind": "Workload",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}",
                     "annotations": {M + "model": f"{name}-model", M + "expected-hours": hours}},
        "spec": {"queueName": "q", "podSets": [{"name": "main", "count": count, "template": {"spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "containers": [{"name": "t", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}}]},
        "status": {"conditions": [RESERVED],
                   "admissionChecks": [ours, {"name": "provisioning", "state": "Pending", "message": "",
                                              "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
    }


def checks(km: kmock.KubernetesEmulator, ns: str, name: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in km.objects[WL, ns, name].raw["status"]["admissionChecks"]}


def seed(km: kmock.KubernetesEmulator) -> None:
    workload(km, "tenant-ae", "small", 2, "24")
    workload(km, "tenant-ae", "big", 512, "8000", retry_count=2)
    workload(km, "tenant-mo", "macau", 1, "1")


def assert_answered(km: kmock.KubernetesEmulator, done: list[dict[str, Any]]) -> None:
    assert {d["workload"]: d["state"] for d in done} == {
        "tenant-ae/small": "Ready", "tenant-ae/big": "Retry", "tenant-mo/macau": "Rejected"}
    big = checks(km, "tenant-ae", "big")
    # 60 s x 2^retryCount, as on v1beta1: the field has the same name and meaning in v1beta2.
    assert big["red-flag-28"]["state"] == "Retry" and big["red-flag-28"]["requeueAfterSeconds"] == 240
    assert big["red-flag-28"]["message"].startswith("HOLD_FOR_INQUIRY")
    assert big["provisioning"]["state"] == "Pending"  # not ours
    assert "requeueAfterSeconds" not in checks(km, "tenant-ae", "small")["red-flag-28"]
    assert checks(km, "tenant-mo", "macau")["red-flag-28"]["state"] == "Rejected"
    conds = km.objects[AC, None, "red-flag-28"].raw["status"]["conditions"]
    assert [(c["type"], c["status"]) for c in conds] == [("Active", "True")]


@pytest.mark.asyncio
async def test_a_v1beta2_kueue_has_its_checks_answered_and_marked_active_on_v1beta2_paths(
    kmock: kmock.KubernetesEmulator, v1beta2: CustomObjectsApi, store: str,
) -> None:
    seed(kmock)
    ctl = AdmissionCheckController(v1beta2, store, kueue_api_version="v1beta2")
    done = await asyncio.to_thread(ctl.reconcile)
    assert_answered(kmock, done)
    paths = [str(r.url.path) for r in kmock]
    assert paths and not [p for p in paths if "/v1beta1" in p or p.rstrip("/") == "/apis"]  # and no discovery


@pytest.mark.asyncio
async def test_auto_asks_the_api_server_which_version_kueue_serves_and_uses_it(
    kmock: kmock.KubernetesEmulator, v1beta2: CustomObjectsApi, store: str,
) -> None:
    seed(kmock)
    ctl = AdmissionCheckController(v1beta2, store, kueue_api_version="auto")
    done = await asyncio.to_thread(ctl.reconcile)
    assert ctl.api_version == "v1beta2"
    assert_answered(kmock, done)


@pytest.mark.asyncio
async def test_a_version_kueue_does_not_serve_ends_the_pass_with_one_line_naming_the_setting(
    kmock: kmock.KubernetesEmulator, v1beta2: CustomObjectsApi, store: str,
) -> None:
    seed(kmock)
    ctl = AdmissionCheckController(v1beta2, store, kueue_api_version="v1beta1")
    with pytest.raises(KueueNotServed) as err:
        await asyncio.to_thread(ctl.reconcile)
    assert "kueue.x-k8s.io/v1beta1" in str(err.value) and "--kueue-api-version" in str(err.value)
    assert "\n" not in str(err.value)
    assert checks(kmock, "tenant-ae", "small")["red-flag-28"]["state"] == "Pending"


@pytest.mark.parametrize(("preferred", "served", "chosen"), [
    ("v1beta2", ["v1beta2", "v1beta1"], "v1beta2"),   # Kueue 0.15 and later
    ("v1beta1", ["v1beta1"], "v1beta1"),              # Kueue before 0.15
    ("v1", ["v1", "v1beta2", "v1beta1"], "v1beta2"),  # a version this controller does not know: the newest it does
])
def test_auto_takes_the_preferred_version_when_known_else_the_newest_known_one_served(
    preferred: str, served: list[str], chosen: str,
) -> None:
    assert choose_version(preferred, served) == chosen


def test_auto_refuses_a_kueue_serving_no_version_it_knows_naming_what_is_served() -> None:
    with pytest.raises(KueueNotServed) as err:
        choose_version("v1", ["v1"])
    assert "serves v1," in str(err.value) and "--kueue-api-version" in str(err.value)


def test_the_version_is_the_same_on_v1beta1_by_default_as_before(store: str) -> None:
    api = KueueApi([])
    assert AdmissionCheckController(api, store).api_version == "v1beta1"


@pytest.mark.parametrize("bad", ["v1beta3", "V1BETA2", "", "kueue.x-k8s.io/v1beta2", None])
def test_a_version_that_is_not_one_kueue_serves_is_refused_naming_the_argument(bad: Any, store: str) -> None:
    with pytest.raises(ValueError, match="kueue_api_version"):
        AdmissionCheckController(KueueApi([]), store, kueue_api_version=bad)


def test_auto_on_a_client_that_cannot_ask_discovery_is_refused_at_construction(store: str) -> None:
    with pytest.raises(ValueError, match="kueue_api_version"):
        AdmissionCheckController(KueueApi([]), store, kueue_api_version="auto")


def test_the_workload_judged_carries_the_api_version_in_use(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def spy(s: Any, packs: Any, review: dict[str, Any], *a: Any, **kw: Any) -> Any:
        seen.append(review["request"]["object"]["apiVersion"])
        raise RuntimeError("stop here")

    from agent import cases

    monkeypatch.setattr(cases, "evaluate_review", spy)
    wl = {"apiVersion": V2, "kind": "Workload", "metadata": {"name": "w", "namespace": "tenant-ae"},
          "spec": {"podSets": []},
          "status": {"conditions": [RESERVED], "admissionChecks": [{"name": "red-flag-28", "state": "Pending"}]}}
    api = KueueApi([wl])
    AdmissionCheckController(api, store, kueue_api_version="v1beta2").reconcile()
    assert seen == [V2]


# ------------------------------------------------------------------------------- veuctl


def test_the_api_version_set_on_veuctl_reaches_the_controller(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]],  # noqa: F811
) -> None:
    r: Result = veuctl("admission", "controllers", "--once", "--kueue", "--kueue-api-version", "v1beta2")
    assert r.returncode == 0, r.stderr
    assert no_cluster[0]["kueue_api_version"] == "v1beta2"


def test_by_default_veuctl_asks_the_api_server(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]],  # noqa: F811
) -> None:
    r = veuctl("admission", "controllers", "--once", "--kueue")
    assert r.returncode == 0, r.stderr
    assert no_cluster[0]["kueue_api_version"] == kueue.AUTO == "auto"


@pytest.mark.parametrize("bad", ["v1beta3", "kueue.x-k8s.io/v1beta2", "", "latest"])
def test_a_bad_kueue_api_version_is_refused_naming_the_option(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]], bad: str,  # noqa: F811
) -> None:
    r = veuctl("admission", "controllers", "--once", "--kueue", "--kueue-api-version", bad)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--kueue-api-version" in lines[0], r.stderr
    assert "v1beta1" in lines[0] and "v1beta2" in lines[0] and "auto" in lines[0]
    assert "Traceback" not in r.stderr and no_cluster == []


def test_a_kueue_api_version_without_kueue_is_refused_rather_than_silently_ignored(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]],  # noqa: F811
) -> None:
    r = veuctl("admission", "controllers", "--once", "--kueue-api-version", "v1beta2")
    assert r.returncode == 2 and "--kueue-api-version" in r.stderr and "--kueue" in r.stderr


def test_the_option_is_documented_in_help(veuctl: Any) -> None:
    text = " ".join(veuctl("admission", "controllers", "--help").stdout.split())
    assert "--kueue-api-version" in text and "v1beta2" in text


@pytest.mark.asyncio
async def test_auto_on_a_cluster_without_kueue_ends_the_pass_saying_kueue_is_not_installed(
    kmock: kmock.KubernetesEmulator, store: str,
) -> None:
    kmock["get /apis/"] << {"apiVersion": "v1", "kind": "APIGroupList", "groups": [
        {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        ctl = AdmissionCheckController(CustomObjectsApi(client), store, kueue_api_version="auto")
        with pytest.raises(KueueNotServed, match=r"kueue\.x-k8s\.io .*not installed"):
            await asyncio.to_thread(ctl.reconcile)


@pytest.mark.asyncio
async def test_auto_asks_again_when_the_version_it_found_stops_being_served(
    kmock: kmock.KubernetesEmulator, v1beta2: CustomObjectsApi, store: str,
) -> None:
    ctl = AdmissionCheckController(v1beta2, store, kueue_api_version="auto")
    await asyncio.to_thread(ctl.reconcile)
    assert ctl.api_version == "v1beta2"
    # Kueue downgraded to a release that serves v1beta1 only: its AdmissionChecks are no longer at v1beta2.
    kmock[f"get /apis/{AC}"] << KubernetesResourceNotFoundError
    with pytest.raises(KueueNotServed, match=r"kueue\.x-k8s\.io/v1beta2 AdmissionChecks"):
        await asyncio.to_thread(ctl.reconcile)
    asked = len([r for r in kmock if str(r.url.path) == "/apis/"])
    with pytest.raises(KueueNotServed):
        await asyncio.to_thread(ctl.reconcile)
    assert len([r for r in kmock if str(r.url.path) == "/apis/"]) == asked + 1
