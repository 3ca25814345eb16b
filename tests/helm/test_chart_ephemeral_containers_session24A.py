"""Session 24 (A): the chart sends `kubectl debug` ephemeral containers that reach their node's GPUs.

An ephemeral container is added through the ``pods/ephemeralcontainers`` subresource, which only a rule naming it
matches (a plain ``pods`` rule never sees it). With ``webhook.unrequestedAccess`` on, the pods webhook lists it, and
its ``requests-accelerators`` matchCondition looks at ``spec.ephemeralContainers`` as it does at the containers
(privileged, NVIDIA_VISIBLE_DEVICES naming devices). ``spec-changed`` still skips a write that changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import kubernetes_validate
import pytest

from tests.helm.chart import render, render_set

SYSADMIN_DEBUG = {"name": "debugger-7x2k", "image": "busybox:1.36", "securityContext": {"privileged": True}}
JOB_CONTROLLER = "system:serviceaccount:kube-system:job-controller"


def _configs(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    objs = render(values) if values is not None else list(render_set("default"))
    return [o for o in objs if o["kind"] == "ValidatingWebhookConfiguration"]


def _webhook(prefix: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    (wh,) = [w for c in _configs(values) for w in c["webhooks"] if w["name"] == f"{prefix}.veu-governor.io"]
    return wh


def _sent(webhook: dict[str, Any], old: dict[str, Any], new: dict[str, Any], user: str = "alice@example.com") -> bool:
    """All matchConditions true for an UPDATE of pods/ephemeralcontainers: the API server calls the webhook."""
    env = celpy.Environment()
    act = {"object": celpy.json_to_cel(new), "oldObject": celpy.json_to_cel(old),
           "request": celpy.json_to_cel({"operation": "UPDATE", "subResource": "ephemeralcontainers",
                                         "userInfo": {"username": user}})}
    for cond in webhook["matchConditions"]:
        result = env.program(env.compile(cond["expression"])).evaluate(act)
        assert isinstance(result, celpy.celtypes.BoolType), (cond["name"], result)
        if not result:
            return False
    return True


def _pod(container: dict[str, Any] | None = None, owner: str = "") -> dict[str, Any]:
    md: dict[str, Any] = {"name": "notebook-0", "namespace": "tenant-ae"}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": owner, "name": "j", "uid": "u", "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"containers": [{"name": "c", "image": "train:1", **(container or {})}]}}


def _debugged(pod: dict[str, Any], ephemeral: dict[str, Any] | None = None) -> dict[str, Any]:
    new = copy.deepcopy(pod)
    new["spec"]["ephemeralContainers"] = [ephemeral or SYSADMIN_DEBUG]
    return new


def test_the_pods_webhook_matches_the_ephemeralcontainers_subresource() -> None:
    (rule,) = _webhook("pods")["rules"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"]
    assert rule["operations"] == ["CREATE", "UPDATE"]


def test_a_privileged_debug_container_on_a_cpu_pod_is_sent() -> None:
    pod = _pod()
    assert _sent(_webhook("pods"), pod, _debugged(pod))


@pytest.mark.parametrize("entry", [{"value": "all"}, {"value": "GPU-5e0b7d4c"},
                                   {"valueFrom": {"configMapKeyRef": {"name": "gpus", "key": "visible"}}}],
                         ids=["all", "uuid", "valueFrom"])
def test_a_debug_container_naming_gpus_in_nvidia_visible_devices_is_sent(entry: dict[str, Any]) -> None:
    pod = _pod()
    dbg = {"name": "dbg", "image": "cuda:12", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", **entry}]}
    assert _sent(_webhook("pods"), pod, _debugged(pod, dbg))


def test_an_ordinary_debug_container_on_a_cpu_pod_is_not_sent() -> None:
    pod = _pod()
    assert not _sent(_webhook("pods"), pod, _debugged(pod, {"name": "dbg", "image": "busybox:1.36"}))
    none = {"name": "dbg", "image": "busybox", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]}
    assert not _sent(_webhook("pods"), pod, _debugged(pod, none))


def test_a_job_pod_debugged_by_a_user_is_sent_though_its_job_was_counted() -> None:
    # The Job's pods are counted at the Job and not sent when its controller creates them; the debug container is
    # the user's, reaching more than the Job asked for.
    pod = _pod({"resources": {"limits": {"nvidia.com/gpu": 1}}}, owner="Job")
    assert _sent(_webhook("pods"), pod, _debugged(pod))


def test_a_write_that_changes_nothing_is_not_sent() -> None:
    pod = _debugged(_pod())
    assert not _sent(_webhook("pods"), pod, copy.deepcopy(pod))


def test_turning_unrequested_access_off_leaves_the_subresource_out() -> None:
    (rule,) = _webhook("pods", {"webhook": {"unrequestedAccess": False}})["rules"]
    assert rule["resources"] == ["pods"]


def test_the_webhook_configuration_is_valid_for_every_supported_kubernetes() -> None:
    for cfg in _configs():
        for version in ("1.30", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(cfg, version, strict=True)
