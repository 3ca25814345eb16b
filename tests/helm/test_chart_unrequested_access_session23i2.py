"""Session 23 (i2): the chart sends pod specs that reach their node's GPUs without requesting them.

The webhook counts a pod that is privileged, sets NVIDIA_VISIBLE_DEVICES to devices, mounts the host's /dev or
carries a cdi.k8s.io/ annotation as using the whole node (controllers.jobspec.unrequested_access). The API server
only calls it for what the ``requests-accelerators`` matchCondition lets through: without these tests in it, such a
training job never reached the webhook at all. ``webhook.unrequestedAccess: false`` takes them out again.
"""

from __future__ import annotations

from typing import Any

import celpy
import pytest
import yaml

from tests.helm.chart import CHART, render, render_set


def _webhook(prefix: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    objs = render(values) if values is not None else render_set("default")
    whs = [w for o in objs if o["kind"] == "ValidatingWebhookConfiguration" for w in o["webhooks"]]
    (wh,) = [w for w in whs if w["name"] == f"{prefix}.veu-governor.io"]
    return wh


def _sent(webhook: dict[str, Any], obj: dict[str, Any], user: str = "alice@example.com") -> bool:
    """All matchConditions true: the API server calls the webhook."""
    env = celpy.Environment()
    act = {"object": celpy.json_to_cel(obj), "oldObject": celpy.json_to_cel(None),
           "request": celpy.json_to_cel({"operation": "CREATE", "userInfo": {"username": user}})}
    for cond in webhook["matchConditions"]:
        result = env.program(env.compile(cond["expression"])).evaluate(act)
        assert isinstance(result, celpy.celtypes.BoolType), (cond["name"], result)
        if not result:
            return False
    return True


def _spec(container: dict[str, Any] | None = None, *, init: bool = False,
          volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    c = {"name": "c", "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.1.1", **(container or {})}
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if init:
        spec["initContainers"] = [c]
    else:
        spec["containers"].append(c)
    if volumes:
        spec["volumes"] = volumes
    return spec


def _daemonset_pod(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod the daemon-set controller creates: DaemonSets are not counted at their owner, so their pods are sent."""
    md: dict[str, Any] = {"name": "dcgm-exporter-x7k2p", "namespace": "gpu-operator",
                          "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "dcgm-exporter",
                                               "uid": "u1", "controller": True}]}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def _job(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    tpl: dict[str, Any] = {"spec": {"restartPolicy": "Never", **spec}}
    if annotations:
        tpl["metadata"] = {"annotations": annotations}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "tenant-ae"},
            "spec": {"parallelism": 64, "template": tpl}}


DS_USER = "system:serviceaccount:kube-system:daemon-set-controller"
PRIVILEGED = {"securityContext": {"privileged": True}}


def _env(**entry: Any) -> dict[str, Any]:
    return {"env": [{"name": "LANG", "value": "C"}, {"name": "NVIDIA_VISIBLE_DEVICES", **entry}]}


def test_a_privileged_daemonset_pod_is_sent_to_the_webhook() -> None:
    assert _sent(_webhook("pods"), _daemonset_pod(_spec(PRIVILEGED)), user=DS_USER)


def test_a_plain_cpu_pod_is_not_sent_so_an_outage_cannot_block_it() -> None:
    wh = _webhook("pods")
    assert not _sent(wh, _daemonset_pod(_spec()), user=DS_USER)
    assert not _sent(wh, _daemonset_pod(_spec({"securityContext": {"privileged": False, "runAsNonRoot": True}})))
    assert not _sent(wh, _daemonset_pod(_spec(volumes=[{"name": "d", "hostPath": {"path": "/var/log"}}])))
    assert not _sent(wh, _daemonset_pod(_spec(), annotations={"prometheus.io/scrape": "true"}))


@pytest.mark.parametrize("value", ["void", "none", ""])
def test_nvidia_visible_devices_naming_no_device_is_not_sent(value: str) -> None:
    assert not _sent(_webhook("pods"), _daemonset_pod(_spec(_env(value=value))))
    assert not _sent(_webhook("jobs"), _job(_spec(_env(value=value))))


@pytest.mark.parametrize("entry", [{"value": "all"}, {"value": "0,1,2,3"},
                                   {"valueFrom": {"configMapKeyRef": {"name": "gpus", "key": "visible"}}}],
                         ids=["all", "indices", "valueFrom"])
def test_nvidia_visible_devices_naming_devices_is_sent_from_a_container_or_an_init_container(
        entry: dict[str, Any]) -> None:
    assert _sent(_webhook("pods"), _daemonset_pod(_spec(_env(**entry))))
    assert _sent(_webhook("jobs"), _job(_spec(_env(**entry), init=True)))
    assert _sent(_webhook("workloads"), {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "metadata": {"name": "d", "namespace": "t"},
                                         "spec": {"replicas": 2, "template": {"spec": _spec(_env(**entry))}}})


@pytest.mark.parametrize("path", ["/", "/dev", "/dev/nvidia0", "/dev/dri", "/dev/kfd",
                                  # Spellings of the same paths the kubelet mounts (only ".." is refused)
                                  "//dev", "//dev/nvidia0", "/./dev", "/.", "//", "/dev/"])
def test_a_hostpath_of_the_device_nodes_is_sent(path: str) -> None:
    vols = [{"name": "scratch", "emptyDir": {}}, {"name": "d", "hostPath": {"path": path}}]
    assert _sent(_webhook("jobs"), _job(_spec(volumes=vols)))
    assert _sent(_webhook("pods"), _daemonset_pod(_spec(volumes=vols)))


def test_a_privileged_job_template_is_sent() -> None:
    assert _sent(_webhook("jobs"), _job(_spec(PRIVILEGED)))
    assert _sent(_webhook("jobs"), _job(_spec(PRIVILEGED, init=True)))


def test_a_cdi_annotation_on_a_pod_or_a_template_is_sent() -> None:
    cdi = {"cdi.k8s.io/train": "nvidia.com/gpu=all"}
    assert _sent(_webhook("pods"), _daemonset_pod(_spec(), annotations=cdi))
    assert _sent(_webhook("jobs"), _job(_spec(), annotations=cdi))
    # A Job's own annotations are not its pods': only the template's inject devices.
    job = _job(_spec())
    job["metadata"]["annotations"] = cdi
    assert not _sent(_webhook("jobs"), job)


def test_requests_are_still_sent_and_a_trusted_controllers_job_pods_still_are_not() -> None:
    wh = _webhook("pods")
    gpu = _daemonset_pod(_spec({"resources": {"limits": {"nvidia.com/gpu": 1}}}))
    assert _sent(wh, gpu, user=DS_USER)
    owned = _daemonset_pod(_spec(PRIVILEGED))
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u",
                                             "controller": True}]
    assert not _sent(wh, owned, user="system:serviceaccount:kube-system:job-controller")


def test_an_operator_can_turn_unrequested_access_off() -> None:
    values = {"webhook": {"unrequestedAccess": False}}
    assert not _sent(_webhook("pods", values), _daemonset_pod(_spec(PRIVILEGED)), user=DS_USER)
    assert not _sent(_webhook("jobs", values), _job(_spec(_env(value="all"))))
    assert _sent(_webhook("jobs", values), _job(_spec({"resources": {"limits": {"nvidia.com/gpu": 8}}})))


def test_the_value_is_documented_and_schema_checked() -> None:
    assert yaml.safe_load((CHART / "values.yaml").read_text())["webhook"]["unrequestedAccess"] is True
    assert "webhook.unrequestedAccess" in (CHART / "README.md").read_text()
    with pytest.raises(Exception, match="unrequestedAccess"):
        render({"webhook": {"unrequestedAccess": "yes"}})
