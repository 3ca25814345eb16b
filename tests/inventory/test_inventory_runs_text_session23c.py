"""`veuctl inventory runs` ("Recent collector runs with their status and errors") shows in its text what --json
holds: a failed or partial run's errors (the table had no errors at all: a `failed` line with no reason, the
operator had to know to add --json), and the `updated` count beside added/reactivated/retired. --json lists each
run's fields in one order, the table's (they came in whatever order the row was loaded in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from agent.inventory import sync
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.gcpfake import gcp_collector as _gcp

VEUCTL = [sys.executable, "-m", "agent"]


def _runs(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VEUCTL, "inventory", "runs", "--db", store, *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_the_runs_table_names_each_failed_runs_errors(gce: ComputeFake, store: str) -> None:
    gce.instances["ml"] = [instance("ml", "old", "us-central1-a", "a3-highgpu-8g", iid=1)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    gce.failing.add("ml")
    failed = sync(_gcp(gce, "ml"), store)
    assert failed.status == "failed"
    as_json = json.loads(_runs(store, "--json").stdout)
    errors = as_json[0]["errors"]
    assert errors, as_json[0]
    r = _runs(store)
    assert r.returncode == 0, r.stderr
    assert "updated" in r.stdout.splitlines()[1], r.stdout
    for e in errors:
        assert f"run {failed.run_id}, {e['scope']}: {e['message'][:60]}" in r.stdout, r.stdout


def test_runs_json_lists_each_runs_fields_in_one_order(gce: ComputeFake, store: str) -> None:
    gce.instances["ml"] = [instance("ml", "old", "us-central1-a", "a3-highgpu-8g", iid=1)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    (run,) = json.loads(_runs(store, "--json").stdout)
    assert list(run)[:10] == ["id", "source", "status", "started_at", "finished_at", "observed", "added",
                              "reactivated", "updated", "retired"], list(run)
    assert list(run)[-1] == "errors"
