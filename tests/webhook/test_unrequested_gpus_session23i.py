"""Session 23 (i): a pod that reaches its node's accelerators without requesting them is counted as the whole node.

A container can use every GPU of its node without asking the scheduler for one: ``NVIDIA_VISIBLE_DEVICES=all``
under the NVIDIA runtime (the toolkit honours it for unprivileged containers unless
``accept-nvidia-visible-devices-envvar-when-unprivileged`` is false), ``securityContext.privileged: true``, a
``hostPath`` of the device nodes, or a ``cdi.k8s.io/`` annotation. Counted by its requests alone such a training job
was 0 chips and admitted as "no accelerators requested" whatever it ran.
"""

from __future__ import annotations

from typing import Any

import pytest

from controllers.jobspec import WHOLE_NODE_RESOURCE, Demand, PodGroup, ReadError, read

from .conftest import M


def _pod(container: dict[str, Any] | None = None, *, volumes: list[dict[str, Any]] | None = None,
         annotations: dict[str, str] | None = None, limits: dict[str, Any] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": "train", "image": "nvcr.io/nvidia/pytorch:24.05-py3", **(container or {})}
    if limits:
        c["resources"] = {"limits": limits}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [c]}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "frontier", "namespace": "tenant-ae", "annotations": dict(annotations or {})},
            "spec": spec}


def _groups(obj: dict[str, Any]) -> list[PodGroup]:
    d = read(obj)
    assert isinstance(d, Demand), d
    return list(d.groups)


def _env(value: str) -> dict[str, Any]:
    return {"env": [{"name": "NCCL_DEBUG", "value": "INFO"}, {"name": "NVIDIA_VISIBLE_DEVICES", "value": value}]}


def test_tier2_training_pod_with_nvidia_visible_devices_all_counts_a_whole_node() -> None:
    d = read(_pod(_env("all")))
    assert isinstance(d, Demand)
    [g] = d.groups
    assert g.whole_node.startswith("spec.containers[0].env[1] NVIDIA_VISIBLE_DEVICES=all reaches the node's GPUs")
    assert g.resource == "nvidia.com/gpu" and g.chips >= 1  # the node's size is the inventory's (agent.cases)


def test_visible_devices_listing_four_gpus_counts_at_least_four() -> None:
    [g] = _groups(_pod(_env("0,1,2,3")))
    assert g.whole_node and g.chips == 4


@pytest.mark.parametrize("value", ["void", "none", "", "VOID"])
def test_visible_devices_none_is_not_accelerator_access(value: str) -> None:
    assert _groups(_pod(_env(value))) == []


def test_visible_devices_from_a_config_map_counts_a_whole_node() -> None:
    # The value is not in the spec: it may name every GPU.
    env = {"env": [{"name": "NVIDIA_VISIBLE_DEVICES",
                    "valueFrom": {"configMapKeyRef": {"name": "gpus", "key": "visible"}}}]}
    [g] = _groups(_pod(env))
    assert g.whole_node and "not visible at admission" in g.whole_node


def test_privileged_training_pod_counts_a_whole_node() -> None:
    [g] = _groups(_pod({"securityContext": {"privileged": True}}))
    # A privileged container sees every device of whatever node it lands on: any vendor's.
    assert g.resource == WHOLE_NODE_RESOURCE
    assert g.whole_node.startswith("spec.containers[0].securityContext.privileged true")


def test_privileged_pod_that_also_requests_one_gpu_counts_the_node_not_one_plus_the_node() -> None:
    [g] = _groups(_pod({"securityContext": {"privileged": True}}, limits={"nvidia.com/gpu": 2}))
    assert g.whole_node and g.resource == "nvidia.com/gpu" and g.chips == 2


@pytest.mark.parametrize(("path", "resource"), [
    ("/dev/nvidia0", "nvidia.com/gpu"), ("/dev", WHOLE_NODE_RESOURCE), ("/dev/kfd", "amd.com/gpu"),
    ("/dev/neuron0", "aws.amazon.com/neuron"), ("/dev/accel", WHOLE_NODE_RESOURCE), ("/dev/dri/", WHOLE_NODE_RESOURCE)])
def test_dev_nvidia_hostpath_counts_a_whole_node(path: str, resource: str) -> None:
    vols = [{"name": "scratch", "emptyDir": {}}, {"name": "gpus", "hostPath": {"path": path}}]
    [g] = _groups(_pod(volumes=vols))
    assert g.resource == resource and g.whole_node.startswith("spec.volumes[1].hostPath.path")


def test_other_host_paths_are_not_accelerators() -> None:
    vols = [{"name": "data", "hostPath": {"path": "/mnt/data"}}, {"name": "d", "hostPath": {"path": "/dev/drives"}},
            {"name": "shm", "hostPath": {"path": "/dev/shm"}}]
    assert _groups(_pod(volumes=vols)) == []


def test_a_cdi_annotation_injecting_gpus_counts_a_whole_node() -> None:
    [g] = _groups(_pod(annotations={"cdi.k8s.io/train": "nvidia.com/gpu=all"}))
    assert g.resource == "nvidia.com/gpu" and g.whole_node.startswith("metadata.annotations[cdi.k8s.io/train]")
    assert _groups(_pod(annotations={"cdi.k8s.io/net": "example.com/net=eth1"})) == []


def test_a_job_template_reaching_gpus_counts_every_pod_as_a_node() -> None:
    pod = _pod(_env("all"))
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "frontier", "namespace": "tenant-ae", "annotations": {M + "model": "f"}},
           "spec": {"parallelism": 64, "template": {"spec": pod["spec"]}}}
    [g] = _groups(job)
    assert g.pods == 64 and g.whole_node.startswith("spec.template.spec.containers[0].env[1]")


def test_a_dra_claim_for_gpus_is_refused_not_counted_as_zero() -> None:
    # DRA: the devices are in a ResourceClaimTemplate the webhook does not read.
    pod = _pod({"resources": {"claims": [{"name": "gpus"}]}})
    pod["spec"]["resourceClaims"] = [{"name": "gpus", "resourceClaimTemplateName": "eight-h100"}]
    d = read(pod)
    assert isinstance(d, ReadError) and "spec.resourceClaims" in d.message
