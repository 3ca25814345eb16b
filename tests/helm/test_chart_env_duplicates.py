"""An extraEnv entry never duplicates a variable the chart already gives that container.

Two same-named entries in one container's env make Kubernetes keep the last one without a word (one of the two
settings is silently lost) and server-side apply refuse the list: the render fails instead, naming the value path and
the variable. Checked for every container that takes an extraEnv list (webhook, API, agent; the controllers take
none), in their own Deployments and in the SQLite trial's single pod.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest

from tests.helm.chart import CHART, NAMESPACE, RELEASE, pod_specs, render

SQLITE = {"database": {"type": "sqlite"}, "webhook": {"replicas": 1}}
OIDC = {"issuer": "https://login.example.com/", "audience": "veu-governor-api", "jwksSecret": "veu-oidc-jwks"}
BASES = {"postgresql": {}, "sqlite": SQLITE}
# The container that renders each extraEnv list.
CONTAINER = {"webhook": "webhook", "api": "api", "agent": "agent"}
CRD_KINDS = {"Certificate", "Issuer", "ServiceMonitor"}


def _render_error(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.validate_schema(values)
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(err.value)


def _with(base: dict[str, Any], component: str, extra_env: list[dict[str, Any]],
          **more: Any) -> dict[str, Any]:
    """base values plus `<component>.extraEnv` (and more keys of that component, e.g. oidc)."""
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    values[component] = {**values.get(component, {}), **more, "extraEnv": extra_env}
    return values


def _env_names(objects: Any, container: str) -> list[list[str]]:
    """The env names of every rendered container with that name, one list per container (in order)."""
    return [[e["name"] for e in c.get("env", [])]
            for _, spec in pod_specs(objects) for c in spec["containers"] if c["name"] == container]


# --- a duplicate fails the render, naming the value path and the variable -----------------------------

DUPLICATES = [
    ("api", "VEU_OIDC_AUDIENCE", {"oidc": OIDC},
     "api.extraEnv sets VEU_OIDC_AUDIENCE, which api.oidc.audience already sets: set it in one place"),
    ("api", "VEU_OIDC_ISSUER", {"oidc": OIDC},
     "api.extraEnv sets VEU_OIDC_ISSUER, which api.oidc.issuer already sets: set it in one place"),
    ("api", "VEU_OIDC_JWKS_FILE", {"oidc": OIDC},
     "api.extraEnv sets VEU_OIDC_JWKS_FILE, which api.oidc.jwksSecret already sets: set it in one place"),
    ("api", "VEU_OIDC_ROLE_CLAIM", {"oidc": OIDC},
     "api.extraEnv sets VEU_OIDC_ROLE_CLAIM, which api.oidc.roleClaim already sets: set it in one place"),
    ("api", "VEU_LOG_LEVEL", {}, "api.extraEnv sets VEU_LOG_LEVEL, which logLevel already sets: set it in one place"),
    ("api", "POD_NAME", {},
     "api.extraEnv sets POD_NAME, which the chart always sets in that container: remove it from api.extraEnv"),
    ("webhook", "VEU_WEBHOOK_FAILURE_MODE", {},
     "webhook.extraEnv sets VEU_WEBHOOK_FAILURE_MODE, which webhook.failurePolicy already sets: set it in one place"),
    ("webhook", "VEU_POLICY_DIRS", {}, "webhook.extraEnv sets VEU_POLICY_DIRS, which policyPacks and "
     "existingPolicyConfigMap already sets: set it in one place"),
    ("webhook", "HOME", {},
     "webhook.extraEnv sets HOME, which the chart always sets in that container: remove it from webhook.extraEnv"),
    ("agent", "VEU_POLICY_REPORTS", {},
     "agent.extraEnv sets VEU_POLICY_REPORTS, which policyReports.enabled already sets: set it in one place"),
    ("agent", "VEU_AGENT_CONFIG", {},
     "agent.extraEnv sets VEU_AGENT_CONFIG, which agent.collectors already sets: set it in one place"),
    ("agent", "VEU_AUDIT_CHECKPOINT_EVERY", {}, "agent.extraEnv sets VEU_AUDIT_CHECKPOINT_EVERY, which "
     "signingKey.existingSecret (empty: no checkpoints) already sets: set it in one place"),
]


@pytest.mark.parametrize("base", BASES.values(), ids=BASES.keys())
@pytest.mark.parametrize(("component", "name", "more", "message"), DUPLICATES,
                         ids=[f"{component}-{name}" for component, name, *_ in DUPLICATES])
def test_extra_env_naming_a_variable_the_chart_sets_fails_the_render_naming_both(
        base: dict[str, Any], component: str, name: str, more: dict[str, Any], message: str) -> None:
    values = _with(base, component, [{"name": "VEU_AUTH_UNRELATED", "value": "1"}, {"name": name, "value": "x"}],
                   **more)
    assert message in _render_error(values)


@pytest.mark.parametrize(("base", "source"), [({}, "database.existingSecret"),
                                              ({"database": {"url": "postgresql+psycopg://veu@db:5432/veu"}},
                                               "database.url"),
                                              (SQLITE, "database.type=sqlite")],
                         ids=["existing-secret", "url", "sqlite"])
@pytest.mark.parametrize("component", CONTAINER)
def test_extra_env_setting_the_database_url_fails_naming_where_the_chart_takes_it_from(
        base: dict[str, Any], source: str, component: str) -> None:
    values = _with(base, component, [{"name": "VEU_DATABASE_URL", "value": "postgresql://elsewhere/veu"}])
    assert (f"{component}.extraEnv sets VEU_DATABASE_URL, which {source} already sets: set it in one place"
            in _render_error(values))


@pytest.mark.parametrize("base", BASES.values(), ids=BASES.keys())
@pytest.mark.parametrize("component", CONTAINER)
def test_every_variable_the_chart_renders_is_refused_in_that_extra_env(
        base: dict[str, Any], component: str) -> None:
    """Not a hand-kept list: every name the chart gives the container (OIDC and cluster on) is checked.

    Except VEU_SESSION_SECRET: set in api.extraEnv it replaces the chart's own, which the chart then leaves out."""
    full = {**base, "api": {"oidc": OIDC}, "controllers": {"cluster": "gpu-east"},
            "signingKey": {"existingSecret": "veu-signing-key"}}
    (names,) = _env_names(render(full), CONTAINER[component])
    assert len(names) >= 8, names
    for name in [n for n in names if n != "VEU_SESSION_SECRET"]:
        message = _render_error(_with(full, component, [{"name": name, "value": "x"}]))
        assert f"{component}.extraEnv sets {name}, which " in message, (name, message)


@pytest.mark.parametrize("component", CONTAINER)
def test_extra_env_naming_one_variable_twice_fails_the_render(component: str) -> None:
    values = _with({}, component, [{"name": "VEU_AUTH", "value": "a"}, {"name": "VEU_AUTH", "value": "b"}])
    assert f"{component}.extraEnv sets VEU_AUTH twice" in _render_error(values)


# --- distinct names still render, and the manifests stay valid -----------------------------------------

DISTINCT: dict[str, dict[str, Any]] = {
    "postgresql": {
        "api": {"oidc": OIDC, "extraEnv": [{"name": "VEU_AUTH", "value": "oidc"},
                                           {"name": "VEU_NOTIFY_SCHEDULER", "value": "1"}]},
        "webhook": {"extraEnv": [{"name": "VEU_TRACE", "value": "1"}]},
        "agent": {"extraEnv": [{"name": "AWS_REGION", "value": "us-east-1"}]},
    },
    # Settings the chart leaves to the operator in this configuration are the operator's to set: their own session
    # key (the chart then gives none), OIDC by env when api.oidc is empty, a checkpoint interval with a signing key.
    "sqlite-operator-owned": {
        **SQLITE,
        "signingKey": {"existingSecret": "veu-signing-key"},
        "api": {"extraEnv": [
            {"name": "VEU_SESSION_SECRET", "valueFrom": {"secretKeyRef": {"name": "my-session", "key": "k"}}},
            {"name": "VEU_OIDC_ISSUER", "value": "https://login.example.com/"},
            {"name": "VEU_OIDC_AUDIENCE", "value": "veu-governor-api"},
            {"name": "VEU_OIDC_JWKS_FILE", "value": "/etc/jwks/jwks.json"}]},
        "webhook": {"replicas": 1, "extraEnv": [{"name": "VEU_AUDIT_CHECKPOINT_EVERY", "value": "100"}]},
        "agent": {"extraEnv": [{"name": "VEU_AUDIT_CHECKPOINT_EVERY", "value": "100"}]},
    },
}


@pytest.mark.parametrize("values", DISTINCT.values(), ids=DISTINCT.keys())
def test_extra_env_with_distinct_names_renders_each_entry_once(values: dict[str, Any]) -> None:
    objects = render(values)
    for component, container in CONTAINER.items():
        (names,) = _env_names(objects, container)
        assert len(names) == len(set(names)), (container, names)
        for entry in values[component]["extraEnv"]:
            assert names.count(entry["name"]) == 1, (container, entry["name"])


@pytest.mark.parametrize("values", [{}, SQLITE, *DISTINCT.values()],
                         ids=["default", "sqlite", *DISTINCT.keys()])
def test_rendered_manifests_stay_valid_and_lint_clean(values: dict[str, Any]) -> None:
    checked = 0
    for obj in render(values):
        if obj["kind"] in CRD_KINDS:
            continue  # no schema in kubernetes-validate (test_chart.py checks their structure)
        for kube_version in ("1.30", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(obj, kube_version, strict=True)
        checked += 1
    assert checked >= 10
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


# --- the rule is written where extraEnv is described ---------------------------------------------------

def test_values_and_readme_say_an_extra_env_name_the_chart_sets_fails_the_render() -> None:
    values_text = (CHART / "values.yaml").read_text()
    for component in CONTAINER:
        section = values_text.split(f"\n{component}:\n", 1)[1].split("  extraEnv: []", 1)[0]
        assert "already gives" in section.rsplit("# --", 1)[1], component  # the comment right above extraEnv
    readme = " ".join((CHART / "README.md").read_text().split())
    assert "or one name listed twice, fails the render" in readme
    assert "api.extraEnv sets VEU_OIDC_AUDIENCE, which api.oidc.audience already sets" in readme
