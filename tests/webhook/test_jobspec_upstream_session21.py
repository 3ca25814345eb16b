"""Session 21: controllers/jobspec.py readers checked against the upstream operators' Go types and defaulting.

Each test cites the upstream file and field it pins. The readers read the object as the API server hands it to a
validating webhook: CRD (OpenAPI) defaults applied, the operator's own Go defaulting (SetDefaults_*) not yet.
"""

from __future__ import annotations

from typing import Any

from controllers.jobspec import Demand, read

GPU = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"


def _demand(obj: Any) -> Demand:
    d = read(obj)
    assert isinstance(d, Demand), d
    return d


def _tpl(gpus: int) -> dict[str, Any]:
    res = {"limits": {GPU: gpus}} if gpus else {}
    return {"spec": {"containers": [{"name": "c", "image": "i", "resources": res}]}}


# ------------------------------------------------------------------------------------- Kubeflow MPIJob v1


def _mpijob(api_version: str, worker: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "MPIJob", "metadata": {"name": "mpi", "namespace": "n"},
            "spec": {"mpiReplicaSpecs": {"Launcher": {"replicas": 1, "template": _tpl(0)},
                                         "Worker": {"template": _tpl(8), **worker}}}}


def test_a_training_operator_v1_mpijob_without_worker_replicas_runs_no_workers() -> None:
    # kubeflow/training-operator release-1.9, pkg/apis/kubeflow.org/v1/mpi_defaults.go, SetDefaults_MPIJob:
    #   setDefaultReplicas(mpiJob.Spec.MPIReplicaSpecs[MPIJobReplicaTypeLauncher], 1)
    #   setDefaultReplicas(mpiJob.Spec.MPIReplicaSpecs[MPIJobReplicaTypeWorker], 0)
    # The kubeflow.org/v1 MPIJob (the one the training operator serves) defaults a missing Worker replicas to 0,
    # like mpi-operator's v2beta1 (pkg/apis/kubeflow/v2beta1/default.go setDefaultsTypeWorker). The reader applies
    # the 0 only to kubeflow.org/v2beta1 and counts one 8-GPU worker here.
    d = _demand(_mpijob("kubeflow.org/v1", {}))
    assert d.chips == 0, [(g.role, g.pods, g.chips) for g in d.groups]


def test_a_v1_mpijob_counts_the_worker_replicas_it_sets() -> None:
    # Guard for the fix above: only an absent replicas is 0; a set one is counted as before.
    assert _demand(_mpijob("kubeflow.org/v1", {"replicas": 4})).chips == 32


def test_other_training_operator_v1_kinds_still_default_worker_replicas_to_one() -> None:
    # kubeflow/training-operator release-1.9 pkg/apis/kubeflow.org/v1/{pytorch,tensorflow,xgboost,jax,paddlepaddle}
    # _defaults.go: setDefaultReplicas(spec, 1) for every replica type; only MPIJob's Worker defaults to 0.
    obj = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "pt", "namespace": "n"},
           "spec": {"pytorchReplicaSpecs": {"Worker": {"template": _tpl(8)}}}}
    assert _demand(obj).chips == 8


# ------------------------------------------------------------------------------- Trainer v2.2+ runtimePatches


def _trainjob(patches: Any) -> dict[str, Any]:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "tj", "namespace": "tenant-ae"},
            "spec": {"runtimeRef": {"name": "torch-distributed"},
                     "trainer": {"numNodes": 4, "resourcesPerNode": {"limits": {GPU: 8}}},
                     "runtimePatches": patches}}


def _patch(job: str, pod_spec: dict[str, Any], manager: str = "example.com/user") -> dict[str, Any]:
    # kubeflow/trainer v2.2.0+ pkg/apis/trainer/v1alpha1/trainjob_types.go: TrainJobSpec.RuntimePatches
    # []RuntimePatch `json:"runtimePatches"`; RuntimePatch{manager, time, trainingRuntimeSpec:
    # TrainingRuntimeSpecPatch{template: JobSetTemplatePatch{metadata, spec: JobSetSpecPatch{replicatedJobs:
    # []ReplicatedJobPatch{name, template: JobTemplatePatch{metadata, spec: JobSpecPatch{template:
    # PodTemplatePatch{metadata, spec: PodSpecPatch{..., nodeSelector, affinity, tolerations, ...}}}}}}}}}.
    return {"manager": manager, "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [
        {"name": job, "template": {"spec": {"template": {"spec": pod_spec}}}}]}}}}


def _hints(obj: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    d = _demand(obj)
    (g,) = d.groups
    assert (g.pods, g.chips) == (4, 8)
    return g.hint_label, g.model_hints


def test_a_runtime_patch_of_the_node_job_names_the_chip_model() -> None:
    # Trainer v2.2.0 replaced spec.podTemplateOverrides (v2.1.0) with spec.runtimePatches (the v2.2.0 and v2.3.0
    # trainjob_types.go have no podTemplateOverrides field, so the API server prunes or refuses it). The training
    # nodes are the replicated job named "node" (pkg/constants/constants.go: Node string = "node"). The reader
    # reads only podTemplateOverrides/podSpecOverrides, so on a current Trainer the model the job pins is lost and
    # the most capable chip counts instead.
    label, hints = _hints(_trainjob([_patch("node", {"nodeSelector": {PRODUCT: H100}})]))
    assert (label, hints) == (PRODUCT, (H100,))


def test_a_runtime_patch_by_required_node_affinity_names_the_chip_models() -> None:
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "In",
                               "values": ["nvidia-h100-80gb", "nvidia-a100-80gb"]}]}]}}}
    _label, hints = _hints(_trainjob([_patch("node", {"affinity": aff})]))
    assert hints == ("nvidia-h100-80gb", "nvidia-a100-80gb")


def test_runtime_patches_of_the_node_job_from_several_managers_name_their_models_together() -> None:
    # runtimePatches is a list keyed by manager (a user's and Kueue's "kueue.x-k8s.io/manager" side by side): as
    # for podTemplateOverrides, the pods land on one of the models the patches name.
    _label, hints = _hints(_trainjob([
        _patch("node", {"nodeSelector": {PRODUCT: A100}}),
        _patch("node", {"nodeSelector": {PRODUCT: H100}}, manager="kueue.x-k8s.io/manager"),
    ]))
    assert hints == (A100, H100)


def test_a_runtime_patch_of_another_job_leaves_the_model_free() -> None:
    # Guard: an initializer's pods are not the training nodes resourcesPerNode sizes.
    assert _hints(_trainjob([_patch("dataset-initializer", {"nodeSelector": {PRODUCT: "NVIDIA-A10G"}})])) == ("", ())


def test_a_malformed_runtime_patch_is_an_error_naming_the_field() -> None:
    obj = _trainjob([{"manager": "m", "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": "node"}}}}])
    d = read(obj)
    assert not isinstance(d, Demand)
    assert "spec.runtimePatches[0].trainingRuntimeSpec.template.spec.replicatedJobs" in d.message
