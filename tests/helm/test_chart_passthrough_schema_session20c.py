"""QA session 20c: values passed through to Kubernetes objects refuse keys Kubernetes does not have.

`podSecurityContext`, `securityContext`, `<component>.tolerations` (and the other objects the chart copies into a pod
spec or a NetworkPolicy unchanged) took any keys, so a typo such as `podSecurityContext.runAsUsr` rendered silently
(and the API server then drops the unknown field, leaving the pod without the setting). values.schema.json now
lists the Kubernetes field names (core/v1 PodSecurityContext, SecurityContext, Toleration, Affinity,
LocalObjectReference, EnvVarSource; networking/v1 NetworkPolicyPeer, IngressTLS), so `helm install` refuses the
typo naming the field; every spelling Kubernetes accepts still renders and validates.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.helm.chart import CHART, of_kind, pod_specs, render

COMPONENTS = ("webhook", "agent", "api")


def _refused(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    return str(err.value)


@pytest.mark.parametrize(("values", "field", "typo"), [
    ({"podSecurityContext": {"runAsNonRoot": True, "runAsUsr": 10001}}, "/podSecurityContext", "runAsUsr"),
    ({"podSecurityContext": {"runAsNonRoot": True, "seccompProfile": {"typ": "RuntimeDefault"}}},
     "/podSecurityContext/seccompProfile", "typ"),
    ({"podSecurityContext": {"runAsNonRoot": True, "sysctls": [{"name": "net.core.somaxconn", "val": "1"}]}},
     "/podSecurityContext/sysctls/0", "val"),
    ({"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                          "capabilities": {"drop": ["ALL"], "remove": ["NET_RAW"]}}},
     "/securityContext/capabilities", "remove"),
    ({"securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsUsr": 1}},
     "/securityContext", "runAsUsr"),
    *[({c: {"tolerations": [{"key": "gpu", "operater": "Exists"}]}}, f"/{c}/tolerations/0", "operater")
      for c in COMPONENTS],
    *[({c: {"affinity": {"nodeAfinity": {}}}}, f"/{c}/affinity", "nodeAfinity") for c in COMPONENTS],
    ({"imagePullSecrets": [{"nmae": "regcred"}]}, "/imagePullSecrets/0", "nmae"),
    ({"networkPolicy": {"apiIngressFrom": [{"podSelectr": {}}]}}, "/networkPolicy/apiIngressFrom/0", "podSelectr"),
    ({"ingress": {"tls": [{"hosts": ["a.example"], "secretname": "x"}]}}, "/ingress/tls/0", "secretname"),
    ({"tls": {"certManager": {"issuerRef": {"nmae": "ca"}}}}, "/tls/certManager/issuerRef", "nmae"),
    ({"api": {"extraEnv": [{"name": "X", "valueFrom": {"secretKeyRf": {"name": "s", "key": "k"}}}]}},
     "/api/extraEnv/0/valueFrom", "secretKeyRf"),
])
def test_a_misspelt_kubernetes_field_is_refused_naming_it(values: dict[str, Any], field: str, typo: str) -> None:
    message = _refused(values)
    assert field in message and typo in message, message


@pytest.mark.parametrize(("values", "field"), [
    ({"webhook": {"tolerations": [{"key": "gpu", "operator": "Sometimes"}]}}, "/webhook/tolerations/0/operator"),
    ({"webhook": {"tolerations": [{"key": "gpu", "effect": "NoSchedul"}]}}, "/webhook/tolerations/0/effect"),
    ({"podSecurityContext": {"runAsNonRoot": True, "fsGroupChangePolicy": "Sometimes"}},
     "/podSecurityContext/fsGroupChangePolicy"),
])
def test_a_kubernetes_enum_value_out_of_its_set_is_refused(values: dict[str, Any], field: str) -> None:
    assert field in _refused(values)


FULL_POD_CONTEXT = {
    "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
    "fsGroupChangePolicy": "OnRootMismatch", "supplementalGroups": [10002], "supplementalGroupsPolicy": "Merge",
    "seccompProfile": {"type": "RuntimeDefault"}, "appArmorProfile": {"type": "RuntimeDefault"},
    "seLinuxOptions": {"level": "s0:c123,c456"}, "seLinuxChangePolicy": "MountOption",
    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
}
TOLERATIONS = [
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "dedicated", "operator": "Equal", "value": "control", "effect": "NoExecute", "tolerationSeconds": 300},
]


def test_every_kubernetes_field_still_renders_and_validates() -> None:
    values = {
        "podSecurityContext": FULL_POD_CONTEXT,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
                            "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True, "runAsUser": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}, "procMount": "Default"},
        **{c: {"tolerations": TOLERATIONS,
               "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                   {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                     "labelSelector": {"matchLabels": {"a": "b"}}}}]}}}
           for c in COMPONENTS},
        "imagePullSecrets": [{"name": "regcred"}],
        "networkPolicy": {"apiIngressFrom": [{"ipBlock": {"cidr": "10.0.0.0/8"}},
                                             {"namespaceSelector": {"matchLabels": {"x": "y"}},
                                              "podSelector": {"matchLabels": {"app": "prom"}}}]},
        "ingress": {"enabled": True, "tls": [{"hosts": ["veu.example.com"], "secretName": "veu-tls"}]},
    }
    objs = render(values)
    specs = dict(pod_specs(objs))
    webhook = next(s for name, s in specs.items() if name.startswith("Deployment/") and name.endswith("-webhook"))
    assert webhook["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert webhook["tolerations"] == TOLERATIONS
    for obj in objs:
        if obj["kind"] in {"Certificate", "Issuer", "ServiceMonitor"}:
            continue
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    assert of_kind(objs, "Ingress")[0]["spec"]["tls"] == values["ingress"]["tls"]
