"""Session 22l: chart follow-ups (collector keys, the API's disruption budget, the webhook timeout warning).

`agent.collectors` checked only the section names (aws, gcp, k8s, nvml, csv), so `agent.collectors.k8s.clusterz` or
`...clusters[0].incluster` installed fine and the agent pods then crash-looped at start (`collectors.k8s.clusterz:
Extra inputs are not permitted`), long after `helm install` had reported success. values.schema.json now describes
each section as the agent's config models do (extra="forbid"), so Helm refuses the typo naming it; every key the
agent accepts still renders and loads.

The API Deployment (2 replicas) had no PodDisruptionBudget while the webhook had one: `api.pdb` now mirrors
`webhook.pdb`, with the same render-time refusal of a budget that would block every node drain.

`webhook.timeoutSeconds` accepts up to 10 (upgrades keep working) but above 3 s controllers' lease renewals break
(gatekeeper#870): NOTES.txt now says so when it is set higher.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from tests.helm.chart import CHART, NAMESPACE, RELEASE, of_kind, one, render

# --- agent.collectors -------------------------------------------------------------------------------

# A value for every key each collector's config model (and its nested models) accepts.
FULL_COLLECTORS: dict[str, Any] = {
    "aws": {
        "enabled": True, "interval_seconds": 3600, "jitter_seconds": 60, "owner": "Example Cloud",
        "operator": "Example Ops", "run_timeout_seconds": 1800,
        "accounts": [{"id": "123456789012", "role_arn": "arn:aws:iam::123456789012:role/veu", "external_id": "x",
                      "session_name": "veu-inventory", "profile": "prod", "credentials_file": "/creds/aws",
                      "regions": ["us-east-1"], "owner": "Example Cloud", "operator": "Example Ops"}],
        "max_workers": 8, "retry_mode": "standard", "max_attempts": 8, "page_size": 1000,
        "states": ["running"], "capacity_reservations": True, "endpoint_url": "https://ec2.example",
        "read_timeout": 30, "default_region": "us-east-1",
    },
    "gcp": {
        "enabled": False, "interval_seconds": 3600, "jitter_seconds": 0, "owner": None, "operator": None,
        "run_timeout_seconds": None,
        "projects": [{"id": "proj-1", "owner": "Example Cloud", "operator": None}],
        "credentials_file": "/creds/gcp.json", "api_endpoint": "https://compute.example", "anonymous": False,
        "page_size": 500, "retry_seconds": 120.0, "request_timeout": 30,
    },
    "k8s": {
        "enabled": True, "interval_seconds": 900, "jitter_seconds": 60, "owner": "Example Cloud",
        "operator": "Example Ops", "run_timeout_seconds": 600, "watch": True,
        "clusters": [
            {"name": "in-cluster", "in_cluster": True, "customer_label": "compute.veu-governor.io/customer",
             "cloud_nodes": "auto", "site": "dc-1", "owner": "Example Cloud", "operator": "Example Ops"},
            {"name": "remote", "kubeconfig": "/kube/config", "context": "remote", "api_url": "https://k.example",
             "token_file": "/kube/token", "ca_file": "/kube/ca.crt", "cloud_nodes": "skip", "customer_label": None},
        ],
    },
    "nvml": {"enabled": False, "interval_seconds": 3600, "jitter_seconds": 60, "owner": None, "operator": None,
             "run_timeout_seconds": None, "site": "dc-1", "host": "gpu-1"},
    "csv": {"enabled": True, "interval_seconds": 86400, "jitter_seconds": 60, "owner": None, "operator": None,
            "run_timeout_seconds": None, "files": ["/registers/a.csv"], "retire_absent_sites": False},
}


def _refused(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(values)
    return str(err.value)


def _keys(model: type[BaseModel], values: list[dict[str, Any]], where: str) -> set[str]:
    """Every field of ``model`` (and of the models nested in it) that none of ``values`` sets, as paths."""
    missing = {f"{where}.{name}" for name in model.model_fields if not any(name in v for v in values)}
    for name, field in model.model_fields.items():
        args = typing.get_args(field.annotation)  # list[AwsAccount] -> (AwsAccount,)
        inner = args[0] if args else None
        if inspect.isclass(inner) and not typing.get_args(inner) and issubclass(inner, BaseModel):
            missing |= _keys(inner, [item for v in values for item in v.get(name) or []], f"{where}.{name}[]")
    return missing


def test_the_full_example_names_every_key_the_agent_accepts() -> None:
    """Keeps FULL_COLLECTORS complete: a field added to a collector's model must be added here (and to the schema)."""
    from agent.collectors.base import load_all

    registry = load_all()
    assert set(FULL_COLLECTORS) == set(registry)
    missing = set().union(*(_keys(registry[n].config_model, [v], n) for n, v in FULL_COLLECTORS.items()))
    assert not missing, f"add these to FULL_COLLECTORS and values.schema.json: {sorted(missing)}"


def _plain(node: Any, defs: dict[str, Any]) -> Any:
    """A JSON Schema with $refs inlined and the annotations (title, default, description) dropped."""
    if isinstance(node, list):
        return [_plain(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _plain(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _plain(v, defs) for name, v in value.items()}
        elif key not in {"title", "default", "description", "$defs"}:
            out[key] = _plain(value, defs)
    return out


def test_each_collector_section_of_the_schema_is_its_config_model() -> None:
    """Same keys, types and bounds as the model the agent validates with: drift either way fails here."""
    from agent.collectors.base import load_all

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    collectors = schema["properties"]["agent"]["properties"]["collectors"]
    assert collectors["additionalProperties"] is False
    registry = load_all()
    assert set(collectors["properties"]) == set(registry)
    for name, cls in registry.items():
        model = cls.config_model.model_json_schema()
        assert _plain(collectors["properties"][name], {}) == _plain(model, model.get("$defs", {})), name


def test_every_key_the_agent_accepts_renders_and_the_agent_loads_it(tmp_path: Any) -> None:
    from agent.collectors.config import load_config

    objs = render({"agent": {"collectors": FULL_COLLECTORS}})
    text = one(objs, "ConfigMap", "-agent-config")["data"]["config.yaml"]
    assert yaml.safe_load(text)["collectors"] == FULL_COLLECTORS
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path)  # the agent's own validation, as `veuctl agent run` does at start
    assert set(cfg.collectors) == set(FULL_COLLECTORS)


def test_a_collector_section_can_still_be_dropped_with_null() -> None:
    objs = render({"agent": {"collectors": {"k8s": None, "csv": {"files": ["/r/a.csv"]}}}})
    cfg = yaml.safe_load(one(objs, "ConfigMap", "-agent-config")["data"]["config.yaml"])
    assert cfg["collectors"] == {"csv": {"files": ["/r/a.csv"]}}


@pytest.mark.parametrize(("collectors", "where", "typo"), [
    ({"k8s": {"clusterz": []}}, "/agent/collectors/k8s", "clusterz"),
    ({"k8s": {"clusters": [{"name": "c", "incluster": True}]}}, "/agent/collectors/k8s/clusters/0", "incluster"),
    ({"aws": {"acounts": [{"id": "1"}]}}, "/agent/collectors/aws", "acounts"),
    ({"aws": {"accounts": [{"regoins": ["us-east-1"]}]}}, "/agent/collectors/aws/accounts/0", "regoins"),
    ({"gcp": {"projects": [{"id": "p", "ownr": "x"}]}}, "/agent/collectors/gcp/projects/0", "ownr"),
    ({"csv": {"file": ["/r/a.csv"]}}, "/agent/collectors/csv", "file"),
    ({"nvml": {"site": "dc-1", "hots": "gpu-1"}}, "/agent/collectors/nvml", "hots"),
    ({"k8s": {"intervalSeconds": 60}}, "/agent/collectors/k8s", "intervalSeconds"),
])
def test_a_misspelt_collector_key_is_refused_naming_it(collectors: dict[str, Any], where: str, typo: str) -> None:
    message = _refused({"agent": {"collectors": collectors}})
    assert where in message and typo in message, message


@pytest.mark.parametrize(("collectors", "where"), [
    ({"k8s": {"clusters": [{"name": "c", "cloud_nodes": "never"}]}}, "/agent/collectors/k8s/clusters/0/cloud_nodes"),
    ({"k8s": {"clusters": [{"in_cluster": True}]}}, "/agent/collectors/k8s/clusters/0"),  # name is required
    ({"k8s": {"interval_seconds": "15m"}}, "/agent/collectors/k8s/interval_seconds"),
    ({"aws": {"retry_mode": "fast"}}, "/agent/collectors/aws/retry_mode"),
    ({"gcp": {"projects": [{"owner": "x"}]}}, "/agent/collectors/gcp/projects/0"),  # id is required
    ({"k8s": {"clusters": {"name": "c"}}}, "/agent/collectors/k8s/clusters"),
])
def test_a_collector_value_the_agent_would_refuse_is_refused_naming_it(collectors: dict[str, Any],
                                                                       where: str) -> None:
    message = _refused({"agent": {"collectors": collectors}})
    assert where in message, message


# --- api.pdb ----------------------------------------------------------------------------------------

def test_the_api_has_a_disruption_budget_like_the_webhook() -> None:
    objs = render()
    dep = one(objs, "Deployment", "-api")
    pdb = one(objs, "PodDisruptionBudget", "-api")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["metadata"]["namespace"] == NAMESPACE
    kubernetes_validate.validate(pdb, "1.30", strict=True)
    # The webhook's budget is untouched.
    assert one(objs, "PodDisruptionBudget", "-webhook")["spec"]["minAvailable"] == 1


@pytest.mark.parametrize("values", [
    {"api": {"pdb": {"enabled": False}}},
    {"api": {"replicas": 1}},
    {"api": {"enabled": False}},
    {"database": {"type": "sqlite"}, "webhook": {"replicas": 1}},  # the API runs in the single pod
])
def test_no_api_budget_where_it_would_block_drains_or_has_no_pods(values: dict[str, Any]) -> None:
    assert not [o for o in of_kind(render(values), "PodDisruptionBudget") if o["metadata"]["name"].endswith("-api")]


def test_an_api_budget_of_a_percentage_renders() -> None:
    pdb = one(render({"api": {"replicas": 4, "pdb": {"minAvailable": "50%"}}}), "PodDisruptionBudget", "-api")
    assert pdb["spec"]["minAvailable"] == "50%"
    kubernetes_validate.validate(pdb, "1.30", strict=True)


@pytest.mark.parametrize(("api", "message"), [
    ({"replicas": 2, "pdb": {"minAvailable": 2}},
     "api.pdb.minAvailable=2 with api.replicas=2 would block every node drain: use a value below replicas"),
    ({"replicas": 3, "pdb": {"minAvailable": "67%"}},
     "api.pdb.minAvailable=67% of api.replicas=3 rounds up to all 3 replicas and would block every node drain"),
])
def test_an_api_budget_that_blocks_every_drain_fails_the_render(api: dict[str, Any], message: str) -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render({"api": api}, name=RELEASE, namespace=NAMESPACE)
    assert message in str(err.value)


@pytest.mark.parametrize(("pdb", "where"), [
    ({"minAvailable": 0}, "/api/pdb/minAvailable"),
    ({"minAvailable": "half"}, "/api/pdb/minAvailable"),
    ({"enable": True}, "/api/pdb"),
])
def test_the_api_budget_values_are_checked(pdb: dict[str, Any], where: str) -> None:
    assert where in _refused({"api": {"pdb": pdb}})


@pytest.mark.parametrize("path", ["webhook", "api"])
@pytest.mark.parametrize("pct", ["0067%", "099%", "101%", "1000%"])
def test_a_budget_percentage_with_a_leading_zero_or_past_100_is_refused(path: str, pct: str) -> None:
    """Helm's int reads "0067" as octal 55 (and "099" as 0), so the drain guard passed a budget Kubernetes reads as
    67% or 99% of 3 replicas: every replica kept."""
    assert f"/{path}/pdb/minAvailable" in _refused({path: {"replicas": 3, "pdb": {"minAvailable": pct}}})


# --- webhook.timeoutSeconds -------------------------------------------------------------------------

def _notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    (notes,) = [text for path, text in manifests.items() if path.endswith("NOTES.txt")]
    return notes


def test_the_default_webhook_timeout_is_at_most_3_seconds_and_not_warned_about() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert defaults["webhook"]["timeoutSeconds"] <= 3
    assert "WARNING: webhook.timeoutSeconds" not in _notes({})
    assert "WARNING: webhook.timeoutSeconds" not in _notes({"webhook": {"timeoutSeconds": 3}})


@pytest.mark.parametrize("seconds", [4, 10])
def test_a_webhook_timeout_above_3_seconds_is_accepted_but_warned_about(seconds: int) -> None:
    notes = _notes({"webhook": {"timeoutSeconds": seconds}})
    assert f"WARNING: webhook.timeoutSeconds={seconds}" in notes, notes
    assert "3 or less" in notes and "gatekeeper#870" in notes, notes


def test_a_webhook_timeout_above_10_seconds_is_still_refused() -> None:
    assert "/webhook/timeoutSeconds" in _refused({"webhook": {"timeoutSeconds": 11}})


# --- values the agent's validators refuse (session 22 review): refused at install, not by a crash-looping agent --


@pytest.mark.parametrize(("collectors", "where"), [
    ({"aws": {"states": ["runing"]}}, "/agent/collectors/aws/states/0"),
    ({"aws": {"states": []}}, "/agent/collectors/aws/states"),
    ({"aws": {"retry_mode": "legacy", "max_attempts": 20}}, "/agent/collectors/aws/max_attempts"),
    ({"k8s": {"clusters": [{"name": "c", "customer_label": "not a label!"}]}},
     "/agent/collectors/k8s/clusters/0/customer_label"),
])
def test_a_collector_value_only_a_validator_refused_is_refused_by_the_schema(collectors: dict[str, Any],
                                                                             where: str) -> None:
    assert where in _refused({"agent": {"collectors": collectors}})


def test_the_agent_refuses_the_same_values(tmp_path: Any) -> None:
    from agent.collectors.config import load_config

    for section in ({"aws": {"states": ["runing"]}}, {"aws": {"retry_mode": "legacy", "max_attempts": 20}},
                    {"k8s": {"clusters": [{"name": "c", "customer_label": "not a label!"}]}}):
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump({"collectors": section}), encoding="utf-8")
        with pytest.raises(Exception):  # noqa: B017 - the agent's own error type varies by loader
            load_config(path)


def test_legacy_retries_within_the_bound_and_a_plain_label_render() -> None:
    render({"agent": {"collectors": {"aws": {"retry_mode": "legacy", "max_attempts": 8},
                                     "k8s": {"clusters": [{"name": "c", "customer_label": "team"}]}}}})


def test_two_registers_of_one_file_name_fail_the_render() -> None:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.render({"agent": {"collectors": {"csv": {"files": ["/a/fleet.csv", "/b/fleet.csv"]}}}},
                     name=RELEASE, namespace=NAMESPACE)
    assert "two registers named fleet.csv" in str(err.value)
