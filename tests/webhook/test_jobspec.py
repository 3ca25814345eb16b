"""Job-spec readers: chip counts per kind, the effective-request rule, node-label hints, totality under fuzzing."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.jobspec import Demand, ReadError, read


def c(gpus: Any, key: str = "limits", res: str = "nvidia.com/gpu", **kw: Any) -> dict[str, Any]:
    return {"name": "c", "resources": {key: {res: gpus}}, **kw}


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n"},
            "spec": {"containers": list(containers), **({"initContainers": init} if init else {}), **spec}}


def demand(obj: Any) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


def test_pod_chips_sum_over_containers_and_take_limits_or_requests() -> None:
    assert demand(pod(c(4), c("2", key="requests"))).chips == 6


def test_plain_init_containers_run_before_the_app_so_the_pod_needs_their_maximum() -> None:
    assert demand(pod(c(2), init=[c(8), c(4)])).chips == 8
    assert demand(pod(c(8), init=[c(4)])).chips == 8


def test_sidecar_init_containers_run_alongside_and_add_up() -> None:
    assert demand(pod(c(2), init=[c(1, restartPolicy="Always")])).chips == 3


def test_every_vendor_resource_counts() -> None:
    for res in ("nvidia.com/gpu", "amd.com/gpu", "google.com/tpu", "aws.amazon.com/neuron",
                "aws.amazon.com/neuroncore", "habana.ai/gaudi", "nvidia.com/mig-1g.10gb"):
        d = demand(pod(c(2, res=res)))
        assert d.chips == 2 and d.groups[0].resource == res


def test_cpu_memory_and_unknown_resources_are_not_chips() -> None:
    assert demand(pod({"name": "c", "resources": {"limits": {"cpu": "8", "example.com/foo": 3}}})).chips == 0


def test_node_selector_and_required_affinity_hint_the_chip_model() -> None:
    d = demand(pod(c(1), nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}))
    assert d.groups[0].model_hints == ("nvidia-h100-80gb",)
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "karpenter.k8s.aws/instance-gpu-name", "operator": "In",
                               "values": ["l40s", "h100"]}]}]}}}
    d = demand(pod(c(1), affinity=aff))
    assert d.groups[0].model_hints == ("l40s", "h100") and d.groups[0].hint_label.startswith("karpenter")


def test_job_counts_parallelism_pods() -> None:
    obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"parallelism": 16, "completions": 64, "template": {"spec": {"containers": [c(8)]}}}}
    assert demand(obj).chips == 128


def test_jobset_counts_replicas_times_parallelism() -> None:
    rj = {"name": "w", "replicas": 4, "template": {"spec": {"parallelism": 2, "template": {"spec": {
        "containers": [c(4, res="google.com/tpu")]}}}}}
    obj = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "j"},
           "spec": {"replicatedJobs": [rj, {**rj, "name": "v", "replicas": 1}]}}
    assert demand(obj).chips == 4 * 2 * 4 + 1 * 2 * 4


def test_ray_worker_groups_count_their_autoscaling_bound_times_hosts() -> None:
    wg = {"groupName": "g", "replicas": 2, "minReplicas": 1, "maxReplicas": 10, "numOfHosts": 4,
          "template": {"spec": {"containers": [c(4, res="google.com/tpu")]}}}
    obj = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "r"},
           "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "h"}]}}}, "workerGroupSpecs": [wg]}}
    d = demand(obj)
    assert d.chips == 10 * 4 * 4 and any("autoscaling bound" in n for n in d.notes)


def test_rayjob_on_an_existing_cluster_has_no_demand_of_its_own() -> None:
    obj = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "r"},
           "spec": {"clusterSelector": {"ray.io/cluster": "shared"}}}
    assert demand(obj).chips == 0


def test_leaderworkerset_counts_groups_times_size_including_the_leader() -> None:
    obj = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "l"},
           "spec": {"replicas": 3, "leaderWorkerTemplate": {"size": 4, "leaderTemplate": {"spec": {
               "containers": [c(1)]}}, "workerTemplate": {"spec": {"containers": [c(8)]}}}}}
    assert demand(obj).chips == 3 * 1 + 3 * 3 * 8


def test_kubeflow_replica_specs_and_trainjob_nodes() -> None:
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "p"}, "spec": {
        "pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": {"containers": [c(8)]}}},
                                "Worker": {"replicas": 7, "template": {"spec": {"containers": [c(8)]}}}}}}
    assert demand(obj).chips == 64
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "t"},
          "spec": {"trainer": {"numNodes": 5, "resourcesPerNode": {"limits": {"nvidia.com/gpu": "8"}}}}}
    assert demand(tj).chips == 40


def test_volcano_tasks_and_kueue_podsets() -> None:
    vj = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job", "metadata": {"name": "v"},
          "spec": {"tasks": [{"replicas": 3, "template": {"spec": {"containers": [c(8, res="habana.ai/gaudi")]}}}]}}
    assert demand(vj).chips == 24
    wl = {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload", "metadata": {"name": "w"},
          "spec": {"podSets": [{"name": "main", "count": 6, "template": {"spec": {"containers": [c(2)]}}}]}}
    assert demand(wl).chips == 12


def test_annotations_on_the_job_win_over_pod_template_annotations() -> None:
    obj = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "j", "annotations": {"compute.veu-governor.io/model": "a"}},
           "spec": {"template": {"metadata": {"annotations": {"compute.veu-governor.io/model": "b",
                                                               "compute.veu-governor.io/tokens": "1e12"}},
                                 "spec": {"containers": [c(1)]}}}}
    assert demand(obj).declared() == {"model": "a", "tokens": "1e12"}


def test_malformed_shapes_are_errors_naming_the_field() -> None:
    cases = [
        ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"parallelism": -1}}, "spec.parallelism"),
        ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"parallelism": True}}, "spec.parallelism"),
        (pod(c("-3")), "resources.limits[nvidia.com/gpu]"),
        (pod(c("eight")), "not a resource quantity"),
        ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "c"}}, "spec.containers"),
        ({"kind": "Pod"}, "apiVersion and kind"),
        ([], "expected an object"),
        (None, "expected an object"),
    ]
    for obj, field in cases:
        r = read(obj)
        assert isinstance(r, ReadError) and field in r.message, (obj, r)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=30,
)
KINDS = [("v1", "Pod"), ("batch/v1", "Job"), ("jobset.x-k8s.io/v1alpha2", "JobSet"),
         ("kubeflow.org/v1", "PyTorchJob"), ("trainer.kubeflow.org/v1alpha1", "TrainJob"), ("ray.io/v1", "RayJob"),
         ("ray.io/v1", "RayCluster"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
         ("batch.volcano.sh/v1alpha1", "Job"), ("kueue.x-k8s.io/v1beta1", "Workload")]
KEYS = ["spec", "template", "containers", "initContainers", "resources", "limits", "requests", "nvidia.com/gpu",
        "parallelism", "replicas", "replicatedJobs", "workerGroupSpecs", "podSets", "tasks", "count", "numOfHosts",
        "leaderWorkerTemplate", "size", "trainer", "numNodes", "resourcesPerNode", "pytorchReplicaSpecs",
        "rayClusterSpec", "nodeSelector", "affinity", "metadata", "annotations"]
shaped = st.recursive(
    st.none() | st.integers(-5, 10**8) | st.sampled_from(["8", "-1", "1k", "x", ""]) | st.booleans(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(KEYS), kids, max_size=5),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), spec=shaped)
def test_readers_are_total_on_shaped_garbage(kind: tuple[str, str], spec: Any) -> None:
    r = read({"apiVersion": kind[0], "kind": kind[1], "metadata": {"name": "x"}, "spec": spec})
    assert isinstance(r, Demand | ReadError)
    if isinstance(r, Demand):
        assert r.chips >= 0


@settings(max_examples=100, deadline=None)
@given(obj=json_values)
def test_readers_are_total_on_any_json(obj: Any) -> None:
    assert isinstance(read(obj), Demand | ReadError)
