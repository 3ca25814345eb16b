"""What the webhook never sees counted: a trusted controller's children of kinds it does not decide, and
scale-ups through the ``scale`` subresource, must not carry an accelerator run past red flag 28."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from agent import ledger
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from controllers.jobspec import Demand, read
from policies import redflag

from .conftest import M, job, load_sample, review
from .conftest import scale_review as _scale

Decide = Callable[..., Outcome]

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big-0"},
       "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}}


def _owned(obj: dict[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {})["ownerReferences"] = [
        {"apiVersion": api_version, "kind": kind, "name": "big", "uid": "u", "controller": True}]
    return obj


def _by(body: dict[str, Any], user: str) -> dict[str, Any]:
    body["request"]["userInfo"] = {"username": user, "groups": ["system:serviceaccounts"]}
    return body


# ------------------------------------------------------------------------------------------------ owners


def test_a_daemonsets_pods_created_by_its_trusted_controller_are_decided_as_jobs_of_their_own(
    decide_review: Decide,
) -> None:
    # DaemonSets are not a kind the webhook reads: admitting their pods unread would admit a GPU pod on every
    # node of the cluster for a Tier 3 customer.
    body = _by(review(_owned(POD, "DaemonSet", "apps/v1"), namespace="tenant-mo"),
               "system:serviceaccount:kube-system:daemon-set-controller")
    out = decide_review(body)
    assert not out.allowed and out.code == redflag.DENY_TIER3
    assert any("a kind this webhook does not decide" in w for w in out.warnings)


def test_a_leaderworkersets_pods_made_through_its_statefulsets_are_counted_at_their_owner(
    decide_review: Decide,
) -> None:
    # The LeaderWorkerSet controller makes StatefulSets (owned by the LeaderWorkerSet or by a leader pod), whose
    # pods the StatefulSet controller creates: the LeaderWorkerSet was decided, its pods must not be again.
    body = _by(review(_owned(POD, "StatefulSet", "apps/v1"), namespace="tenant-mo"),
               "system:serviceaccount:kube-system:statefulset-controller")
    out = decide_review(body)
    assert out.allowed and "counted at its owner" in out.message


def test_a_trainjobs_jobset_is_decided_even_when_the_trainer_controller_is_trusted(
    decide_review: Decide, overlay_mode: Any,
) -> None:
    # A TrainJob's numNodes and chips may come from its runtime, which the webhook cannot read: the JobSet
    # the trainer makes is where they are counted.
    trainer = "system:serviceaccount:kubeflow-system:kubeflow-trainer-controller-manager"
    overlay_mode("enforce", trusted_controllers=[trainer])
    js = _owned(load_sample("JobSet", "held"), "TrainJob", "trainer.kubeflow.org/v1alpha1")
    js["metadata"]["namespace"] = "tenant-mo"
    out = decide_review(_by(review(js), trainer))
    assert not out.allowed and out.code == redflag.DENY_TIER3


def test_a_cronjobs_job_created_by_the_controller_manager_is_decided_as_a_job_of_its_own(
    decide_review: Decide,
) -> None:
    child = _owned(job("nightly-2891", "tenant-ae", pods=512, annotations={M + "model": "cron-frontier",
                                                                           M + "expected-hours": "8000"}),
                   "CronJob", "batch/v1")
    out = decide_review(_by(review(child), "system:kube-controller-manager"))
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None


def test_a_rayservices_raycluster_created_by_kuberay_is_decided_as_a_job_of_its_own(decide_review: Decide) -> None:
    cluster = _owned(load_sample("RayCluster", "held"), "RayService", "ray.io/v1")
    cluster["metadata"]["namespace"] = "tenant-mo"
    out = decide_review(_by(review(cluster), "system:serviceaccount:ray-system:kuberay-operator"))
    assert not out.allowed and out.code == redflag.DENY_TIER3


def test_an_owner_of_another_api_group_is_not_taken_for_a_gated_kind_of_the_same_name(decide_review: Decide) -> None:
    body = _by(review(_owned(POD, "Job", "example.com/v1"), namespace="tenant-mo"),
               "system:serviceaccount:kube-system:job-controller")
    assert decide_review(body).code == redflag.DENY_TIER3


def test_a_kueue_workload_of_a_bare_pod_is_counted_at_the_pod(decide_review: Decide) -> None:
    wl = _owned(load_sample("Workload", "held"), "Pod", "v1")
    wl["metadata"]["namespace"] = "tenant-mo"
    out = decide_review(_by(review(wl), "system:serviceaccount:kueue-system:kueue-controller-manager"))
    assert out.allowed and "counted at its owner" in out.message


# ------------------------------------------------------------------------------------------------ scale




LWS = ("leaderworkerset.x-k8s.io", "leaderworkersets")
PYTORCH = ("kubeflow.org", "pytorchjobs")


def test_a_leaderworkerset_scaled_up_through_its_scale_subresource_beyond_what_was_counted_is_refused(
    decide_review: Decide,
) -> None:
    lws = load_sample("LeaderWorkerSet", "allowed")  # 1 group × 4 pods × 8 H100, admitted
    assert decide_review(review(lws)).code == redflag.ALLOW
    out = decide_review(_scale(LWS, lws["metadata"]["name"], 1, 1000))
    assert not out.allowed and out.code == redflag.DENY_INVALID
    assert "leaderworkersets/scale" in out.message and "change the replicas on the LeaderWorkerSet" in out.message


def test_a_refused_scale_recorded_in_audit_mode_does_not_open_later_scale_ups(
    decide_review: Decide, overlay_mode: Any,
) -> None:
    lws = load_sample("LeaderWorkerSet", "allowed")
    assert decide_review(review(lws)).allowed
    overlay_mode("audit")
    assert decide_review(_scale(LWS, lws["metadata"]["name"], 1, 1000)).allowed  # audit: admitted, recorded
    overlay_mode("enforce")
    out = decide_review(_scale(LWS, lws["metadata"]["name"], 1, 1000))
    assert not out.allowed and out.code == redflag.DENY_INVALID


def test_a_scale_up_within_the_count_after_a_refused_one_is_admitted(decide_review: Decide) -> None:
    lws = load_sample("LeaderWorkerSet", "allowed")
    lws["spec"]["replicas"] = 4
    assert decide_review(review(lws)).allowed
    assert not decide_review(_scale(LWS, lws["metadata"]["name"], 2, 1000)).allowed
    assert decide_review(_scale(LWS, lws["metadata"]["name"], 2, 4)).allowed


def test_a_leaderworkerset_whose_leader_has_no_accelerators_scales_within_its_admitted_groups(
    decide_review: Decide,
) -> None:
    lws = load_sample("LeaderWorkerSet", "allowed")
    lws["spec"]["replicas"] = 3
    worker = lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"] = {"spec": {**worker["spec"], "containers": [
        {"name": "coordinator", "image": "ghcr.io/example/train:1.0"}]}}
    assert decide_review(review(lws)).allowed
    assert decide_review(_scale(LWS, lws["metadata"]["name"], 1, 3)).allowed
    assert not decide_review(_scale(LWS, lws["metadata"]["name"], 3, 4)).allowed


def test_a_gpu_deployment_scaled_by_its_hpa_beyond_the_replicas_counted_is_refused(decide_review: Decide) -> None:
    # Its ReplicaSets and pods come from trusted controllers and are counted at the Deployment, so a scale
    # through the subresource (an HPA, `kubectl scale`) must stay within what the Deployment was admitted at.
    template = job("inf", "tenant-ae", pods=1)["spec"]["template"]
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "inf", "namespace": "tenant-ae", "annotations": {M + "model": "inf"}},
              "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "inf"}}, "template": template}}
    assert decide_review(review(deploy)).allowed
    apps = ("apps", "deployments")
    assert decide_review(_scale(apps, "inf", 4, 3)).allowed
    assert decide_review(_scale(apps, "inf", 2, 4)).allowed  # within the 4 replicas counted
    out = decide_review(_scale(apps, "inf", 4, 5000))
    assert not out.allowed and "deployments/scale" in out.message and "beyond the 4 replicas counted" in out.message
    # An ordinary CPU service (never sent, never decided) scales freely under its HPA.
    assert decide_review(_scale(apps, "web", 2, 40)).allowed


def test_a_scale_up_of_an_object_never_admitted_is_refused(decide_review: Decide) -> None:
    out = decide_review(_scale(LWS, "unknown-lws", 0, 64))
    assert not out.allowed and out.code == redflag.DENY_INVALID


def test_an_elastic_pytorchjob_scaled_by_its_hpa_within_max_replicas_is_admitted_and_beyond_is_refused(
    decide_review: Decide,
) -> None:
    pj = load_sample("PyTorchJob", "allowed")
    pj["spec"]["elasticPolicy"] = {"minReplicas": 1, "maxReplicas": 6}
    del pj["spec"]["pytorchReplicaSpecs"]["Master"]
    assert decide_review(review(pj)).allowed
    name = pj["metadata"]["name"]
    within = decide_review(_scale(PYTORCH, name, 3, 6))
    assert within.allowed and "within the 6 worker replicas counted" in within.message
    beyond = decide_review(_scale(PYTORCH, name, 6, 7))
    assert not beyond.allowed and beyond.code == redflag.DENY_INVALID


def test_a_scale_down_through_the_scale_subresource_is_not_gated(decide_review: Decide) -> None:
    out = decide_review(_scale(LWS, "any", 8, 2, ns="tenant-mo"))
    assert out.allowed and "not a scale-up" in out.message


def test_a_scale_up_of_an_object_admitted_without_accelerators_is_admitted(decide_review: Decide) -> None:
    lws = load_sample("LeaderWorkerSet", "allowed")
    for c in lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"]:
        c["resources"]["limits"].pop("nvidia.com/gpu")
    assert decide_review(review(lws)).allowed
    out = decide_review(_scale(LWS, lws["metadata"]["name"], 1, 50))
    assert out.allowed and "requested no accelerators" in out.message


def test_a_malformed_scale_is_a_denial_naming_the_field(decide_review: Decide) -> None:
    out = decide_review(_scale(LWS, "x", 1, "many"))
    assert out.code == redflag.DENY_INVALID and "object.spec.replicas" in out.message


# ------------------------------------------------------------------------------------------------ chips


def _pod(limits: dict[str, Any]) -> dict[str, Any]:
    return {"containers": [{"name": "c", "resources": {"limits": limits}}]}


def test_time_sliced_shared_gpus_are_counted_as_whole_gpus() -> None:
    d = read({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": _pod({"nvidia.com/gpu.shared": 4})})
    assert isinstance(d, Demand) and d.chips == 4


def test_an_elastic_pytorchjob_with_a_lower_case_worker_type_is_counted_at_its_elastic_bound() -> None:
    d = read({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "j"}, "spec": {
        "elasticPolicy": {"maxReplicas": 100},
        "pytorchReplicaSpecs": {"worker": {"replicas": 1, "template": {"spec": _pod({"nvidia.com/gpu": 8})}}}}})
    assert isinstance(d, Demand) and d.chips == 800


# ------------------------------------------------------------------------------------------------ job identity


def test_a_volcano_job_and_a_batch_job_of_one_name_are_two_jobs_whose_runs_add_up(decide_review: Decide) -> None:
    # 256 pods × 8 H100 × 8000 h ≈ 5.8e25 each: one is below 1e26, the two together are not. Sharing the
    # reference ns/Job/twin they were one job counted at the larger, and the second was admitted.
    ann = {M + "model": "twin", M + "expected-hours": "8000"}
    batch_job = job("twin", "tenant-ae", pods=256, annotations=ann)
    assert decide_review(review(batch_job)).code == redflag.ALLOW
    volcano = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
               "metadata": {"name": "twin", "namespace": "tenant-ae", "annotations": ann},
               "spec": {"tasks": [{"name": "w", "replicas": 256, "template": batch_job["spec"]["template"]}]}}
    out = decide_review(review(volcano))
    assert out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.decision is not None and out.decision.job_ref == "tenant-ae/Job.batch.volcano.sh/twin"


# ------------------------------------------------------------------------------------------------ updates

RUN = {M + "model": "m-run", M + "expected-hours": "8000"}  # 256 pods × 8 H100 × 8000 h ≈ 5.8e25


def _metered(store: str, job_ref: str, chip_seconds: float = 1.5e11) -> None:
    """What metering would have charged a running job: about 5.2e25 operations on H100s."""
    now = datetime.now(UTC)
    with session_scope(store) as s:
        ledger.add_metered_usage(s, customer="Emirates AI", model="m-run", job=job_ref, accelerator_name="h100-sxm",
                                 chip_seconds=chip_seconds, start=now - timedelta(days=10), end=now, packs=registry())


def _update(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    body = review(new, operation="UPDATE")
    body["request"]["oldObject"] = review(old)["request"]["object"]
    return body


def test_suspending_a_running_job_is_admitted_though_its_own_usage_has_grown_the_lineage(
    decide_review: Decide, store: str,
) -> None:
    # Kueue preempts by setting spec.suspend: refusing it would keep the chips running.
    running = job("a", "tenant-ae", pods=256, annotations=RUN)
    assert decide_review(review(running)).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-0")
    stopped = copy.deepcopy(running)
    stopped["spec"]["suspend"] = True
    out = decide_review(_update(running, stopped))
    assert out.allowed and "not decided again" in out.message
    smaller = job("a", "tenant-ae", pods=16, annotations=RUN)
    assert decide_review(_update(running, smaller)).allowed


def test_an_update_that_scales_a_running_job_up_charges_its_own_metered_usage_once(
    decide_review: Decide, store: str,
) -> None:
    running = _created(job("a", "tenant-ae", pods=256, annotations=RUN), days_ago=10)
    assert decide_review(review(running)).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-0")
    bigger = job("a", "tenant-ae", pods=264, annotations=RUN)  # ≈ 6.0e25 for the run
    # The same object: an UPDATE carries its creationTimestamp unchanged (a fresh one, a second later than the
    # metered pod's start, would read that pod as an earlier object's).
    bigger["metadata"]["creationTimestamp"] = running["metadata"]["creationTimestamp"]
    out = decide_review(_update(running, bigger))
    assert out.code == redflag.ALLOW and "not decided again" not in out.message, out.message
    assert out.estimate is not None and out.estimate < 1e26


def test_a_job_recreated_under_an_old_name_and_scaled_up_adds_the_old_runs_usage(
    decide_review: Decide, store: str,
) -> None:
    # The first "a" ran 10 days (~5.2e25 metered) and was deleted; a new "a" created today with one pod is
    # scaled to 256 by an UPDATE: the old run's usage is another run of the lineage, not this object's own.
    running = _created(job("a", "tenant-ae", pods=256, annotations=RUN), days_ago=10)
    assert decide_review(review(running)).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-0")
    again = _created(job("a", "tenant-ae", pods=1, annotations=RUN), days_ago=0)
    assert decide_review(review(again)).allowed
    out = decide_review(_update(again, _created(job("a", "tenant-ae", pods=256, annotations=RUN), days_ago=0)))
    assert out.code == redflag.HOLD_FOR_INQUIRY, out.message


def _created(obj: dict[str, Any], days_ago: int) -> dict[str, Any]:
    when = datetime.now(UTC) - timedelta(days=days_ago)
    obj["metadata"]["creationTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


def test_an_update_that_scales_a_job_up_is_decided_again(decide_review: Decide) -> None:
    small = job("a", "tenant-ae", pods=1, annotations=RUN)
    assert decide_review(review(small)).allowed
    out = decide_review(_update(small, job("a", "tenant-ae", pods=512, annotations=RUN)))
    assert out.code == redflag.HOLD_FOR_INQUIRY


def test_lifting_a_suspension_is_decided_again(decide_review: Decide) -> None:
    held_back = job("a", "tenant-mo", pods=1)
    held_back["spec"]["suspend"] = True
    started = copy.deepcopy(held_back)
    started["spec"]["suspend"] = False
    assert decide_review(_update(held_back, started)).code == redflag.DENY_TIER3


def test_a_job_recreated_under_its_name_adds_to_its_earlier_incarnations_metered_usage(
    decide_review: Decide, store: str,
) -> None:
    # A CREATE is a new object: its run adds to what the deleted one of the same name was metered.
    first = job("a", "tenant-ae", pods=256, annotations=RUN)
    assert decide_review(review(first)).code == redflag.ALLOW
    _metered(store, "tenant-ae/Job/a#a-0")
    assert decide_review(review(first)).code == redflag.HOLD_FOR_INQUIRY


def _trainjob_and_its_jobset(nodes: int, ann: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod_spec = {"containers": [{"name": "node", "resources": {"limits": {"nvidia.com/gpu": 8}}}]}
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
          "metadata": {"name": "tj", "namespace": "tenant-ae", "annotations": ann},
          "spec": {"runtimeRef": {"name": "torch-distributed"},
                   "trainer": {"numNodes": nodes, "resourcesPerNode": {"limits": {"nvidia.com/gpu": 8}}}}}
    js = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
          "metadata": {"name": "tj", "namespace": "tenant-ae", "annotations": ann},
          "spec": {"replicatedJobs": [{"name": "node", "replicas": 1, "template": {"spec": {
              "parallelism": nodes, "completions": nodes, "template": {"spec": pod_spec}}}}]}}
    return tj, _owned(js, "TrainJob", "trainer.kubeflow.org/v1alpha1") | {
        "metadata": {**js["metadata"], "ownerReferences": [{"apiVersion": "trainer.kubeflow.org/v1alpha1",
                                                            "kind": "TrainJob", "name": "tj", "uid": "u",
                                                            "controller": True}]}}


TRAINER = "system:serviceaccount:kubeflow-system:kubeflow-trainer-controller-manager"


def test_a_trusted_trainers_jobset_is_decided_as_its_trainjob_so_one_run_is_not_counted_twice(
    decide_review: Decide, overlay_mode: Any,
) -> None:
    # No chip model named: the most capable catalogued NVIDIA GPU, 100 nodes × 8 × 8000 h ≈ 5.8e25 each.
    overlay_mode("enforce", trusted_controllers=[TRAINER])
    tj, js = _trainjob_and_its_jobset(100, RUN)
    first = decide_review(review(tj))
    assert first.code == redflag.ALLOW and first.estimate is not None and 5e25 < first.estimate < 1e26
    out = decide_review(_by(review(js), TRAINER))
    assert out.code == redflag.ALLOW, out.message
    assert out.decision is not None and out.decision.job_ref == "tenant-ae/TrainJob/tj"


def test_a_trusted_trainers_jobset_with_more_nodes_than_its_trainjob_says_is_held(
    decide_review: Decide, overlay_mode: Any,
) -> None:
    # numNodes left to the runtime: the TrainJob counts one node, its JobSet the runtime's 512.
    overlay_mode("enforce", trusted_controllers=[TRAINER])
    tj, js = _trainjob_and_its_jobset(512, RUN)
    del tj["spec"]["trainer"]["numNodes"]
    assert decide_review(review(tj)).allowed
    assert decide_review(_by(review(js), TRAINER)).code == redflag.HOLD_FOR_INQUIRY
