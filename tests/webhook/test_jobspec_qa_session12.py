"""Job-spec readers, QA session 12: chips in pods a trusted controller makes from a counted owner (a RayJob's
submitter, the Ray autoscaler), MIG profile spellings, LeaderWorkerSet error paths, huge counts, TrainJob numNodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agent.cases import Outcome
from controllers.jobspec import Demand, ReadError, read, vendor_of
from policies import redflag

from .conftest import load_sample, review

Decide = Callable[..., Outcome]


def tpl(gpus: Any, **spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}], **spec}}


def rayjob(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "rj", "namespace": "n"},
            "spec": {"entrypoint": "python train.py", **spec}}


def demand(obj: Any) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


def error(obj: Any) -> str:
    d = read(obj)
    assert isinstance(d, ReadError), d
    return d.message


def test_a_rayjob_submitter_pod_template_with_accelerators_is_one_pod_of_the_job() -> None:
    on_existing = demand(rayjob(clusterSelector={"ray.io/cluster": "c"}, submitterPodTemplate=tpl(8)))
    assert [(g.role, g.pods, g.chips) for g in on_existing.groups] == [("submitter", 1, 8.0)]
    inline = {"workerGroupSpecs": [{"groupName": "w", "replicas": 2, "template": tpl(4)}]}
    both = demand(rayjob(rayClusterSpec=inline, submitterPodTemplate=tpl(8, nodeSelector={
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"})))
    assert both.chips == 2 * 4 + 8
    assert next(g for g in both.groups if g.role == "submitter").model_hints == ("NVIDIA-H100-80GB-HBM3",)
    assert demand(rayjob(clusterSelector={"ray.io/cluster": "c"}, submissionMode="K8sJobMode",
                         submitterPodTemplate=tpl(8))).chips == 8


def test_rayjob_submission_modes_that_start_no_submitter_job_do_not_count_its_template() -> None:
    for mode in ("HTTPMode", "InteractiveMode", "SidecarMode"):
        assert demand(rayjob(clusterSelector={"ray.io/cluster": "c"}, submissionMode=mode,
                             submitterPodTemplate=tpl(8))).chips == 0


def test_a_malformed_rayjob_submitter_template_is_an_error_naming_the_field() -> None:
    msg = error(rayjob(clusterSelector={"ray.io/cluster": "c"}, submitterPodTemplate={"spec": {"containers": {}}}))
    assert msg.startswith("spec.submitterPodTemplate.spec.containers: expected a list")
    assert error(rayjob(submitterPodTemplate=tpl("500m"))).startswith(
        "spec.submitterPodTemplate.spec.containers[0].resources.limits[nvidia.com/gpu]: '500m' is not a whole")
    # A submissionMode of the wrong type is not a mode that skips the submitter: its chips still count.
    assert demand(rayjob(submissionMode=["HTTPMode"], submitterPodTemplate=tpl(8))).chips == 8


def test_tier2_rayjob_training_over_1e26_through_its_submitter_pod_is_held_for_inquiry(decide_review: Decide) -> None:
    obj = load_sample("RayJob", "submitter-held")
    out = decide_review(review(obj))
    assert not out.allowed and out.code == redflag.HOLD_FOR_INQUIRY, out.message
    assert out.decision is not None
    assert out.decision.chips == pytest.approx(float(obj["metadata"]["annotations"][
        "samples.veu-governor.io/expected-chips"]))


def test_a_leaderworkerset_without_a_leader_template_names_the_worker_template_in_errors() -> None:
    obj = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "l"},
           "spec": {"replicas": 2, "leaderWorkerTemplate": {"size": 4, "workerTemplate": {"spec": {"containers": {}}}}}}
    assert error(obj).startswith("spec.leaderWorkerTemplate.workerTemplate.spec.containers: expected a list")
    obj["spec"]["leaderWorkerTemplate"]["workerTemplate"] = tpl(8)
    d = demand(obj)
    assert [(g.role, g.pods) for g in d.groups] == [("leader", 2), ("worker", 6)]  # the leader runs the worker's


def test_a_huge_replica_count_is_an_error_that_still_says_out_of_range() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"parallelism": 10**400, "template": tpl(8)}}
    msg = error(job)
    assert msg.startswith("spec.parallelism: 1000") and msg.endswith("is out of range 0-10000000"), msg
    assert len(msg) < 120


def test_a_device_count_past_pythons_digit_limit_is_an_error_naming_the_field() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": tpl(10**5000)["spec"]}
    assert error(pod).startswith("spec.containers[0].resources.limits[nvidia.com/gpu]: ")
    assert "out of range" in error(pod)


def test_a_trainjob_without_num_nodes_warns_that_the_runtime_node_count_is_not_visible() -> None:
    def trainjob(**trainer: Any) -> dict[str, Any]:
        return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "t"},
                "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": trainer}}
    d = demand(trainjob(resourcesPerNode={"limits": {"nvidia.com/gpu": 8}}))
    assert d.chips == 8 and any("mlPolicy.numNodes" in n for n in d.notes), d.notes
    assert not demand(trainjob(numNodes=4, resourcesPerNode={"limits": {"nvidia.com/gpu": 8}})).notes


def raycluster(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "rc", "namespace": "n"},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "head"}],
                                                             "nodeSelector": {"nvidia.com/gpu.product": "H100"}}}},
                     "workerGroupSpecs": [{"groupName": "cpu", "replicas": 1, "maxReplicas": 2,
                                           "template": {"spec": {"containers": [{"name": "w"}]}}}], **spec}}


def test_the_ray_autoscaler_container_kuberay_adds_to_the_head_pod_counts_with_the_head() -> None:
    opts = {"image": "ghcr.io/example/train:1.0", "resources": {"limits": {"nvidia.com/gpu": 8}}}
    d = demand(raycluster(enableInTreeAutoscaling=True, autoscalerOptions=opts))
    assert [(g.role, g.pods, g.chips, g.model_hints) for g in d.groups] == [("head", 1, 8.0, ("H100",))]
    # It is one more app container of the head pod: it adds to the head's own chips.
    rc = raycluster(enableInTreeAutoscaling=True, autoscalerOptions=opts)
    rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 2}}
    assert demand(rc).chips == 10
    # Inside a RayJob's rayClusterSpec too.
    assert demand(rayjob(rayClusterSpec=raycluster(enableInTreeAutoscaling=True, autoscalerOptions=opts)["spec"])
                  ).chips == 8


def test_without_in_tree_autoscaling_kuberay_adds_no_autoscaler_so_its_options_count_nothing() -> None:
    opts = {"resources": {"limits": {"nvidia.com/gpu": 8}}}
    assert demand(raycluster(autoscalerOptions=opts)).chips == 0
    assert demand(raycluster(autoscalerOptions=[])).chips == 0  # never used, so never read


def test_malformed_ray_autoscaler_resources_are_an_error_naming_the_field() -> None:
    opts = {"resources": {"limits": {"nvidia.com/gpu": "1.5"}}}
    bad = raycluster(enableInTreeAutoscaling=True, autoscalerOptions=opts)
    assert error(bad).startswith("spec.autoscalerOptions.resources.limits[nvidia.com/gpu]: '1.5' is not a whole")
    assert error(raycluster(enableInTreeAutoscaling=True, autoscalerOptions="x")).startswith(
        "spec.autoscalerOptions: expected an object, got str")


def test_every_device_plugin_spelling_of_a_mig_profile_counts_as_a_nvidia_slice() -> None:
    # The device plugin turns the NVML profile's "+" into "." (1g.10gb+me -> mig-1g.10gb.me); newer profiles add
    # "-me", "+me.all" and "+gfx". A spelling not recognised would count 0 chips.
    for res in ("nvidia.com/mig-1g.10gb", "nvidia.com/mig-1g.10gb.me", "nvidia.com/mig-1g.23gb-me",
                "nvidia.com/mig-1g.23gb.me.all", "nvidia.com/mig-1g.24gb.gfx"):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [{"name": "c", "resources": {"limits": {res: 2}}}]}}
        d = demand(pod)
        assert [(g.resource, g.chips) for g in d.groups] == [(res, 2.0)], res
        assert vendor_of(res) == "nvidia"
    for res in ("nvidia.com/mig-", "nvidia.com/mig-1g.10gb.", "nvidia.com/gpu.product"):
        assert vendor_of(res) == ""
