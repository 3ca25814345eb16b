"""The controllers the chart runs are leader-elected on a Lease their account may use (session 20b).

The chart's controllers container is run through the real `veuctl` option parsing, so a chart value or argument
that drifts from the CLI (an option renamed, a Lease the Role does not name) fails here.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.helm.chart import ALL_SETS, NAMESPACE, ci_values, of_kind, one, pod_specs, render, render_set


def _controllers(objs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The controllers container and the pod spec it runs in (its own Deployment, or the SQLite trial's pod)."""
    found = [(c, pod) for _where, pod in pod_specs(objs) for c in pod["containers"] if c["name"] == "controllers"]
    assert len(found) == 1, found
    return found[0]


def _elector_of(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> Any:
    import kubernetes.config
    import prometheus_client

    import agent.cli.admission as adm
    from agent.cli import app
    from agent.cli._common import run_app

    seen: dict[str, Any] = {}
    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(adm, "run_controllers", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(prometheus_client, "start_http_server", lambda *a, **kw: None)  # the chart's --metrics-port
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    assert run_app(app) == 0
    return seen["elector"]


def _lease_rights(objs: Any, service_account: str) -> set[tuple[str, str]]:
    """(lease name, verb) the account may use on named Leases in the release namespace."""
    rights: set[tuple[str, str]] = set()
    roles = {r["metadata"]["name"]: r for r in of_kind(objs, "Role") if r["metadata"]["namespace"] == NAMESPACE}
    for rb in of_kind(objs, "RoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account for s in rb["subjects"]):
            continue
        for rule in roles[rb["roleRef"]["name"]]["rules"]:
            if "coordination.k8s.io" in rule["apiGroups"] and "leases" in rule["resources"]:
                for name in rule.get("resourceNames", ["*"]):
                    rights |= {(name, v) for v in rule["verbs"]}
    return rights


@pytest.mark.parametrize("value_set", ALL_SETS)
def test_the_controllers_elect_on_their_own_lease_which_their_account_may_use(
    value_set: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    objs = render_set(value_set)
    container, pod = _controllers(objs)
    elector = _elector_of(monkeypatch, container["args"])
    assert elector.namespace == NAMESPACE
    assert elector.lease_duration > elector.renew_deadline > elector.retry_period
    values = ci_values(value_set)
    assert elector.name == (values.get("controllers") or {}).get("leaseName", "veu-governor-controllers")
    agent_lease = (values.get("agent") or {}).get("leaseName", "veu-governor-inventory")
    assert elector.name != agent_lease  # one Lease for both: each would stand by for the other
    rights = _lease_rights(objs, pod["serviceAccountName"])
    assert {(elector.name, v) for v in ("get", "update", "patch")} <= rights
    assert ("*", "create") in rights  # RBAC cannot limit create by name
    assert not {(n, v) for n, v in rights if n == "*" and v != "create"}  # no other Lease is theirs to change
    # Its identity: the pod's name from the downward API, as the agent's.
    env = {e["name"]: e.get("valueFrom") for e in container["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_controllers_lease_role_follows_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render({"controllers": {"leaseName": "ctl-lease",
                                   "leaderElection": {"leaseDurationSeconds": 30, "renewDeadlineSeconds": 20,
                                                      "retryPeriodSeconds": 4}}})
    container, _pod = _controllers(objs)
    e = _elector_of(monkeypatch, container["args"])
    assert (e.name, e.lease_duration, e.renew_deadline, e.retry_period) == ("ctl-lease", 30, 20, 4)
    role = one(objs, "Role", "-controllers-lease")
    assert [r["resourceNames"] for r in role["rules"] if "resourceNames" in r] == [["ctl-lease"]]
    # The agent's Role still names its own Lease only.
    agent_role = one(objs, "Role", "-agent-lease")
    assert [r["resourceNames"] for r in agent_role["rules"] if "resourceNames" in r] == [["veu-governor-inventory"]]


def test_no_controllers_no_controllers_lease_role() -> None:
    objs = render({"controllers": {"enabled": False}})
    assert not [r for r in of_kind(objs, "Role") if r["metadata"]["name"].endswith("-controllers-lease")]


@pytest.mark.parametrize(("values", "message"), [
    ({"controllers": {"leaseName": "veu-governor-inventory"}}, "controllers.leaseName"),
    ({"controllers": {"leaderElection": {"leaseDurationSeconds": 10, "renewDeadlineSeconds": 10,
                                         "retryPeriodSeconds": 2}}}, "controllers.leaderElection"),
])
def test_a_lease_the_controllers_could_not_use_fails_the_install(values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        render(values)


def test_the_chart_default_is_the_clis_default() -> None:
    import yaml

    from controllers.loop import LEASE_NAME
    from tests.helm.chart import CHART

    assert yaml.safe_load((CHART / "values.yaml").read_text())["controllers"]["leaseName"] == LEASE_NAME
