"""Session 20 QA: a TrainJob's podTemplateOverrides name the chip model of its training nodes (Trainer v2 API,
``PodTemplateOverride{targetJobs, metadata, spec: {nodeSelector, affinity, ...}}``)."""

from __future__ import annotations

from typing import Any

from controllers.jobspec import Demand, ReadError, read

H100 = "NVIDIA-H100-80GB-HBM3"
GPU = "nvidia.com/gpu.product"


def _trainjob(overrides: Any) -> dict[str, Any]:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "tj", "namespace": "tenant-ae"},
            "spec": {"runtimeRef": {"name": "torch-distributed"},
                     "trainer": {"numNodes": 4, "resourcesPerNode": {"limits": {"nvidia.com/gpu": 8}}},
                     "podTemplateOverrides": overrides}}


def _hints(obj: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    d = read(obj)
    assert isinstance(d, Demand), d
    (g,) = d.groups
    assert g.pods == 4 and g.chips == 8
    return g.hint_label, g.model_hints


def test_an_override_of_the_node_job_names_the_chip_model() -> None:
    label, hints = _hints(_trainjob([{"targetJobs": [{"name": "node"}],
                                      "spec": {"nodeSelector": {"nvidia.com/gpu.product": H100}}}]))
    assert label == "nvidia.com/gpu.product" and hints == (H100,)


def test_an_override_by_required_node_affinity_names_the_chip_models() -> None:
    aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "In",
                               "values": ["nvidia-h100-80gb", "nvidia-a100-80gb"]}]}]}}}
    _label, hints = _hints(_trainjob([{"targetJobs": [{"name": "node"}], "spec": {"affinity": aff}}]))
    assert hints == ("nvidia-h100-80gb", "nvidia-a100-80gb")


def test_overrides_of_the_node_job_name_their_models_together() -> None:
    # Merged or replaced by a later one, the pods land on one of the models they name: the most capable counts.
    _label, hints = _hints(_trainjob([
        {"targetJobs": [{"name": "node"}], "spec": {"nodeSelector": {GPU: "NVIDIA-A100-SXM4-80GB"}}},
        {"targetJobs": [{"name": "node"}], "spec": {"nodeSelector": {GPU: H100}}},
    ]))
    assert hints == ("NVIDIA-A100-SXM4-80GB", H100)


def test_an_override_of_another_job_leaves_the_model_free() -> None:
    # The initializers' pods are not the training nodes whose chips resourcesPerNode asks for.
    assert _hints(_trainjob([{"targetJobs": [{"name": "dataset-initializer"}],
                              "spec": {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A10G"}}}])) == ("", ())


def test_no_overrides_leave_the_model_free() -> None:
    assert _hints(_trainjob(None)) == ("", ())


def test_a_malformed_override_is_an_error_naming_the_field() -> None:
    d = read(_trainjob([{"targetJobs": [{"name": "node"}], "spec": {"nodeSelector": ["x"]}}]))
    assert isinstance(d, ReadError) and "spec.podTemplateOverrides[0].spec.nodeSelector" in d.message
    d = read(_trainjob({"node": {}}))
    assert isinstance(d, ReadError) and "spec.podTemplateOverrides" in d.message


def test_trainer_v2_0_pod_spec_overrides_name_the_chip_model_too() -> None:
    tj = _trainjob(None)
    tj["spec"]["podSpecOverrides"] = [{"targetJobs": [{"name": "node"}], "nodeSelector": {GPU: H100}}]
    assert _hints(tj) == ("nvidia.com/gpu.product", (H100,))
