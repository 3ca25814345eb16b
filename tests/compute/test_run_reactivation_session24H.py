"""Reactivating a withdrawn run (`veuctl models reactivate-run`, POST .../runs/{id}/reactivate).

A run withdrawn by mistake (the wrong id typed to ``withdraw-run``) left a lineage's real training out of every total:
its jobs read below 4E091's threshold. Reactivating counts it again, for every date, and is audited with the
withdrawal it undoes; it is refused where recording the run anew would be (training on or after the model's
publication date: new, unpublished weights; a lineage total that would not be finite).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import ledger
from agent.cli import app
from agent.cli._common import run_app
from agent.packs import registry
from agent.parties import Conflict, add_party
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.ledger import LedgerRun

Cli = Callable[..., tuple[int, str, str]]
TODAY = date.today()


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        capsys.readouterr()
        rc = run_app(app)
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


def _json(cli: Cli, *args: str) -> Any:
    rc, out, err = cli(*args, "--json")
    assert rc == 0, err
    return json.loads(out)


def _withdrawn_by_mistake(db_url: str) -> tuple[int, int]:
    """Model m with two real runs (8e25, 5e25: 4E091 together), the second withdrawn by mistake: (kept, withdrawn)."""
    with session_scope(db_url) as s:
        add_party(s, "Acme", "AE")
        ledger.add_model(s, "m", "Acme", actor="test")
        a = ledger.add_run(s, "m", ledger.estimate(registry(), TODAY, operations=8e25), start=date(2026, 1, 1))
        b = ledger.add_run(s, "m", ledger.estimate(registry(), TODAY, operations=5e25), start=date(2026, 2, 1))
        ledger.withdraw_run(s, b.id or 0, "wrong id typed", actor="ops")
        return a.id or 0, b.id or 0


def test_a_run_withdrawn_by_mistake_is_reactivated_and_counts_again_on_every_date(cli: Cli, db_url: str) -> None:
    kept, back = _withdrawn_by_mistake(db_url)
    assert _json(cli, "models", "show", "m")["status"] == "below-threshold"
    out = _json(cli, "models", "reactivate-run", str(back), "--reason", "withdrew the wrong run")
    assert out["run_id"] == back and out["status"] == "4E091"
    assert out["cumulative_operations"] == pytest.approx(1.3e26) and out["withdrawn_runs"] == []
    assert sorted(r["id"] for r in out["runs"]) == [kept, back]
    assert _json(cli, "models", "show", "m", "--as-of", "2026-03-01")["status"] == "4E091"
    with session_scope(db_url) as s:
        run = s.get(LedgerRun, back)
        assert run is not None and run.withdrawn_at is None and run.withdrawn_reason is None
        (entry,) = [e for e in s.exec(select(AuditEntry)).all() if e.action == "ledger_run.reactivate"]
        payload = entry.payload if isinstance(entry.payload, dict) else json.loads(entry.payload)
        assert payload["run_id"] == back and payload["reason"] == "withdrew the wrong run"
        # The withdrawal it undoes stays readable in the trail beside it.
        assert payload["withdrawn"]["reason"] == "wrong id typed" and payload["withdrawn"]["by"] == "ops"


def test_a_run_that_is_not_withdrawn_cannot_be_reactivated(db_url: str) -> None:
    kept, _ = _withdrawn_by_mistake(db_url)
    with pytest.raises(Conflict) as err, session_scope(db_url) as s:
        ledger.reactivate_run(s, kept, "again")
    assert str(err.value).startswith("run:") and "not withdrawn" in str(err.value)


def test_reactivating_needs_a_reason_naming_the_option(cli: Cli, db_url: str) -> None:
    _, back = _withdrawn_by_mistake(db_url)
    rc, out, err = cli("models", "reactivate-run", str(back), "--reason", " ")
    assert rc == 2 and out == "" and err.startswith("error: --reason:"), err


def test_a_run_on_or_after_the_models_publication_is_not_reactivated(db_url: str) -> None:
    """Published on 2026-01-15 while the February run was withdrawn: training after it made a derivative's weights."""
    _, back = _withdrawn_by_mistake(db_url)
    with session_scope(db_url) as s:
        ledger.add_model(s, "m", "Acme", published=None, published_on=date(2026, 1, 15))
    with pytest.raises(ledger.LedgerError) as err, session_scope(db_url) as s:
        ledger.reactivate_run(s, back, "withdrew the wrong run")
    msg = str(err.value)
    assert msg.startswith("run:") and "2026-01-15" in msg and "derivative" in msg
    with session_scope(db_url) as s:
        run = s.get(LedgerRun, back)
        assert run is not None and run.withdrawn_at is not None  # still withdrawn, nothing audited
        assert not [e for e in s.exec(select(AuditEntry)).all() if e.action == "ledger_run.reactivate"]


@pytest.fixture()
def client(db_url: str) -> TestClient:
    from agent.api.app import create_app

    return TestClient(create_app(db_url), base_url="https://testserver")


def test_the_api_reactivates_a_run_and_answers_404_409_and_422(client: TestClient, db_url: str) -> None:
    kept, back = _withdrawn_by_mistake(db_url)
    assert client.post("/api/v1/models", json={"name": "other", "owner": "Acme"}).status_code == 201
    r = client.post(f"/api/v1/models/m/runs/{back}/reactivate", json={"reason": " "})
    assert r.status_code == 422 and r.json()["detail"].startswith("reason:"), r.text
    r = client.post(f"/api/v1/models/other/runs/{back}/reactivate", json={"reason": "x"})
    assert r.status_code == 404 and str(back) in r.json()["detail"], r.text
    r = client.post(f"/api/v1/models/m/runs/{kept}/reactivate", json={"reason": "x"})
    assert r.status_code == 409 and "not withdrawn" in r.json()["detail"], r.text
    r = client.post(f"/api/v1/models/m/runs/{back}/reactivate", json={"reason": "withdrew the wrong run"})
    assert r.status_code == 200 and r.json()["status"] == "4E091" and r.json()["withdrawn_runs"] == [], r.text
