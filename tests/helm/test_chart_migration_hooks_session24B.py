"""Session 24B: the chart's migration hook, its bounded lock waits, its deadline, and what it leaves behind.

The ``…-migrate`` Job runs ``veuctl db upgrade`` as a pre-install/pre-upgrade hook, with its own ServiceAccount and a
NetworkPolicy (DNS and the database only) created before it. Those two were deleted only before the next hook's
creation: after a successful install they stayed in the namespace for good, a NetworkPolicy selecting no running pod
and an account nothing used. Helm deletes ``hook-succeeded`` resources once every hook of the event has succeeded
(the Job watched to completion), so the policy still covers the Job's pod while it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helm.chart import ALL_SETS, of_kind, one, render, render_set

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PG = {"database": {"type": "postgresql"}}


def _policies(obj: dict[str, Any]) -> set[str]:
    return set(obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(","))


def _env(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize("values", [s for s in ALL_SETS if s != "sqlite-trial-values"])
def test_the_migration_hooks_network_policy_and_account_are_removed_once_the_upgrade_succeeded(values: str) -> None:
    objs = render_set(values)
    if not [j for j in of_kind(objs, "Job") if j["metadata"]["name"].endswith("-migrate")]:
        pytest.skip("no migration Job in this set")
    job = one(objs, "Job", "-migrate")
    for kind in ("NetworkPolicy", "ServiceAccount"):
        hook = one(objs, kind, "-migrate")
        ann = hook["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
        # Created before the Job, so the Job's pod starts under its policy and with its account.
        assert int(ann["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
        assert _policies(hook) == {"before-hook-creation", "hook-succeeded"}, kind
    # A failed Job is kept for `kubectl logs`, and replaced on the next attempt.
    assert _policies(job) == {"before-hook-creation", "hook-succeeded"}


def test_the_migration_jobs_lock_wait_and_deadline_are_values() -> None:
    job = one(render({**PG, "migrations": {"lockTimeoutSeconds": 0.5, "lockRetries": 12,
                                           "activeDeadlineSeconds": 3600}}), "Job", "-migrate")
    env = _env(job)
    assert env["VEU_MIGRATION_LOCK_TIMEOUT"] == "0.5" and env["VEU_MIGRATION_LOCK_RETRIES"] == "12"
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["env"][0]["name"] == "VEU_DATABASE_URL"


def test_the_default_lock_wait_stays_below_the_webhooks_timeout() -> None:
    """A decision queued behind a waiting ALTER TABLE waits at most the lock timeout: below the webhook's
    timeoutSeconds it is still answered."""
    objs = render(PG)
    env = _env(one(objs, "Job", "-migrate"))
    (hook,) = [w for c in of_kind(objs, "ValidatingWebhookConfiguration") for w in c["webhooks"]][:1]
    assert 0 < float(env["VEU_MIGRATION_LOCK_TIMEOUT"]) < hook["timeoutSeconds"]
    assert int(env["VEU_MIGRATION_LOCK_RETRIES"]) >= 1


@pytest.mark.parametrize("bad", [{"lockTimeoutSeconds": -1}, {"lockTimeoutSeconds": "2s"}, {"lockRetries": 1.5},
                                 {"lockRetries": -1}])
def test_a_malformed_lock_wait_is_refused_by_the_schema(bad: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="lock"):
        render({**PG, "migrations": bad})


def test_operations_docs_give_the_lock_wait_the_deadline_and_the_measured_rate() -> None:
    text = " ".join(DOCS.read_text().split())
    for needle in ("migrations.lockTimeoutSeconds", "migrations.lockRetries", "VEU_MIGRATION_LOCK_TIMEOUT",
                   "VEU_MIGRATION_LOCK_RETRIES", "migrations.activeDeadlineSeconds", "300,000 decisions",
                   "pg_terminate_backend"):
        assert needle in text, needle
