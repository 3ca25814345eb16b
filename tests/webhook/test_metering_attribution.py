"""Metering files a pod's usage where admission decided it, and an UPDATE's own usage is its object's only.

- A pod (or a Job) created directly by a user, not by a trusted controller, is decided as a job of its own
  whatever ownerReference or owner labels it carries: metering files its chip-seconds under that job
  reference and the model it declared, not under the admitted workload it points at (whose smaller run
  would hide them).
- A job deleted and re-created under its name the same day, then scaled up: the earlier object's usage of
  that day is another run of the lineage, not the new object's own (the ledger stores days, the pods'
  start times are instants).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import kmock
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import select

from agent import ledger
from agent.cases import Outcome, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.ledger import MeteredUsage
from controllers import metering
from controllers.metering import Meter
from policies import redflag

from .conftest import M, job, review

Decide = Callable[..., Outcome]

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
H100 = "NVIDIA-H100-80GB-HBM3"
JOBS = "batch/v1/jobs"
JOBSETS = "jobset.x-k8s.io/v1alpha2/jobsets"
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    kmock.resources[JOBS] = kmock.ResourceInfo(kind="Job", namespaced=True)
    kmock.resources[JOBSETS] = kmock.ResourceInfo(kind="JobSet", namespaced=True)
    kmock.objects["v1/nodes", None, "gpu-node-1"] = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "gpu-node-1", "labels": {"nvidia.com/gpu.product": H100}}}
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(name: str, *, gpus: int = 8, model: str | None = None, owner: dict[str, Any] | None = None,
         labels: dict[str, str] | None = None, uid: str | None = None) -> dict[str, Any]:
    """A Pod as the API server holds it (and shows it to a validating webhook: uid set)."""
    md: dict[str, Any] = {"name": name, "namespace": "tenant-ae", "uid": uid or f"uid-{name}",
                          "labels": dict(labels or {}), "annotations": {M + "model": model} if model else {}}
    if owner:
        md["ownerReferences"] = [{**owner, "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"nodeName": "gpu-node-1", "containers": [
                {"name": "t", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}


def _running(km: kmock.KubernetesEmulator, pod: dict[str, Any], started: datetime) -> None:
    pod = copy.deepcopy(pod)
    pod["status"] = {"phase": "Running", "startTime": _ts(started)}
    km.objects["v1/pods", "tenant-ae", pod["metadata"]["name"]] = pod


def _by(body: dict[str, Any], user: str) -> dict[str, Any]:
    body["request"]["userInfo"] = {"username": user, "groups": ["system:serviceaccounts"]}
    return body


def _usage(store: str) -> dict[str, str | None]:
    """job reference -> model name of every metered row."""
    with session_scope(store) as s:
        rows = list(s.exec(select(MeteredUsage)).all())
        return {r.job_ref: ledger.model_name_of(s, r.model_id) for r in rows}


def _small_job(kmock: kmock.KubernetesEmulator, decide_review: Decide) -> dict[str, Any]:
    """An admitted one-pod Job of a small model, as the cluster holds it."""
    small = job("small", "tenant-ae", pods=1, annotations={M + "model": "m-small"})
    small["metadata"]["uid"] = "job-uid"
    assert decide_review(review(small)).code == redflag.ALLOW
    kmock.objects[JOBS, "tenant-ae", "small"] = small
    return {"apiVersion": "batch/v1", "kind": "Job", "name": "small", "uid": "job-uid"}


# ------------------------------------------------------------------------------------------------ decoys


@pytest.mark.asyncio
async def test_a_pod_created_directly_with_a_jobs_owner_reference_is_metered_as_the_pod_admission_decided(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Decide,
) -> None:
    owner = _small_job(kmock, decide_review)
    # The job controller's pod of the Job: admitted, counted at its owner (no decision of its own).
    honest = _pod("small-x7k2p", model="m-small", owner=owner, labels={"batch.kubernetes.io/job-name": "small"})
    out = decide_review(_by(review(honest), JOB_CONTROLLER))
    assert out.allowed and out.decision is None
    # A user's pod pointing at the same Job (right name and uid) and declaring a big model: decided on its own.
    decoy = _pod("decoy", model="m-big", owner=owner)
    out = decide_review(review(decoy))
    assert out.allowed and out.decision is not None and out.decision.job_ref == "tenant-ae/Pod/decoy"
    # Another user's pod wearing the Job's labels instead: decided on its own too.
    labelled = _pod("labelled", model="m-big", labels={"batch.kubernetes.io/job-name": "small"})
    out = decide_review(review(labelled))
    assert out.decision is not None and out.decision.job_ref == "tenant-ae/Pod/labelled"
    for p in (honest, decoy, labelled):
        _running(kmock, p, NOW - timedelta(hours=10))
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert _usage(store) == {
        "tenant-ae/Job/small#small-x7k2p": "m-small",
        "tenant-ae/Pod/decoy#decoy": "m-big",
        "tenant-ae/Pod/labelled#labelled": "m-big",
    }


@pytest.mark.asyncio
async def test_a_job_created_directly_under_a_jobset_is_metered_as_the_job_admission_decided(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Decide,
) -> None:
    kmock.objects[JOBSETS, "tenant-ae", "js"] = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
        "metadata": {"name": "js", "namespace": "tenant-ae", "uid": "js-uid",
                     "annotations": {M + "model": "m-small"}}, "spec": {}}
    sneak = job("sneak", "tenant-ae", pods=1, annotations={M + "model": "m-big"})
    sneak["metadata"]["uid"] = "sneak-uid"
    sneak["metadata"]["ownerReferences"] = [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                                             "name": "js", "uid": "js-uid", "controller": True}]
    out = decide_review(review(sneak))
    assert out.decision is not None and out.decision.job_ref == "tenant-ae/Job/sneak"
    kmock.objects[JOBS, "tenant-ae", "sneak"] = sneak
    # Its pod, made by the (trusted) job controller, is counted at the Job: the Job is where it was decided.
    p = _pod("sneak-q9w8e", owner={"apiVersion": "batch/v1", "kind": "Job", "name": "sneak", "uid": "sneak-uid"},
             labels={"batch.kubernetes.io/job-name": "sneak", "jobset.sigs.k8s.io/jobset-name": "js"})
    assert decide_review(_by(review(p), JOB_CONTROLLER)).decision is None
    _running(kmock, p, NOW - timedelta(hours=10))
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert _usage(store) == {"tenant-ae/Job/sneak#sneak-q9w8e": "m-big"}


@pytest.mark.asyncio
async def test_a_decision_for_an_earlier_pod_of_the_same_name_does_not_move_a_jobs_pod(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Decide,
) -> None:
    # A bare pod "small-0" was decided on its own, then deleted; the Job's (deterministically named) pod of
    # that name is another object: counted at the Job, and metered there.
    assert decide_review(review(_pod("small-0", model="m-big", uid="earlier-uid"))).decision is not None
    owner = _small_job(kmock, decide_review)
    p = _pod("small-0", owner=owner, labels={"batch.kubernetes.io/job-name": "small"})
    assert decide_review(_by(review(p), JOB_CONTROLLER)).decision is None
    _running(kmock, p, NOW - timedelta(hours=10))
    await asyncio.to_thread(Meter(*apis, store).tick, NOW)
    assert _usage(store) == {"tenant-ae/Job/small#small-0": "m-small"}


@pytest.mark.asyncio
async def test_admission_decisions_are_looked_up_once_per_pod_in_one_query_a_tick(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], store: str, decide_review: Decide,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = _small_job(kmock, decide_review)
    for i in range(5):
        _running(kmock, _pod(f"small-{i}", owner=owner), NOW - timedelta(hours=1))
    _running(kmock, _pod("solo", model="m-solo"), NOW - timedelta(hours=1))  # no owner: nothing to look up
    calls: list[int] = []
    real = metering.decided_alone

    def counted(s: Any, asks: Any) -> Any:
        calls.append(len(asks))
        return real(s, asks)

    monkeypatch.setattr(metering, "decided_alone", counted)
    meter = Meter(*apis, store)
    await asyncio.to_thread(meter.tick, NOW)
    await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=1))
    # The five pods, once (their Job is the top: its own decision changes nothing); the next tick asks nothing.
    assert calls == [5]
    _running(kmock, _pod("small-5", owner=owner), NOW)
    await asyncio.to_thread(meter.tick, NOW + timedelta(minutes=2))
    assert calls == [5, 1]


# ------------------------------------------------------------------------------------------------ re-creation

RUN = {M + "model": "m-run", M + "expected-hours": "8000"}  # 256 pods × 8 H100 × 8000 h ≈ 5.8e25
DAY = datetime(2026, 11, 23, tzinfo=UTC)
OPS_PER_H100_SECOND = 9.894e14 * 0.35  # metering's default utilization


def _created(obj: dict[str, Any], at: datetime) -> dict[str, Any]:
    obj["metadata"]["creationTimestamp"] = _ts(at)
    return obj


def _update(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    body = review(new, operation="UPDATE")
    body["request"]["oldObject"] = review(old)["request"]["object"]
    return body


def _metered(store: str, job_ref: str, operations: float, start: datetime, end: datetime) -> None:
    with session_scope(store) as s:
        ledger.add_metered_usage(s, customer="Emirates AI", model="m-run", job=job_ref, accelerator_name="h100-sxm",
                                 chip_seconds=operations / OPS_PER_H100_SECOND, start=start, end=end,
                                 packs=registry())


def _decide_on(url: str) -> Decide:
    def run(body: dict[str, Any], **kw: Any) -> Outcome:
        with session_scope(url) as s:
            return evaluate_review(s, registry(), body, **kw)
    return run


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_job_recreated_the_same_day_and_scaled_up_adds_what_the_earlier_object_ran_that_day(
    backend: str, request: pytest.FixtureRequest,
) -> None:
    store = request.getfixturevalue("store" if backend == "sqlite" else "pg_store")
    decide_review = _decide_on(store)
    # "a" (256 pods) ran from 01:05 to 11:00 (5.2e25 metered) and was deleted; a new "a" created at 12:00
    # with one pod is scaled to 256 at 18:00. The earlier object's 5.2e25 is another run of the lineage:
    # 5.2e25 + 5.8e25 > 1e26. Taken as the new object's own (same creation day), it hid under the 5.8e25.
    first = _created(job("a", "tenant-ae", pods=256, annotations=RUN), DAY + timedelta(hours=1))
    assert decide_review(review(first), now=DAY + timedelta(hours=1)).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-k2j4x", 5.2e25, DAY + timedelta(hours=1, minutes=5), DAY + timedelta(hours=11))
    again = _created(job("a", "tenant-ae", pods=1, annotations=RUN), DAY + timedelta(hours=12))
    assert decide_review(review(again), now=DAY + timedelta(hours=12)).allowed
    _metered(store, "tenant-ae/Job/a#a-p0q9z", 1e21, DAY + timedelta(hours=12, minutes=5), DAY + timedelta(hours=18))
    bigger = _created(job("a", "tenant-ae", pods=256, annotations=RUN), DAY + timedelta(hours=12))
    out = decide_review(_update(again, bigger), now=DAY + timedelta(hours=18))
    assert out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.estimate is not None and out.estimate == pytest.approx(5.2e25 + 5.8e25, rel=0.03)


def test_a_scaled_up_job_whose_pod_has_an_earlier_objects_pods_name_counts_its_own_usage_once(
    decide_review: Decide, store: str,
) -> None:
    # Pods named by the job (a-0) are the same job reference for every object of that name. The earlier "a"
    # ran 1e25 ten days ago; the new one's a-0 has run 4e25 today, and it is scaled to 256 pods (5.8e25):
    # 1e25 + max(5.8e25, 4e25) = 6.8e25, not 1e25 + 4e25 + 5.8e25 (its own usage counted as another run's).
    old = DAY - timedelta(days=10)
    first = _created(job("a", "tenant-ae", pods=256, annotations=RUN), old)
    assert decide_review(review(first), now=old).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-0", 1e25, old + timedelta(minutes=5), old + timedelta(hours=2))
    again = _created(job("a", "tenant-ae", pods=1, annotations=RUN), DAY + timedelta(hours=1))
    assert decide_review(review(again), now=DAY + timedelta(hours=1)).allowed
    _metered(store, "tenant-ae/Job/a#a-0", 4e25, DAY + timedelta(hours=1, minutes=5), DAY + timedelta(hours=18))
    bigger = _created(job("a", "tenant-ae", pods=256, annotations=RUN), DAY + timedelta(hours=1))
    out = decide_review(_update(again, bigger), now=DAY + timedelta(hours=18))
    assert out.code == redflag.ALLOW, out.message
    assert out.estimate is not None and out.estimate == pytest.approx(1e25 + 5.8e25, rel=0.03)
    # The ledger itself still charges both objects' pods: 1e25 + 4e25 on the one job reference.
    with session_scope(store) as s:
        runs = ledger.model_view(s, registry(), "m-run", DAY.date())["runs"]
    assert [r["job"] for r in runs] == ["tenant-ae/Job/a#a-0"]
    assert runs[0]["operations"] == pytest.approx(5e25, rel=1e-6)


def test_a_job_scaled_up_the_day_it_was_created_counts_its_own_usage_once(decide_review: Decide, store: str) -> None:
    created = DAY + timedelta(hours=1)
    running = _created(job("a", "tenant-ae", pods=256, annotations=RUN), created)
    assert decide_review(review(running), now=created).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-7fj3k", 5.2e25, created + timedelta(minutes=3), DAY + timedelta(hours=18))
    bigger = _created(job("a", "tenant-ae", pods=264, annotations=RUN), created)
    out = decide_review(_update(running, bigger), now=DAY + timedelta(hours=18))
    assert out.code == redflag.ALLOW, out.message
    assert out.estimate is not None and out.estimate < 1e26
