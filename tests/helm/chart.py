"""Renders the veu-governor chart with Helm v4 as a library (helm-python-sdk) for the chart tests."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "veu-governor"
CI_SETS = sorted(p.stem for p in (CHART / "ci").glob("*.yaml"))
ALL_SETS = ["default", *CI_SETS]
RELEASE = "veu"
NAMESPACE = "veu-system"


def ci_values(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    loaded = yaml.safe_load((CHART / "ci" / f"{name}.yaml").read_text())
    return dict(loaded or {})


def render(values: dict[str, Any] | None = None, *, namespace: str = NAMESPACE,
           release: str = RELEASE) -> list[dict[str, Any]]:
    """Every object the chart renders (hooks included), schema-validated first like `helm install`."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values or {})
        manifests = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


@cache
def render_set(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(ci_values(name)))


def of_kind(objects: Any, kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Any, kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} ending {name_suffix!r}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_specs(objects: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objects:
        if o["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            out.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
        elif o["kind"] == "CronJob":
            out.append((f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":  # `helm test` pods
            out.append((f"Pod/{o['metadata']['name']}", o["spec"]))
    return out
