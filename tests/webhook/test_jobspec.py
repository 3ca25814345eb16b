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


def test_a_sidecar_started_before_an_init_container_adds_to_it() -> None:
    # The sidecar (4) is running while the plain init container (8) runs: 12 at that moment, above 4 + 2.
    assert demand(pod(c(2), init=[c(4, restartPolicy="Always"), c(8)])).chips == 12


def test_a_sidecar_started_after_an_init_container_does_not_add_to_it() -> None:
    assert demand(pod(c(2), init=[c(8), c(4, restartPolicy="Always")])).chips == 8
    assert demand(pod(c(6), init=[c(8), c(4, restartPolicy="Always")])).chips == 10


def test_only_the_sidecars_declared_before_an_init_container_add_to_it() -> None:
    init = [c(1, restartPolicy="Always"), c(8), c(2, restartPolicy="Always"), c(9)]
    # max(app 0 + sidecars 3, 1 + 8, 1 + 2 + 9) = 12
    assert demand(pod({"name": "app"}, init=init)).chips == 12


def test_every_vendor_resource_counts() -> None:
    for res in ("nvidia.com/gpu", "amd.com/gpu", "google.com/tpu", "aws.amazon.com/neuron",
                "aws.amazon.com/neuroncore", "habana.ai/gaudi", "nvidia.com/mig-1g.10gb"):
        d = demand(pod(c(2, res=res)))
        assert d.chips == 2 and d.groups[0].resource == res


def test_every_kubernetes_quantity_form_of_a_whole_count_is_read() -> None:
    for q, n in (("1e3", 1000), ("1E2", 100), ("+8", 8), ("8.", 8), ("8.0", 8), ("2000m", 2), ("1k", 1000),
                 ("2Ki", 2048), ("64Ki", 65536), (" 8", 8), (8.0, 8), ("0", 0)):
        assert demand(pod(c(q))).chips == n, q


def test_quantities_past_the_per_pod_range_are_out_of_range_errors() -> None:
    for q in ("1M", "1G", "1T", "1P", "1E", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei", "1e99999999999", "-1", "-1e3",
              10**400, float("nan"), float("inf")):
        r = read(pod(c(q)))
        assert isinstance(r, ReadError), q
        assert "spec.containers[0].resources.limits[nvidia.com/gpu]" in r.message and "out of range" in r.message


def test_a_fractional_accelerator_count_is_an_error_naming_the_field() -> None:
    for q in ("500m", "1.5", ".5", "1e-3", 1.5, "1.0000000000000000000000000000001"):
        r = read(pod(c(2), c(q, key="requests")))
        assert isinstance(r, ReadError), q
        assert "spec.containers[1].resources.requests[nvidia.com/gpu]" in r.message, r.message
        assert "whole" in r.message


def test_junk_that_is_not_a_quantity_is_an_error() -> None:
    for q in ("NaN", "1e", "8 gpus", "1Ki2", "0x10", "", "1" * 65):
        r = read(pod(c(q)))
        assert isinstance(r, ReadError) and "not a resource quantity" in r.message, (q, r)


def test_dra_resource_claims_on_the_pod_are_an_error_not_zero_chips() -> None:
    claims = [{"name": "gpus", "resourceClaimTemplateName": "eight-h100"}]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"template": {"spec": {"resourceClaims": claims, "containers": [{"name": "c"}]}}}}
    r = read(job)
    assert isinstance(r, ReadError)
    assert r.message.startswith("spec.template.spec.resourceClaims: DRA resource claims are not counted")
    assert "ResourceClaimTemplate" in r.message and "nvidia.com/gpu" in r.message and "exempt" in r.message


def test_dra_claims_in_a_container_or_trainjob_resources_are_an_error_naming_the_field() -> None:
    r = read(pod({"name": "c", "resources": {"claims": [{"name": "gpus"}]}}))
    assert isinstance(r, ReadError) and r.message.startswith("spec.containers[0].resources.claims: DRA"), r
    r = read(pod(c(1), init=[{"name": "i", "resources": {"claims": [{"name": "gpus"}]}}]))
    assert isinstance(r, ReadError) and r.message.startswith("spec.initContainers[0].resources.claims: DRA"), r
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "t"},
          "spec": {"trainer": {"numNodes": 2, "resourcesPerNode": {"claims": [{"name": "gpus"}]}}}}
    r = read(tj)
    assert isinstance(r, ReadError) and r.message.startswith("spec.trainer.resourcesPerNode.claims: DRA"), r


def test_empty_dra_claim_lists_are_no_claims() -> None:
    assert demand(pod({"name": "c", "resources": {"claims": [], "limits": {"nvidia.com/gpu": 2}}},
                      resourceClaims=[])).chips == 2


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


def required(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def model_in(key: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}


def test_affinity_terms_are_ored_so_the_hints_are_the_models_of_every_term() -> None:
    aff = required(model_in("nvidia.com/gpu.product", "NVIDIA-A100-SXM4-80GB"),
                   model_in("cloud.google.com/gke-accelerator", "nvidia-h100-80gb"))
    g = demand(pod(c(8), affinity=aff)).groups[0]
    assert g.model_hints == ("NVIDIA-A100-SXM4-80GB", "nvidia-h100-80gb")
    assert g.hint_label == "nvidia.com/gpu.product|cloud.google.com/gke-accelerator"


def test_one_affinity_term_that_leaves_the_model_free_leaves_no_hint() -> None:
    free = {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}
    not_in = {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": ["T4"]}]}
    for other in (free, not_in, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}):
        g = demand(pod(c(8), affinity=required(model_in("nvidia.com/gpu.product", "Tesla-T4"), other))).groups[0]
        assert g.model_hints == () and g.hint_label == "", other


def test_an_empty_affinity_term_matches_no_node_and_opens_no_model() -> None:
    g = demand(pod(c(8), affinity=required({}, model_in("nvidia.com/gpu.product", "Tesla-T4")))).groups[0]
    assert g.model_hints == ("Tesla-T4",)


def test_node_selector_constrains_the_model_even_when_an_affinity_term_leaves_it_free() -> None:
    free = {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}]}
    g = demand(pod(c(8), nodeSelector={"nvidia.com/gpu.product": "Tesla-T4"}, affinity=required(free))).groups[0]
    assert g.model_hints == ("Tesla-T4",) and g.hint_label == "nvidia.com/gpu.product"


def test_job_counts_parallelism_pods() -> None:
    obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
           "spec": {"parallelism": 16, "completions": 64, "template": {"spec": {"containers": [c(8)]}}}}
    assert demand(obj).chips == 128


def job(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {**spec, "template": {"spec": {"containers": [c(8)]}}}}


def test_a_job_runs_no_more_pods_at_once_than_its_completions() -> None:
    assert demand(job(parallelism=16, completions=4)).chips == 4 * 8
    assert demand(job(completions=4)).chips == 1 * 8  # parallelism defaults to 1
    assert demand(job(parallelism=16)).chips == 16 * 8  # no completions: parallelism alone


def test_jobset_inner_jobs_run_no_more_pods_than_their_completions() -> None:
    rj = {"name": "w", "replicas": 4, "template": {"spec": {"parallelism": 8, "completions": 2, "template": {
        "spec": {"containers": [c(4, res="google.com/tpu")]}}}}}
    obj = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "j"},
           "spec": {"replicatedJobs": [rj]}}
    assert demand(obj).chips == 4 * 2 * 4
    bad = read(job(parallelism=2, completions=-1))
    assert isinstance(bad, ReadError) and bad.message.startswith("spec.completions:")


def test_jobset_counts_replicas_times_parallelism() -> None:
    rj = {"name": "w", "replicas": 4, "template": {"spec": {"parallelism": 2, "template": {"spec": {
        "containers": [c(4, res="google.com/tpu")]}}}}}
    obj = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "j"},
           "spec": {"replicatedJobs": [rj, {**rj, "name": "v", "replicas": 1}]}}
    assert demand(obj).chips == 4 * 2 * 4 + 1 * 2 * 4


def raycluster(*groups: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "r"},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "h"}]}}},
                     "workerGroupSpecs": list(groups), **spec}}


def tpu_workers(**wg: Any) -> dict[str, Any]:
    return {"groupName": "g", **wg, "template": {"spec": {"containers": [c(4, res="google.com/tpu")]}}}


def test_ray_worker_groups_count_their_autoscaling_bound_times_hosts() -> None:
    wg = tpu_workers(replicas=2, minReplicas=1, maxReplicas=10, numOfHosts=4)
    d = demand(raycluster(wg, enableInTreeAutoscaling=True))
    assert d.chips == 10 * 4 * 4 and any("autoscaling bound" in n for n in d.notes)


def test_ray_without_autoscaling_runs_replicas_clamped_to_min_and_max_times_hosts() -> None:
    assert demand(raycluster(tpu_workers(replicas=2, minReplicas=1, maxReplicas=10, numOfHosts=4))).chips == 2 * 4 * 4
    assert demand(raycluster(tpu_workers(replicas=1, minReplicas=3, maxReplicas=10))).chips == 3 * 4
    assert demand(raycluster(tpu_workers(replicas=20, minReplicas=1, maxReplicas=10))).chips == 10 * 4
    assert demand(raycluster(tpu_workers(minReplicas=2))).chips == 2 * 4  # replicas defaults to 0


def test_ray_crd_default_max_replicas_is_no_bound_and_no_denial_without_autoscaling() -> None:
    # The API server applies KubeRay's CRD default maxReplicas 2147483647 before the webhook sees the object.
    wg = tpu_workers(replicas=16, minReplicas=0, maxReplicas=2147483647, numOfHosts=2)
    assert demand(raycluster(wg)).chips == 16 * 2 * 4
    rj = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "r"},
          "spec": {"entrypoint": "python t.py", "rayClusterSpec": raycluster(wg)["spec"]}}
    assert demand(rj).chips == 16 * 2 * 4


def test_ray_autoscaling_without_a_max_replicas_is_an_error_saying_to_set_it() -> None:
    for wg in (tpu_workers(replicas=2, maxReplicas=2147483647), tpu_workers(replicas=2)):
        r = read(raycluster(tpu_workers(replicas=1, maxReplicas=4), wg, enableInTreeAutoscaling=True))
        assert isinstance(r, ReadError) and r.message.startswith("spec.workerGroupSpecs[1].maxReplicas:"), r
        assert "set spec.workerGroupSpecs[1].maxReplicas" in r.message
    rj = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "r"}, "spec": {
        "rayClusterSpec": raycluster(tpu_workers(maxReplicas=2147483647), enableInTreeAutoscaling=True)["spec"]}}
    r = read(rj)
    assert isinstance(r, ReadError) and "set spec.rayClusterSpec.workerGroupSpecs[0].maxReplicas" in r.message
    r = read(raycluster(tpu_workers(replicas=1), enableInTreeAutoscaling="yes"))
    assert isinstance(r, ReadError) and r.message.startswith("spec.enableInTreeAutoscaling:")


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


def pytorchjob(workers: dict[str, Any], elastic: dict[str, Any] | None = None,
               kind: str = "PyTorchJob", key: str = "pytorchReplicaSpecs") -> dict[str, Any]:
    return {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": {"name": "p"}, "spec": {
        **({"elasticPolicy": elastic} if elastic is not None else {}),
        key: {"Worker": {**workers, "template": {"spec": {"containers": [c(8)]}}}}}}


def test_an_elastic_pytorchjob_counts_workers_at_the_elastic_max_replicas() -> None:
    d = demand(pytorchjob({"replicas": 2}, {"minReplicas": 1, "maxReplicas": 16}))
    assert d.chips == 16 * 8 and any("elastic bound 16" in n for n in d.notes)
    assert demand(pytorchjob({"replicas": 32}, {"minReplicas": 1, "maxReplicas": 16})).chips == 32 * 8
    assert demand(pytorchjob({"replicas": 2}, {"minReplicas": 4})).chips == 4 * 8  # the HPA keeps at least 4
    assert demand(pytorchjob({"replicas": 2}, kind="PaddleJob", key="paddleReplicaSpecs",
                             elastic={"maxReplicas": 6})).chips == 6 * 8
    # elasticPolicy is a PyTorchJob/PaddleJob field: other kinds do not scale on it.
    assert demand(pytorchjob({"replicas": 2}, kind="TFJob", key="tfReplicaSpecs",
                             elastic={"maxReplicas": 6})).chips == 2 * 8
    r = read(pytorchjob({"replicas": 2}, {"maxReplicas": -1}))
    assert isinstance(r, ReadError) and r.message.startswith("spec.elasticPolicy.maxReplicas:")


def test_mpijob_v2beta1_defaults_missing_worker_replicas_to_zero_and_the_launcher_to_one() -> None:
    tpl = {"spec": {"containers": [c(8)]}}
    obj = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "m"},
           "spec": {"mpiReplicaSpecs": {"Launcher": {"template": tpl}, "Worker": {"template": tpl}}}}
    d = demand(obj)
    assert {g.role: g.pods for g in d.groups} == {"Launcher": 1, "Worker": 0} and d.chips == 8
    obj["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] = 4
    assert demand(obj).chips == 8 + 4 * 8


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
         ("kubeflow.org/v1", "PyTorchJob"), ("kubeflow.org/v1", "PaddleJob"), ("kubeflow.org/v2beta1", "MPIJob"),
         ("trainer.kubeflow.org/v1alpha1", "TrainJob"), ("ray.io/v1", "RayJob"),
         ("ray.io/v1", "RayCluster"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
         ("batch.volcano.sh/v1alpha1", "Job"), ("kueue.x-k8s.io/v1beta1", "Workload")]
KEYS = ["spec", "template", "containers", "initContainers", "resources", "limits", "requests", "nvidia.com/gpu",
        "parallelism", "replicas", "replicatedJobs", "workerGroupSpecs", "podSets", "tasks", "count", "numOfHosts",
        "leaderWorkerTemplate", "size", "trainer", "numNodes", "resourcesPerNode", "pytorchReplicaSpecs",
        "rayClusterSpec", "nodeSelector", "affinity", "metadata", "annotations", "completions", "resourceClaims",
        "claims", "restartPolicy", "elasticPolicy", "maxReplicas", "minReplicas", "enableInTreeAutoscaling",
        "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms", "matchExpressions",
        "mpiReplicaSpecs", "paddleReplicaSpecs", "Worker"]
shaped = st.recursive(
    st.none() | st.integers(-5, 10**8) | st.sampled_from(["8", "-1", "1k", "x", "", "1e3", "500m", "2Ki", "Always",
                                                          "+8", "8.", "1E"]) | st.booleans(),
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
