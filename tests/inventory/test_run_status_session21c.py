"""Run status (session 21c): a run that applied what it listed but could not list everything is `partial`.

`veuctl inventory runs` shows status beside observed/added. A run whose only scope was partly listed (one VM of a
machine type the catalog lacks, an unreachable zone) upserted the rest and retired nothing, yet read `failed`, as
if nothing had been recorded; `partial` was used only when some *other* scope completed. Now:
- ok: every scope completely listed;
- partial: something listed was applied (a complete scope, or an incomplete one that observed holdings), but
  not everything was listed, so nothing in the incomplete scopes retired;
- failed: nothing listed was applied (every scope failed before listing anything, or its data could not be placed).
Retire-not-delete is unchanged: an incomplete scope still retires nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys

from sqlmodel import select

from agent.inventory import sync
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import CollectorRun
from tests.inventory.gcpfake import ComputeFake, instance
from tests.inventory.gcpfake import gcp_collector as _gcp

VEUCTL = [sys.executable, "-m", "agent"]


def _live(url: str) -> set[str]:
    with session_scope(url) as s:
        return {h.external_id for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


def _run_status(url: str, run_id: int) -> str:
    with session_scope(url) as s:
        run = s.get(CollectorRun, run_id)
        assert run is not None
        return run.status


def test_only_scope_partly_listed_that_added_holdings_is_partial_and_retires_nothing(
    gce: ComputeFake, store: str
) -> None:
    gce.instances["ml"] = [instance("ml", "old", "us-central1-a", "a3-highgpu-8g", iid=1)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    gce.instances["ml"] = [
        instance("ml", "new", "us-central1-a", "a3-highgpu-8g", iid=2),
        instance("ml", "odd", "us-central1-a", "ct9p-hightpu-4t", iid=3),  # a type the catalog lacks
    ]
    summary = sync(_gcp(gce, "ml"), store)
    d = summary.as_dict()
    assert d["added"] == 1 and d["scopes"][0]["complete"] is False, d
    assert summary.status == "partial", d
    assert _run_status(store, summary.run_id) == "partial"
    assert _live(store) == {"ml/1", "ml/2"}  # partial never retires: the VM no longer listed is kept
    # What `veuctl inventory runs` shows.
    out = subprocess.run([*VEUCTL, "inventory", "runs", "--db", store, "--json"], capture_output=True, text=True,
                         check=True, timeout=120)
    latest = json.loads(out.stdout)[0]
    assert latest["id"] == summary.run_id and latest["status"] == "partial" and latest["added"] == 1, latest
    assert any("ct9p-hightpu-4t" in e["message"] for e in latest["errors"]), latest


def test_only_scope_failing_before_listing_anything_is_failed(gce: ComputeFake, store: str) -> None:
    gce.instances["ml"] = [instance("ml", "old", "us-central1-a", "a3-highgpu-8g", iid=1)]
    assert sync(_gcp(gce, "ml"), store).status == "ok"
    gce.failing.add("ml")
    summary = sync(_gcp(gce, "ml"), store)
    assert summary.status == "failed" and summary.observed == 0, summary.as_dict()
    assert _run_status(store, summary.run_id) == "failed"
    assert _live(store) == {"ml/1"}


def test_one_scope_complete_and_one_failed_is_still_partial(gce: ComputeFake, store: str) -> None:
    gce.instances["a"] = [instance("a", "x", "us-central1-a", "a3-highgpu-8g", iid=1)]
    gce.instances["b"] = [instance("b", "y", "us-central1-a", "a3-highgpu-8g", iid=2)]
    gce.failing.add("a")
    summary = sync(_gcp(gce, "a", "b"), store)
    assert summary.status == "partial", summary.as_dict()
    assert _live(store) == {"b/2"}


def test_a_run_whose_only_listing_could_not_be_placed_recorded_nothing_and_is_failed(
        gce: ComputeFake, store: str) -> None:
    """Listed but left out (a zone no site is registered for): nothing recorded, so 'failed', not 'partial'."""
    gce.instances["ml"] = [instance("ml", "far", "mars-central1-a", "a3-highgpu-8g", iid=1)]
    summary = sync(_gcp(gce, "ml"), store)
    d = summary.as_dict()
    assert d["added"] == 0 and d["updated"] == 0, d
    assert summary.status == "failed", d
