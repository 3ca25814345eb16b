"""The Kueue AdmissionCheck when a Workload cannot be evaluated (session 18), and the retry backoff set from
`veuctl admission controllers`.

Kueue (AdmissionCheckState): ``Pending`` means the check has not been performed yet, and Kueue keeps the quota
it reserved for the Workload while it waits. A Workload whose evaluation raised (the store down, a pack
problem, a bug) was left ``Pending`` and only logged: it held its quota, for ever if the error kept coming back.
``Retry`` is the state for "cannot pass now": Kueue releases the quota and requeues the Workload after
``requeueAfterSeconds``. ``Rejected`` would deactivate a job nothing is wrong with, so an outage never rejects.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from agent import cases
from controllers import kueue
from controllers.kueue import AdmissionCheckController

from .conftest import KueueApi, M, Result

RESERVED = {"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}
# Nothing listens on port 1: connecting is refused at once, as when the database is down.
STORE_DOWN = "postgresql+psycopg://veu@127.0.0.1:1/veu"


def workload(name: str, ns: str = "tenant-ae", retry_count: int | None = None) -> dict[str, Any]:
    ours: dict[str, Any] = {"name": "red-flag-28", "state": "Pending"}
    if retry_count is not None:
        ours["retryCount"] = retry_count
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": "7",
                     "annotations": {M + "model": f"{name}-model", M + "expected-hours": "24"}},
        "spec": {"queueName": "q", "podSets": [{"name": "main", "count": 1, "template": {"spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "containers": [{"name": "t", "resources": {"requests": {"nvidia.com/gpu": "8"}}}]}}}]},
        "status": {"conditions": [RESERVED],
                   "admissionChecks": [ours, {"name": "provisioning", "state": "Pending"}]},
    }


def written(api: KueueApi, name: str) -> dict[str, dict[str, Any]]:
    (body,) = [b for n, b in api.writes if n == name]
    return {s["name"]: s for s in body["status"]["admissionChecks"]}


def errors(reason: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("veu_admission_errors_total", {"reason": reason}) or 0.0


# ------------------------------------------------------------------------------- evaluation that raises


def test_a_workload_whose_evaluation_raises_is_answered_retry_naming_the_error_so_kueue_frees_its_quota(
    store: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("the evaluation blew up")

    monkeypatch.setattr(cases, "evaluate_review", broken)
    api = KueueApi([workload("wl", retry_count=2)])
    before = errors("internal")
    done = AdmissionCheckController(api, store, retry_backoff_base_seconds=30,
                                    retry_backoff_max_seconds=600).reconcile()

    ours = written(api, "wl")["red-flag-28"]
    assert ours["state"] == "Retry"
    # Named, so `kubectl get workload` tells the user why the job went back to the queue.
    assert "RuntimeError" in ours["message"] and "red flag 28" in ours["message"]
    # Kueue's backoff on its retryCount, as for a job held for the inquiry: 30 s x 2^2.
    assert ours["requeueAfterSeconds"] == 120
    assert written(api, "wl")["provisioning"] == {"name": "provisioning", "state": "Pending"}  # not ours
    assert [(d["workload"], d["state"]) for d in done] == [("tenant-ae/wl", "Retry")]
    assert errors("internal") == before + 1


def test_a_store_outage_answers_retry_and_never_rejects_a_workload(store: str) -> None:
    # A Tier-3 customer's Workload (Rejected once the store answers) and a Tier-2 one.
    api = KueueApi([workload("macau", ns="tenant-mo"), workload("small")])
    before = errors("store_unavailable")
    done = AdmissionCheckController(api, STORE_DOWN).reconcile()

    assert {d["workload"]: d["state"] for d in done} == {"tenant-mo/macau": "Retry", "tenant-ae/small": "Retry"}
    for name in ("macau", "small"):
        ours = written(api, name)["red-flag-28"]
        assert ours["state"] == "Retry" and "store unavailable" in ours["message"]
        assert ours["requeueAfterSeconds"] == 60
    assert errors("store_unavailable") == before + 2

    # Kueue requeues them (checks Pending again); the store is back: each is decided as it should be.
    api = KueueApi([workload("macau", ns="tenant-mo", retry_count=1), workload("small", retry_count=1)])
    done = AdmissionCheckController(api, store).reconcile()
    assert {d["workload"]: d["state"] for d in done} == {"tenant-mo/macau": "Rejected", "tenant-ae/small": "Ready"}


def test_the_store_error_text_in_the_message_is_one_line_without_the_sql_or_its_parameters(
    store: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The Workload's status is read by the tenant: the statement and its parameters (other customers' names)
    # stay in the controller's log.
    from sqlalchemy.exc import OperationalError

    def lost(*a: Any, **kw: Any) -> Any:
        raise OperationalError("SELECT * FROM party WHERE name = %(n)s", {"n": "Other Customer"},
                               Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(cases, "evaluate_review", lost)
    api = KueueApi([workload("wl")])
    AdmissionCheckController(api, store).reconcile()
    msg = written(api, "wl")["red-flag-28"]["message"]
    assert "server closed the connection unexpectedly" in msg
    assert "Other Customer" not in msg and "SELECT" not in msg and "\n" not in msg


def test_a_workload_whose_owner_cannot_be_judged_does_not_keep_the_others_waiting(
    store: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def odd_owner(api: Any, ns: str, ref: Any) -> Any:
        if ref.get("name") == "odd":
            raise TypeError("unexpected owner shape")
        return None

    monkeypatch.setattr(kueue, "get_owner", odd_owner)
    first = workload("odd")
    first["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": "odd",
                                             "uid": "job-odd", "controller": True}]
    api = KueueApi([first, workload("small")])
    done = AdmissionCheckController(api, store).reconcile()
    assert {d["workload"]: d["state"] for d in done} == {"tenant-ae/odd": "Retry", "tenant-ae/small": "Ready"}
    assert "TypeError" in written(api, "odd")["red-flag-28"]["message"]


# ------------------------------------------------------------------------------- veuctl options


@pytest.fixture()
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """`veuctl admission controllers --once` with no cluster: the controllers built are recorded."""
    import kubernetes.config

    import controllers.metering

    built: list[dict[str, Any]] = []

    class Meter:
        def __init__(self, *a: Any, **kw: Any) -> None:
            pass

        def tick(self) -> Any:
            return SimpleNamespace(pods_metered=0, chip_seconds=0.0, crossings=[], skipped=[], errors=[])

    class Checks(AdmissionCheckController):
        def __init__(self, custom: Any, database_url: str | None, **kw: Any) -> None:
            super().__init__(custom, database_url, **kw)
            built.append(kw)

        def reconcile(self, now: Any = None) -> list[dict[str, Any]]:
            return []

    monkeypatch.setattr(kubernetes.config, "load_incluster_config", lambda: None)
    monkeypatch.setattr(controllers.metering, "Meter", Meter)
    monkeypatch.setattr(kueue, "AdmissionCheckController", Checks)
    return built


def test_the_retry_backoff_set_on_veuctl_reaches_the_admission_check_controller(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]],
) -> None:
    r: Result = veuctl("admission", "controllers", "--once", "--kueue", "--kueue-retry-base-seconds", "30",
                       "--kueue-retry-max-seconds", "900")
    assert r.returncode == 0, r.stderr
    assert no_cluster[0]["retry_backoff_base_seconds"] == 30 and no_cluster[0]["retry_backoff_max_seconds"] == 900


def test_without_the_options_the_controller_backs_off_as_kueues_provisioning_check(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]],
) -> None:
    r = veuctl("admission", "controllers", "--once", "--kueue")
    assert r.returncode == 0, r.stderr
    assert no_cluster[0]["retry_backoff_base_seconds"] == kueue.RETRY_BACKOFF_BASE_SECONDS
    assert no_cluster[0]["retry_backoff_max_seconds"] == kueue.RETRY_BACKOFF_MAX_SECONDS


@pytest.mark.parametrize(("args", "named"), [
    (["--kueue-retry-base-seconds", "0"], "--kueue-retry-base-seconds"),
    (["--kueue-retry-max-seconds", "-5"], "--kueue-retry-max-seconds"),
    (["--kueue-retry-base-seconds", "2147483648"], "--kueue-retry-base-seconds"),
    (["--kueue-retry-base-seconds", "600", "--kueue-retry-max-seconds", "60"], "--kueue-retry-max-seconds"),
    (["--kueue-retry-base-seconds", "sixty"], "--kueue-retry-base-seconds"),
])
def test_a_retry_backoff_that_is_not_a_positive_number_of_seconds_is_refused_naming_the_option(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]], args: list[str], named: str,
) -> None:
    r = veuctl("admission", "controllers", "--once", "--kueue", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], r.stderr
    assert "Traceback" not in r.stderr and no_cluster == []


def test_a_retry_backoff_without_kueue_is_refused_rather_than_silently_ignored(
    veuctl: Any, store: str, no_cluster: list[dict[str, Any]],
) -> None:
    r = veuctl("admission", "controllers", "--once", "--kueue-retry-base-seconds", "30")
    assert r.returncode == 2 and "--kueue-retry-base-seconds" in r.stderr and "--kueue" in r.stderr


def test_the_options_are_documented_in_help(veuctl: Any) -> None:
    r = veuctl("admission", "controllers", "--help")
    text = " ".join(r.stdout.split())
    assert "--kueue-retry-base-seconds" in text and "--kueue-retry-max-seconds" in text
