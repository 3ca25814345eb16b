"""Withdrawing a training run recorded in error (`veuctl models withdraw-run`, POST .../runs/{id}/withdraw).

An operator who typed ``--operations 1e30`` (an exponent too many) made the lineage 4E091 for good: every later job
of the customer's model was held at admission. A withdrawn run keeps its row (audit trail, exports) and counts
nowhere: totals and status, the admission webhook's lineage read, the published-weights check, Supp. 10 ¶7 rows,
for every date (a correction of the record, not an event of a date).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import ledger
from agent.cli import app
from agent.cli._common import run_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.ledger import LedgerRun
from policies import redflag

Cli = Callable[..., tuple[int, str, str]]
M = "compute.veu-governor.io/"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
TODAY = date.today()


def _url(backend: str, request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`veuctl ARGS` in-process (the console script's entry point and exit codes): (rc, stdout, stderr)."""
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


def _typo_lineage(cli: Cli, owner: str = "Acme", model: str = "m") -> tuple[int, int]:
    """Model ``model`` of ``owner`` with a real 8e25 run and one of 1e30 typed for 1e25: (good id, typo id)."""
    if cli("parties", "add", owner, "--hq", "AE")[0] != 0:
        pytest.fail("parties add")
    _json(cli, "models", "add", model, "--owner", owner)
    good = _json(cli, "models", "add-run", model, "--operations", "8e25", "--start", "2026-01-01")["run_id"]
    typo = _json(cli, "models", "add-run", model, "--operations", "1e30", "--start", "2026-02-01")
    assert typo["status"] == "4E091"
    return int(good), int(typo["run_id"])


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_run_recorded_with_an_exponent_too_many_can_be_withdrawn_and_the_lineage_is_below_threshold_again(
        backend: str, request: pytest.FixtureRequest, cli: Cli) -> None:
    _url(backend, request)  # VEU_DATABASE_URL: the CLI's store
    good, typo = _typo_lineage(cli)
    out = _json(cli, "models", "withdraw-run", str(typo), "--reason", "typed 1e30 for 1e25")
    assert out["run_id"] == typo and out["status"] == "below-threshold"
    assert out["cumulative_operations"] == pytest.approx(8e25)
    assert out["withdrawn"]["operations"] == 1e30 and out["withdrawn"]["reason"] == "typed 1e30 for 1e25"
    shown = _json(cli, "models", "show", "m")
    assert shown["status"] == "below-threshold" and shown["cumulative_operations"] == pytest.approx(8e25)
    assert [r["id"] for r in shown["runs"]] == [good] and shown["runs_counted"] == 1
    (w,) = shown["withdrawn_runs"]
    assert (w["id"], w["operations"], w["reason"]) == (typo, 1e30, "typed 1e30 for 1e25")
    assert w["by"] and w["at"].startswith(TODAY.isoformat()[:4])
    listed = {x["name"]: x for x in _json(cli, "models", "list")}
    assert listed["m"]["status"] == "below-threshold" and listed["m"]["cumulative_operations"] == pytest.approx(8e25)


def test_a_withdrawal_is_a_correction_so_past_dates_leave_the_run_out_too(cli: Cli, db_url: str) -> None:
    _good, typo = _typo_lineage(cli)
    assert _json(cli, "models", "show", "m", "--as-of", "2026-03-01")["status"] == "4E091"
    assert cli("models", "withdraw-run", str(typo), "--reason", "typo")[0] == 0
    for day in ("2026-02-01", "2026-03-01", TODAY.isoformat()):
        past = _json(cli, "models", "show", "m", "--as-of", day)
        assert past["status"] == "below-threshold" and past["cumulative_operations"] == pytest.approx(8e25), day


def test_models_show_prints_each_runs_id_and_lists_withdrawn_runs_apart(cli: Cli, db_url: str) -> None:
    good, typo = _typo_lineage(cli)
    rc, out, _ = cli("models", "show", "m")
    assert rc == 0 and f"run {good}: 8e25" in out and f"run {typo}: 1e30" in out
    rc, out, err = cli("models", "withdraw-run", str(typo), "--reason", "typed 1e30 for 1e25")
    assert rc == 0, err
    assert f"run {typo} of m withdrawn" in out
    rc, out, _ = cli("models", "show", "m")
    counted, _, withdrawn = out.partition("withdrawn runs")
    assert f"run {good}: 8e25" in counted and f"run {typo}" not in counted
    assert f"run {typo}: 1e30" in withdrawn and "typed 1e30 for 1e25" in withdrawn
    assert "below-threshold" in out


@pytest.mark.parametrize("reason", ["", "   "])
def test_a_blank_reason_is_refused_naming_the_reason_option_and_nothing_changes(
        cli: Cli, db_url: str, reason: str) -> None:
    _good, typo = _typo_lineage(cli)
    rc, out, err = cli("models", "withdraw-run", str(typo), "--reason", reason)
    assert rc == 2 and out == "" and err.startswith("error: --reason:") and err.count("\n") == 1, err
    assert _json(cli, "models", "show", "m")["status"] == "4E091"


def test_a_reason_longer_than_500_characters_is_refused_naming_the_reason_option(cli: Cli, db_url: str) -> None:
    _good, typo = _typo_lineage(cli)
    rc, _out, err = cli("models", "withdraw-run", str(typo), "--reason", "x" * 501)
    assert rc == 2 and err.startswith("error: --reason:") and "500" in err and err.count("\n") == 1, err
    assert cli("models", "withdraw-run", str(typo), "--reason", "x" * 500)[0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_withdrawing_an_unknown_run_or_one_already_withdrawn_exits_2_with_one_line(
        backend: str, request: pytest.FixtureRequest, cli: Cli) -> None:
    _url(backend, request)
    _good, typo = _typo_lineage(cli)
    rc, _out, err = cli("models", "withdraw-run", "9999", "--reason", "typo")
    assert rc == 2 and err.startswith("error: run: 9999 ") and err.count("\n") == 1, err
    assert cli("models", "withdraw-run", str(typo), "--reason", "typed 1e30 for 1e25")[0] == 0
    rc, _out, err = cli("models", "withdraw-run", str(typo), "--reason", "again")
    assert rc == 2 and err.count("\n") == 1, err
    assert f"run: {typo} " in err and "already withdrawn" in err and TODAY.isoformat()[:4] in err
    with session_scope(_url(backend, request)) as s:
        row = s.get(LedgerRun, typo)
        assert row is not None and row.withdrawn_by and row.withdrawn_by in err
        assert row.withdrawn_reason == "typed 1e30 for 1e25"  # the second attempt changed nothing


def test_the_withdrawal_is_in_the_audit_trail_and_the_row_is_kept(cli: Cli, db_url: str) -> None:
    _good, typo = _typo_lineage(cli)
    assert cli("models", "withdraw-run", str(typo), "--reason", "typed 1e30 for 1e25")[0] == 0
    with session_scope(db_url) as s:
        (entry,) = s.exec(select(AuditEntry).where(AuditEntry.action == "ledger_run.withdraw")).all()
        payload = json.loads(entry.payload) if isinstance(entry.payload, str) else entry.payload
        assert payload["run_id"] == typo and payload["operations"] == 1e30 and payload["model"] == "m"
        assert payload["method"] == "declared-operations" and payload["reason"] == "typed 1e30 for 1e25"
        assert entry.subject == "model:m" and entry.actor
        row = s.get(LedgerRun, typo)
        assert row is not None and row.operations == 1e30 and row.withdrawn_at is not None
        assert row.withdrawn_by == entry.actor
    rc, out, err = cli("audit", "verify")
    assert rc == 0, (out, err)


# ------------------------------------------------------------------------------------------------ the API


@pytest.fixture()
def client(db_url: str) -> TestClient:
    from agent.api.app import create_app

    return TestClient(create_app(db_url), base_url="https://testserver")


def _api_typo_lineage(c: TestClient) -> tuple[int, int]:
    assert c.post("/api/v1/parties", json={"name": "Acme", "hq": "AE"}).status_code in (200, 201)
    assert c.post("/api/v1/models", json={"name": "org/m", "owner": "Acme"}).status_code == 201
    good = c.post("/api/v1/models/org/m/runs", json={"operations": "8e25", "start": "2026-01-01"}).json()["run_id"]
    r = c.post("/api/v1/models/org/m/runs", json={"operations": "1e30", "start": "2026-02-01"})
    assert r.status_code == 201 and r.json()["status"] == "4E091"
    return int(good), int(r.json()["run_id"])


def test_the_api_withdraws_a_run_and_answers_404_409_and_422_in_its_error_format(client: TestClient) -> None:
    good, typo = _api_typo_lineage(client)
    assert client.post("/api/v1/models", json={"name": "other", "owner": "Acme"}).status_code == 201
    r = client.post(f"/api/v1/models/org/m/runs/{typo}/withdraw", json={"reason": " "})
    assert r.status_code == 422 and r.json()["detail"].startswith("reason:"), r.text
    r = client.post(f"/api/v1/models/org/m/runs/{typo}/withdraw", json={})
    assert r.status_code == 422 and "reason" in json.dumps(r.json()["detail"])
    r = client.post("/api/v1/models/org/m/runs/9999/withdraw", json={"reason": "typo"})
    assert r.status_code == 404 and "9999" in r.json()["detail"], r.text
    r = client.post(f"/api/v1/models/other/runs/{typo}/withdraw", json={"reason": "typo"})  # another model's run
    assert r.status_code == 404 and str(typo) in r.json()["detail"], r.text
    r = client.post(f"/api/v1/models/ghost/runs/{typo}/withdraw", json={"reason": "typo"})
    assert r.status_code == 404 and "ghost" in r.json()["detail"], r.text
    r = client.post(f"/api/v1/models/org/m/runs/{typo}/withdraw", json={"reason": "typed 1e30 for 1e25"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "below-threshold" and body["cumulative_operations"] == pytest.approx(8e25)
    assert [x["id"] for x in body["runs"]] == [good] and [x["id"] for x in body["withdrawn_runs"]] == [typo]
    r = client.post(f"/api/v1/models/org/m/runs/{typo}/withdraw", json={"reason": "again"})
    assert r.status_code == 409 and "already withdrawn" in r.json()["detail"], r.text
    got = client.get("/api/v1/models/org/m").json()
    assert got["status"] == "below-threshold" and got["withdrawn_runs"][0]["reason"] == "typed 1e30 for 1e25"


@pytest.mark.auth
def test_withdrawing_a_run_over_the_api_needs_the_role_that_adds_one(db_url: str) -> None:
    from agent.api.app import create_app
    from agent.auth import create_token
    from agent.parties import add_party

    with session_scope(db_url) as s:
        add_party(s, "Acme", "AE")
        ledger.add_model(s, "m", "Acme", actor="test")
        run = ledger.add_run(s, "m", ledger.estimate(registry(), TODAY, operations=1e30), start=date(2026, 2, 1),
                             actor="test")
        _, viewer = create_token(s, role="viewer", name="v")
        _, compliance = create_token(s, role="compliance", name="c")
        _, admin = create_token(s, role="admin", name="a")
    c = TestClient(create_app(db_url), base_url="https://testserver")
    path = f"/api/v1/models/m/runs/{run.id}/withdraw"
    for secret in (viewer, compliance):
        r = c.post(path, json={"reason": "typo"}, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 403, r.text
        assert c.post("/api/v1/models/m/runs", json={"operations": 1e24},
                      headers={"Authorization": f"Bearer {secret}"}).status_code == 403
    r = c.post(path, json={"reason": "typo"}, headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and r.json()["status"] == "below-threshold", r.text


# ------------------------------------------------------------------------------------------------ admission


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_customers_job_held_for_a_mistyped_run_is_admitted_once_the_run_is_withdrawn(
        backend: str, request: pytest.FixtureRequest) -> None:
    from agent.cases import evaluate_review
    from tests.webhook.conftest import job, review, seed

    url = _url(backend, request)
    seed(url)
    with session_scope(url) as s:
        ledger.add_model(s, "llm-1", "Emirates AI", actor="test")
        ledger.add_run(s, "llm-1", ledger.estimate(registry(), TODAY, operations=8e24), start=date(2026, 1, 1),
                       actor="test")
        typo = ledger.add_run(s, "llm-1", ledger.estimate(registry(), TODAY, operations=1e30),
                              start=date(2026, 2, 1), actor="test").id
    ann = {M + "model": "llm-1", M + "expected-hours": "1"}

    def decide(name: str) -> Any:
        with session_scope(url) as s:
            return evaluate_review(s, registry(), review(job(name, "tenant-ae", pods=1, annotations=ann)))

    held = decide("ft-1")
    assert held.code == redflag.HOLD_FOR_INQUIRY and not held.allowed, held.message
    with session_scope(url) as s:
        ledger.withdraw_run(s, int(typo or 0), "typed 1e30 for 1e25", actor="ops@example.com")
    out = decide("ft-2")
    assert out.code == redflag.ALLOW and out.allowed, out.message
    assert out.estimate is not None and out.estimate < 1e26


# ------------------------------------------------------------------------------------------------ the other reads


def test_a_withdrawn_run_no_longer_stops_the_models_publication_date(db_url: str) -> None:
    from agent.parties import add_party
    from policies.ledger import LedgerError

    with session_scope(db_url) as s:
        add_party(s, "Acme", "AE")
        ledger.add_model(s, "m", "Acme", actor="test")
        run = ledger.add_run(s, "m", ledger.estimate(registry(), TODAY, operations=1e24), start=date(2026, 3, 1),
                             actor="test")
    with pytest.raises(LedgerError, match="--published-on: m has training recorded from 2026-03-01"), \
            session_scope(db_url) as s:
        ledger.add_model(s, "m", "Acme", published=None, published_on=date(2026, 2, 1), actor="test")
    with session_scope(db_url) as s:
        ledger.withdraw_run(s, int(run.id or 0), "recorded on the wrong model", actor="test")
    with session_scope(db_url) as s:
        m = ledger.add_model(s, "m", "Acme", published=None, published_on=date(2026, 2, 1), actor="test")
        assert m.published_on == date(2026, 2, 1)


def test_a_withdrawn_run_gives_no_supplement_10_paragraph_7_row(db_url: str) -> None:
    from agent import obligations
    from agent.parties import add_party, add_site

    with session_scope(db_url) as s:
        add_party(s, "Gulf", "AE")
        add_site(s, "dc-frankfurt", "DE")
        ledger.add_model(s, "gulf-frontier", "Gulf", actor="test")
        run = ledger.add_run(s, "gulf-frontier", ledger.estimate(registry(), TODAY, operations=2e30),
                             start=date(2025, 7, 1), site="dc-frankfurt", actor="test")
    with session_scope(db_url) as s:
        rows = obligations.para7_for_site(s, registry(), "dc-frankfurt", date(2025, 9, 1))["runs"]
        assert [r["model"] for r in rows] == ["gulf-frontier"]
        ledger.withdraw_run(s, int(run.id or 0), "typed 2e30 for 2e25", actor="test")
    with session_scope(db_url) as s:
        assert obligations.para7_for_site(s, registry(), "dc-frankfurt", date(2025, 9, 1))["runs"] == []


def test_the_model_ledger_export_lists_the_withdrawn_run_marked_with_its_reason(
        cli: Cli, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import exports

    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    good, typo = _typo_lineage(cli)
    assert cli("models", "withdraw-run", str(typo), "--reason", "typed 1e30 for 1e25")[0] == 0
    with session_scope(db_url) as s:
        m = exports.run_export(s, registry(), "model-ledger", date(2026, 1, 1), TODAY, ["csv", "json"],
                               tmp_path / "out", actor="test:auditor")
    (name,) = [f["name"] for f in m["files"] if f["name"].endswith(".json")]
    doc = json.loads((tmp_path / "out" / name).read_text())
    runs = {r["run_id"]: r for r in doc["tables"]["runs"]["rows"]}
    assert set(runs) == {good, typo}
    assert runs[typo]["withdrawn"] is True and runs[typo]["withdrawn_reason"] == "typed 1e30 for 1e25"
    assert runs[typo]["operations"] == 1e30 and runs[typo]["withdrawn_by"] and runs[typo]["withdrawn_at"]
    assert runs[good]["withdrawn"] is False and runs[good]["withdrawn_reason"] is None
    (model,) = doc["tables"]["models"]["rows"]
    assert model["status"] == "below-threshold" and model["cumulative_operations"] == pytest.approx(8e25)
    assert any("withdrawn" in n for n in doc["notes"])
    assert any(f["name"].endswith("_runs.csv") for f in m["files"])


# ------------------------------------------------------------------------------------------------ the migration


@pytest.mark.parametrize("backend", BACKENDS)
def test_runs_recorded_before_the_upgrade_are_kept_and_read_as_not_withdrawn(
        backend: str, request: pytest.FixtureRequest) -> None:
    """0021_run_withdrawal adds the withdrawn_* columns to a store that holds runs: they read NULL (never
    withdrawn), a withdrawal then works, and the migration goes down (columns gone, rows kept) and up again."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import inspect, text

    from agent.store.db import _MIGRATIONS, make_engine

    url = _url(backend, request)
    eng = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            command.downgrade(cfg, "0002_ledger")
            conn.commit()
            assert "withdrawn_at" not in {c["name"] for c in inspect(conn).get_columns("ledger_run")}
            t = {"t": "2026-01-01 00:00:00"}
            conn.execute(text("INSERT INTO party (name, hq, created_at, updated_at) VALUES ('Acme', 'AE', :t, :t)"), t)
            conn.execute(text("INSERT INTO ledger_model (name, owner_id, published, created_at, updated_at) "
                              "SELECT 'm', id, false, :t, :t FROM party"), t)
            conn.execute(text("INSERT INTO ledger_run (model_id, operations, low, high, method, site, job_ref, "
                              "explanation, inputs, recorded_by, created_at) SELECT id, 1e30, 1e30, 1e30, "
                              "'declared-operations', '', '', '', '{}', 'ops', :t FROM ledger_model"), t)
            conn.commit()
            command.upgrade(cfg, "heads")
            conn.commit()
            assert conn.execute(text("SELECT withdrawn_at, withdrawn_by, withdrawn_reason, operations "
                                     "FROM ledger_run")).one() == (None, None, None, 1e30)
    finally:
        eng.dispose()
    from agent.store.db import dispose_all

    dispose_all()
    with session_scope(url) as s:
        assert ledger.model_status(s, registry(), "m", TODAY).status == "4E091"
        (rid,) = s.exec(select(LedgerRun.id)).all()
        ledger.withdraw_run(s, int(rid or 0), "typed 1e30 for 1e25", actor="test")
    with session_scope(url) as s:
        assert ledger.model_status(s, registry(), "m", TODAY).status == "below-threshold"
    dispose_all()
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002_ledger")
            conn.commit()
            assert conn.execute(text("SELECT count(*) FROM ledger_run")).scalar() == 1
            command.upgrade(cfg, "heads")
            conn.commit()
            assert conn.execute(text("SELECT withdrawn_at FROM ledger_run")).scalar() is None
    finally:
        eng.dispose()
