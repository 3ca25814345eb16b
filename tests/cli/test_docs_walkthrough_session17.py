"""What README.md, docs/operations.md, docs/api.md and docs/inventory.md tell a new operator, checked against
what the commands and the API do (session 17's walk through the documents).

Commands run in-process (``run_app`` with ``sys.argv``) against a fresh store with the CLI tests' fleet.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent.cli import app
from agent.cli._common import run_app


def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(app)
    out, err = capsys.readouterr()
    return rc, out, err


def test_export_to_help_names_every_kind_that_refuses_a_later_day(
        fleet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--to` after today is refused for the shipments export (its Tier 2 allocation and LPP positions are
    those in force on --to) as for installed-base; `veuctl export --help` said only installed-base."""
    from agent.store.tables.core import utc_today

    later = (utc_today() + timedelta(days=30)).isoformat()
    rc, _, err = veuctl(monkeypatch, capsys, "export", "shipments", "--from", "2026-01-01", "--to", later,
                        "--out", str(tmp_path / "out"), "--format", "json")
    assert rc == 2 and err.startswith("error: --to: ") and "after today" in err, err
    monkeypatch.setenv("COLUMNS", "400")
    rc, out, _ = veuctl(monkeypatch, capsys, "export", "--help")
    assert rc == 0
    to_line = next(line for line in out.splitlines() if "--to " in line)
    assert "installed-base" in to_line and "shipments" in to_line, to_line


def test_inventory_show_json_has_the_keys_the_inventory_doc_lists(
        fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/inventory.md: `show --json` prints as_of, at, holdings (site, country, tier, accelerator, count,
    tpp, owner, operator) and totals (count, tpp, by_country, by_tier)."""
    rc, out, err = veuctl(monkeypatch, capsys, "inventory", "show", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert set(doc) == {"as_of", "at", "holdings", "totals"}
    assert doc["holdings"], "the fleet holds chips"
    assert set(doc["holdings"][0]) == {"site", "country", "tier", "accelerator", "count", "tpp", "owner", "operator"}
    assert set(doc["totals"]) == {"count", "tpp", "by_country", "by_tier"}
    doc_text = (Path(__file__).parents[2] / "docs" / "inventory.md").read_text(encoding="utf-8")
    assert '`show --json` prints `{"as_of", "at", "holdings"' in doc_text


def test_break_glass_review_takes_an_admission_review_not_a_bare_manifest(
        fleet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/operations.md's break-glass step 4 said `veuctl admission review FILE.json` evaluates a manifest:
    a job manifest as `kubectl get -o json` prints it is refused (exit 2, naming apiVersion); the file must be
    an AdmissionReview wrapping it."""
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "t", "namespace": "ns"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}}}
    f = tmp_path / "job.json"
    f.write_text(json.dumps(manifest), encoding="utf-8")
    rc, _, err = veuctl(monkeypatch, capsys, "admission", "review", str(f), "--json")
    assert rc == 2 and err.startswith("error: apiVersion: "), err
    ops = (Path(__file__).parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "evaluates a\n   manifest" not in ops and "evaluates a manifest" not in ops


def test_every_answer_but_static_files_and_the_favicon_is_no_store(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/api.md: every answer carries Cache-Control: no-store except /static/ and /favicon.ico (the icon
    is deliberately cacheable)."""
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    monkeypatch.setenv("VEU_AUTH", "token")
    c = TestClient(create_app(db_url), raise_server_exceptions=False)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/login", "/api/v1/sites"):
        assert c.get(path, follow_redirects=False).headers.get("cache-control") == "no-store", path
    assert c.get("/favicon.ico").headers.get("cache-control") != "no-store"
    api = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    assert "Every answer but `/static/` and `/favicon.ico` carries `Cache-Control: no-store`" in api


def test_agent_run_refuses_a_zero_interval_naming_the_key_but_once_schedules_nothing(tmp_path: Path) -> None:
    """docs/inventory.md: `agent run` refuses an interval outside 1 s to a year (exit 2, naming the key) before
    anything starts; `agent run --once` schedules nothing and so runs the collector (the doc says which checks
    it skips, so an operator who tried a config with --once is not surprised)."""
    import os
    import subprocess

    register = tmp_path / "assets.csv"
    register.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"collectors:\n  csv:\n    files: [{register}]\n    interval_seconds: 0\n", encoding="utf-8")
    env = {**os.environ, "VEU_DATABASE_URL": f"sqlite:///{tmp_path / 'veu.db'}", "XDG_DATA_HOME": str(tmp_path)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    r = subprocess.run([sys.executable, "-m", "agent", "agent", "run", "--config", str(cfg)], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert "error: collectors.csv.interval_seconds: 0 is not a number of seconds" in r.stderr
    r = subprocess.run([sys.executable, "-m", "agent", "agent", "run", "--config", str(cfg), "--once"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    doc = " ".join((Path(__file__).parents[2] / "docs" / "inventory.md").read_text(encoding="utf-8").split())
    assert "`agent run --once` schedules nothing and elects no leader, so it checks only the timeout" in doc
