"""QA session 21d: the last values the chart copies into objects unchecked, and the controllers' scheduling.

`<component>.resources.requests` / `.limits` took any key and any value, so `webhook.resources.requests.memroy` or
`api.resources.limits.memory: "512 MB"` rendered and passed kubernetes-validate (a ResourceList is a free map), and
only the API server refused the Deployment, mid-install (after the pre-install migration hook had run), naming the
pod template instead of the value. `ingress.hosts[]` and their `paths[]` took any extra key (`servicePort`, `tsl`),
silently dropped. values.schema.json now refuses both, naming the field; every spelling Kubernetes accepts still
renders and validates.

The controllers Deployment takes the agent's scheduling values (it runs under the agent's account and the agent's
priorityClassName, nodeSelector and tolerations), but not `agent.affinity`: a node affinity keeping the agent off
GPU nodes did not keep the controllers off them.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.helm.chart import CHART, one, render

RESOURCE_OWNERS = ("webhook", "agent", "api", "controllers", "migrations")


def _refused(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    return str(err.value)


@pytest.mark.parametrize("owner", RESOURCE_OWNERS)
@pytest.mark.parametrize("which", ["requests", "limits"])
def test_a_misspelt_resource_name_is_refused_naming_it(owner: str, which: str) -> None:
    message = _refused({owner: {"resources": {which: {"cpu": "50m", "memroy": "128Mi"}}}})
    assert f"/{owner}/resources/{which}" in message and "memroy" in message, message


@pytest.mark.parametrize("quantity", ["512 MB", "1.5.2Gi", "lots", True, "-", "1e1.5"])
def test_a_malformed_quantity_is_refused_naming_it(quantity: Any) -> None:
    message = _refused({"api": {"resources": {"limits": {"memory": quantity}}}})
    assert "/api/resources/limits/memory" in message, message


@pytest.mark.parametrize(("values", "field", "typo"), [
    ({"ingress": {"hosts": [{"host": "a.example", "paths": [{"path": "/", "pathType": "Prefix"}], "tsl": True}]}},
     "/ingress/hosts/0", "tsl"),
    ({"ingress": {"hosts": [{"host": "a.example",
                             "paths": [{"path": "/", "pathType": "Prefix", "servicePort": 443}]}]}},
     "/ingress/hosts/0/paths/0", "servicePort"),
])
def test_a_misspelt_ingress_host_field_is_refused_naming_it(values: dict[str, Any], field: str, typo: str) -> None:
    message = _refused(values)
    assert field in message and typo in message, message


def test_every_resource_spelling_kubernetes_accepts_still_renders_and_validates() -> None:
    resources = {"requests": {"cpu": "0.5", "memory": "256Mi", "ephemeral-storage": "1G", "hugepages-2Mi": "0"},
                 "limits": {"cpu": 2, "memory": "5e8", "ephemeral-storage": "2Gi", "example.com/widget": 1}}
    values: dict[str, Any] = {owner: {"resources": resources} for owner in RESOURCE_OWNERS}
    values["ingress"] = {"enabled": True, "className": "nginx",
                         "hosts": [{"host": "a.example", "paths": [{"path": "/", "pathType": "Prefix"}]}]}
    objs = render(values)
    for obj in objs:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    pod = one(objs, "Deployment", "-api")["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == resources


def test_the_controllers_follow_the_agents_affinity_as_they_follow_its_node_selector() -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}]}]}}}
    objs = render({"agent": {"affinity": affinity, "nodeSelector": {"pool": "system"}}})
    for suffix in ("-agent", "-controllers"):
        pod = one(objs, "Deployment", suffix)["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"pool": "system"}, suffix
        assert pod.get("affinity") == affinity, suffix


def test_a_plus_signed_quantity_is_taken_as_kubernetes_takes_it() -> None:
    objs = render({"api": {"resources": {"limits": {"memory": "+1Gi"}}}})
    assert objs


def test_the_controllers_do_not_take_the_agents_pod_anti_affinity() -> None:
    """The agent's pod anti-affinity selects agent pods: copied, it kept the controllers pod off every agent node
    (Pending on a two-node pool, metering stopped)."""
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}
    anti = {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "agent"}},
        "topologyKey": "kubernetes.io/hostname"}]}
    objs = render({"agent": {"affinity": {"nodeAffinity": node, "podAntiAffinity": anti}}})
    pod = one(objs, "Deployment", "-controllers")["spec"]["template"]["spec"]
    assert pod.get("affinity") == {"nodeAffinity": node}
