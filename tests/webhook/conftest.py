"""Fixtures for the red-flag-28 webhook tests: a store with customers in each tier, review builders."""

from __future__ import annotations

import copy
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import parties
from agent.cases import Outcome, evaluate_review
from agent.packs import registry
from agent.store import session_scope

SAMPLES = Path(__file__).parent / "samples"
M = "compute.veu-governor.io/"

# namespace -> (customer, hq, parent)
CUSTOMERS: list[tuple[str, str, str | None, str]] = [
    ("Emirates AI", "AE", None, "tenant-ae"),          # Tier 2
    ("US Lab", "US", None, "tenant-us"),               # Tier 1
    ("Macau Holdings", "MO", None, "tenant-mo"),       # Tier 3
    ("London Sub", "GB", "Macau Holdings", "tenant-gb-mo"),   # Tier 1 HQ, Tier 3 ultimate parent
    ("Dublin Sub", "IE", "Emirates AI", "tenant-ie-ae"),      # Tier 1 HQ, Tier 2 ultimate parent
]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture()
def veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`veuctl ARGS` in-process (same entry point, exit-code mapping and output as the console script)."""
    from agent.cli import app
    from agent.cli._common import run_app

    def run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        rc = run_app(app)
        out = capsys.readouterr()
        return Result(rc, out.out, out.err)
    return run


class KueueApi:
    """A CustomObjectsApi stand-in: one active check of ours, the given Workloads, status writes recorded."""

    def __init__(self, workloads: list[dict[str, Any]]) -> None:
        self.workloads, self.writes = workloads, []

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> dict[str, Any]:
        from controllers.kueue import CONTROLLER_NAME

        if plural == "admissionchecks":
            return {"items": [{"metadata": {"name": "red-flag-28"}, "spec": {"controllerName": CONTROLLER_NAME},
                               "status": {"conditions": [{"type": "Active", "status": "True"}]}}]}
        return {"items": self.workloads}

    def patch_namespaced_custom_object_status(self, group: str, version: str, ns: str, plural: str, name: str,
                                              body: dict[str, Any]) -> dict[str, Any]:
        self.writes.append((name, body))
        return body


def seed(url: str) -> None:
    with session_scope(url) as s:
        for name, hq, parent, ns in CUSTOMERS:
            parties.add_party(s, name, hq, parent, [ns])


@pytest.fixture()
def store(db_url: str) -> str:
    seed(db_url)
    return db_url


@pytest.fixture()
def pg_store(pg_url: str) -> str:
    seed(pg_url)
    return pg_url


def review(obj: dict[str, Any], *, namespace: str | None = None, uid: str | None = None, dry_run: bool = False,
           operation: str = "CREATE") -> dict[str, Any]:
    """An AdmissionReview as the API server sends it."""
    ns = namespace or obj.get("metadata", {}).get("namespace", "default")
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {})["namespace"] = ns
    api = obj.get("apiVersion", "v1")
    group, _, version = api.rpartition("/")
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": obj.get("kind")},
            "resource": {"group": group, "version": version, "resource": str(obj.get("kind", "")).lower() + "s"},
            "requestKind": {"group": group, "version": version, "kind": obj.get("kind")},
            "name": obj["metadata"].get("name", ""), "namespace": ns, "operation": operation,
            "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "object": obj, "oldObject": None, "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def scale_review(resource: tuple[str, str], name: str, old: Any, new: Any, ns: str = "tenant-ae", *,
                 user: str = "alice@example.com") -> dict[str, Any]:
    """An UPDATE of ``resource``'s (group, plural) scale subresource, as `kubectl scale` or an HPA sends it."""
    def scale(n: Any) -> dict[str, Any]:
        return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": n}}
    group, plural = resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "resource": {"group": group, "version": "v1", "resource": plural}, "subResource": "scale",
        "name": name, "namespace": ns, "operation": "UPDATE", "userInfo": {"username": user},
        "object": scale(new), "oldObject": scale(old), "dryRun": False}}


def job(name: str, ns: str = "tenant-ae", *, gpus: int = 8, pods: int = 1, annotations: dict[str, str] | None = None,
        product: str | None = "NVIDIA-H100-80GB-HBM3") -> dict[str, Any]:
    """A batch/v1 Job of ``pods`` pods × ``gpus`` GPUs each."""
    spec: dict[str, Any] = {"containers": [{"name": "t", "image": "train:1",
                                           "resources": {"limits": {"nvidia.com/gpu": gpus}}}],
                            "restartPolicy": "Never"}
    if product:
        spec["nodeSelector"] = {"nvidia.com/gpu.product": product}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns, "annotations": dict(annotations or {})},
            "spec": {"parallelism": pods, "template": {"spec": spec}}}


def load_sample(kind: str, variant: str) -> dict[str, Any]:
    text = (SAMPLES / kind / f"{variant}.yaml").read_text()
    return dict(yaml.safe_load(text))


@pytest.fixture()
def decide_review(store: str) -> Callable[..., Outcome]:
    """Evaluate a review against the seeded store (one transaction, like the webhook)."""
    def run(body: dict[str, Any], **kw: Any) -> Outcome:
        with session_scope(store) as s:
            return evaluate_review(s, registry(), body, **kw)
    return run


@pytest.fixture()
def overlay_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Switch admission-settings.mode through an operator pack in VEU_POLICY_DIRS (as production would)."""
    def set_mode(mode: str, **extra: Any) -> None:
        d = tmp_path / f"packs-{mode}"
        d.mkdir(exist_ok=True)
        base = registry().provision("admission-settings", __import__("datetime").date.today())
        values = {**dict(base.values), "mode": mode, **extra}
        pack = {"id": "site-overrides", "version": f"test-{mode}", "title": "test overrides", "source": "test",
                "provisions": [{"id": "admission-settings", "title": "Admission webhook behaviour",
                                "citation": "operator override", "effective_from": "2020-01-01",
                                "status": [{"since": "2020-01-01", "codified": False, "enforced": True}],
                                "values": values}]}
        (d / "site.yaml").write_text(yaml.safe_dump(pack))
        monkeypatch.setenv("VEU_POLICY_DIRS", str(d))
    yield set_mode
