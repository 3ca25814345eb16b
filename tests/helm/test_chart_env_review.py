"""An extraEnv entry that is not a Kubernetes EnvVar (no name, a non-string name or value, an envFrom-style
``secretRef``, a bare string) fails the render naming its place in the values, instead of a template panic in the
duplicate check, a misleading "sets <nil> twice", or a manifest the API server refuses at apply time."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.helm.chart import CHART, NAMESPACE, RELEASE, pod_specs, render

COMPONENTS = ("webhook", "api", "agent")
SQLITE = {"database": {"type": "sqlite"}, "webhook": {"replicas": 1}}

# (entries, what the message says about the first entry)
NOT_ENV_VARS = {
    "no-name": ([{"value": "x"}], "missing property 'name'"),
    "two-without-name": ([{"value": "x"}, {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                         "missing property 'name'"),
    "envfrom-style": ([{"secretRef": {"name": "cloud-credentials"}}], "additional properties 'secretRef' not allowed"),
    "number-name": ([{"name": 123, "value": "x"}], "got number, want string"),
    "boolean-name": ([{"name": True, "value": "x"}], "got boolean, want string"),
    "empty-name": ([{"name": "", "value": "x"}], "minLength"),
    "number-value": ([{"name": "VEU_TRACE", "value": 1}], "got number, want string"),
    "bare-string": (["VEU_TRACE=1"], "got string, want object"),
    "null": ([None], "got null, want object"),
}


def _render_error(values: dict[str, Any]) -> str:
    """The error `helm install` reports for these values (the schema first, then the templates)."""
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmError) as err:
        chart.validate_schema(values)
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(err.value)


@pytest.mark.parametrize("base", [{}, SQLITE], ids=["postgresql", "sqlite"])
@pytest.mark.parametrize(("entries", "reason"), NOT_ENV_VARS.values(), ids=NOT_ENV_VARS.keys())
@pytest.mark.parametrize("component", COMPONENTS)
def test_extra_env_entry_that_is_not_an_env_var_fails_naming_its_place(
        component: str, entries: list[Any], reason: str, base: dict[str, Any]) -> None:
    values = {**base, component: {**base.get(component, {}), "extraEnv": entries}}
    message = _render_error(values)
    assert f"/{component}/extraEnv/0" in message, message
    assert reason in message, message
    assert "<nil>" not in message and "can't evaluate field" not in message and "nil pointer" not in message


def test_extra_env_entries_with_value_or_value_from_still_render() -> None:
    """The two forms of a Kubernetes EnvVar stay accepted in every container's extraEnv."""
    entries = [{"name": "VEU_TRACE", "value": "1"},
               {"name": "AWS_REGION", "valueFrom": {"configMapKeyRef": {"name": "cloud", "key": "region"}}}]
    objects = render({component: {"extraEnv": entries} for component in COMPONENTS})
    for component in COMPONENTS:
        (env,) = [c["env"] for _, spec in pod_specs(objects) for c in spec["containers"] if c["name"] == component]
        assert [e for e in env if e["name"] in {"VEU_TRACE", "AWS_REGION"}] == entries, component
