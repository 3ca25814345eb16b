"""`veuctl db copy`: a trial's SQLite store moved into production PostgreSQL (or another SQLite file) with the
compliance record intact: every row verbatim (ids, timestamps, the audit hash chain), sequences moved past the
copied ids, row counts and `audit verify` checked before the target commits; a target holding rows is refused.

Before it, docs/operations.md said the production store starts empty: the audit trail, cases, decisions and
registrations of the trial were left behind."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from agent import audit as audit_svc
from agent import parties as party_svc
from agent.store.copy import product_tables
from agent.store.db import _engines, _lock, head_revisions, make_engine, session_scope
from agent.store.tables.cases import AdmissionDecision, RedFlagCase

PASSWORD = "s3cret-pw"  # PostgreSQL here trusts local connections: a password in the URL is accepted and ignored


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VEU_DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _forget(url: str) -> None:
    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()


def _seed(url: str) -> None:
    """The demo fleet (parties, sites, holdings with history, authorizations, shipments, a reservation, models
    with runs, obligations, cases), plus admission decisions on those cases, a party registered before its parent
    (a reference to a later row of the same table) and a signed audit checkpoint."""
    from agent.demo import seed

    seed(url)
    with session_scope(url) as s:
        party_svc.add_party(s, "Late Subsidiary", "SG")
        party_svc.add_party(s, "Late Parent", "SG")
        s.flush()
        party_svc.add_party(s, "Late Subsidiary", None, "Late Parent")
        cases = list(s.exec(sa.select(RedFlagCase.id)).scalars())  # type: ignore[call-overload]
        for i in range(25):
            s.add(AdmissionDecision(uid=f"u{i}", decided_at=datetime(2026, 3, 1, 9, 0, i, 123456, tzinfo=UTC),
                                    namespace="lumen", kind="PyTorchJob", name=f"j{i}", operation="CREATE",
                                    job_ref=f"c/lumen/PyTorchJob/j{i}", customer_name="Lumen Analytics Pte",
                                    model_key="lumen-frontier-1", code="held-inquiry" if i % 2 else "allowed",
                                    allowed=not i % 2, chips=64.0, case_id=cases[i % len(cases)] if i % 2 else None,
                                    lineage_operations=1.4e26, message=f"decision {i} ünïcode",
                                    pack_versions=json.dumps({"ai-diffusion-2025": "2025.01.15-r1"})))
        audit_svc.record(s, actor="test", action="test.decisions", subject="lumen", payload={"n": 25})
        audit_svc.checkpoint(s)
        audit_svc.record(s, actor="test", action="test.after-checkpoint", subject="x", payload={"k": [1, 2.5]})
    _forget(url)


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("copy-source") / "trial.db"
    _seed(f"sqlite:///{path}")
    return path


@pytest.fixture()
def source(_template: Path, tmp_path: Path) -> str:
    """A seeded trial store (a fresh copy of the file for each test)."""
    path = tmp_path / "trial.db"
    shutil.copyfile(_template, path)
    return f"sqlite:///{path}"


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


def _dump(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every product table, in primary-key order, instants as aware UTC."""
    eng = make_engine(url)
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with eng.connect() as conn:
            for t in product_tables():
                rows = conn.execute(sa.select(t).order_by(*t.primary_key.columns)).mappings().all()
                out[t.name] = [{k: (v.astimezone(UTC) if v.tzinfo else v.replace(tzinfo=UTC))
                                if isinstance(v, datetime) else v for k, v in r.items()} for r in rows]
    finally:
        eng.dispose()
    return out


def _counts(url: str) -> dict[str, int]:
    return {name: len(rows) for name, rows in _dump(url).items()}


def _product(url: str) -> dict[str, Any]:
    """What the product shows: caps, cases, models, the installed base, parties."""
    shown = {}
    for cmd in (["caps", "show"], ["cases", "list"], ["models", "list"], ["inventory", "show"], ["parties", "list"]):
        r = _cli(*cmd, "--json", "--db", url)
        assert r.returncode == 0, (cmd, r.stderr)
        data = json.loads(r.stdout)
        if isinstance(data, dict):
            data.pop("at", None)  # when it was read
        shown[" ".join(cmd)] = data
    return shown


def _one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.postgres
def test_sqlite_store_copied_into_postgresql_keeps_every_record(source: str, pg_url: str) -> None:
    before = _dump(source)
    assert before["admission_decision"] and before["audit_checkpoint"] and before["holding_period"]
    assert before["ledger_run"] and before["redflag_case"] and len(before["audit_entry"]) > 40
    target = _with_password(pg_url)

    r = _cli("db", "copy", "--from", source, "--to", target, "--json")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["to"] == pg_url.replace("postgresql://postgres@", "postgresql://***@")
    assert out["rows"] == sum(len(v) for v in before.values()) and out["tables"] == len(before)
    assert out["rows_per_table"] == {k: len(v) for k, v in before.items()}
    assert out["audit_entries_verified"] == len(before["audit_entry"]) and out["audit_checkpoints_verified"] == 1
    assert out["seconds"] >= 0

    # Verbatim: ids, timestamps (to the microsecond), JSON, the hash chain.
    assert _dump(pg_url) == before
    assert _dump(source) == before  # the source is never changed
    assert _product(pg_url) == _product(source)
    verify = _cli("audit", "verify", "--json", "--db", pg_url)
    assert verify.returncode == 0, verify.stdout
    assert json.loads(verify.stdout)["ok"] is True
    r = _cli("db", "current", "--json", "--db", pg_url)
    assert json.loads(r.stdout)["revisions"] == list(head_revisions())

    # New records get new ids (the sequences were moved past the copied ones), and extend the chain.
    top_party = max(p["id"] for p in before["party"])
    r = _cli("parties", "add", "After Copy GmbH", "--hq", "DE", "--db", pg_url)
    assert r.returncode == 0, r.stderr
    r = _cli("sites", "add", "muc-9", "--country", "DE", "--db", pg_url)
    assert r.returncode == 0, r.stderr
    after = _dump(pg_url)
    assert [p["id"] for p in after["party"] if p["name"] == "After Copy GmbH"] == [top_party + 1]
    assert [x["id"] for x in after["site"] if x["name"] == "muc-9"] == [max(x["id"] for x in before["site"]) + 1]
    assert len(after["audit_entry"]) > len(before["audit_entry"])
    assert _cli("audit", "verify", "--db", pg_url).returncode == 0


@pytest.mark.postgres
def test_a_target_holding_rows_is_refused_and_left_unchanged(source: str, pg_url: str) -> None:
    assert _cli("parties", "add", "Already Here", "--hq", "US", "--db", pg_url).returncode == 0
    before = _dump(pg_url)

    r = _cli("db", "copy", "--from", source, "--to", _with_password(pg_url))
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "--to:" in line and "party (1)" in line and "audit_entry (1)" in line and "nothing was changed" in line
    assert PASSWORD not in r.stdout + r.stderr
    assert _dump(pg_url) == before


@pytest.mark.postgres
def test_copying_twice_is_refused(source: str, pg_url: str) -> None:
    assert _cli("db", "copy", "--from", source, "--to", pg_url).returncode == 0
    before = _counts(pg_url)
    r = _cli("db", "copy", "--from", source, "--to", pg_url)
    assert r.returncode == 2
    assert "holds rows in" in _one_error_line(r.stderr)
    assert _counts(pg_url) == before


def test_an_unreachable_target_fails_with_one_line(source: str) -> None:
    r = _cli("db", "copy", "--from", source, "--to", f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/nowhere")
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert line.startswith("error: --to: database unavailable:"), line
    assert PASSWORD not in r.stdout + r.stderr


def test_sqlite_to_sqlite_copies_in_small_batches(source: str, tmp_path: Path) -> None:
    before = _dump(source)
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    r = _cli("db", "copy", "--from", source, "--to", target, "--batch", "7")
    assert r.returncode == 0, r.stderr
    assert "row counts match; audit trail verified on the target" in r.stdout
    assert _dump(target) == before
    assert _product(target) == _product(source)
    assert _cli("audit", "verify", "--db", target).returncode == 0
    assert _cli("parties", "add", "Fresh Id Ltd", "--hq", "GB", "--db", target).returncode == 0
    ids = [p["id"] for p in _dump(target)["party"] if p["name"] == "Fresh Id Ltd"]
    assert ids == [max(p["id"] for p in before["party"]) + 1]


def test_a_source_behind_this_release_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from agent.store.db import _MIGRATIONS

    path = tmp_path / "old.db"
    eng = make_engine(f"sqlite:///{path}")
    with eng.connect() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002_ledger")
        conn.commit()
    eng.dispose()
    target = tmp_path / "new.db"
    r = _cli("db", "copy", "--from", f"sqlite:///{path}", "--to", f"sqlite:///{target}")
    assert r.returncode == 2
    line = _one_error_line(r.stderr)
    assert "--from:" in line and "0002_ledger" in line and f"veuctl db upgrade --db sqlite:///{path}" in line
    assert not target.exists()  # nothing was made
    with sqlite3.connect(path) as c:  # the source was not migrated
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002_ledger",)]

    r = _cli("db", "copy", "--from", f"sqlite:///{tmp_path / 'missing.db'}", "--to", f"sqlite:///{target}")
    assert r.returncode == 2 and "--from: no store at" in _one_error_line(r.stderr)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.postgres
def test_a_row_postgresql_refuses_rolls_the_whole_copy_back(source: str, pg_url: str) -> None:
    # SQLite keeps any length; PostgreSQL's column holds 200 characters: the copy fails part-way.
    with sqlite3.connect(source.removeprefix("sqlite:///")) as c:
        c.execute("UPDATE redflag_case SET customer_name = ? WHERE id = (SELECT MAX(id) FROM redflag_case)",
                  ("x" * 300,))
    r = _cli("db", "copy", "--from", source, "--to", pg_url)
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert "copying table redflag_case" in line and "rolled back" in line, line
    counts = _counts(pg_url)
    assert {k: v for k, v in counts.items() if v} == {"change_marker": 1}  # migrated, no row copied


def test_an_audit_trail_that_does_not_verify_on_the_target_is_not_committed(source: str, tmp_path: Path) -> None:
    with sqlite3.connect(source.removeprefix("sqlite:///")) as c:
        c.execute("UPDATE audit_entry SET payload = '{\"edited\": true}' WHERE seq = 3")
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    r = _cli("db", "copy", "--from", source, "--to", target)
    assert r.returncode == 1
    line = _one_error_line(r.stderr)
    assert "audit verify on the copy: BROKEN at seq 3" in line and "source's trail fails the same way" in line
    assert {k: v for k, v in _counts(target).items() if v} == {"change_marker": 1}


def test_the_same_database_as_source_and_target_is_refused(source: str) -> None:
    r = _cli("db", "copy", "--from", source, "--to", source)
    assert r.returncode == 2
    assert "same database" in _one_error_line(r.stderr)


def test_copy_store_reports_progress(source: str, tmp_path: Path) -> None:
    from agent.store.copy import Progress, copy_store

    seen: dict[str, Any] = {"tables": [], "rows": 0}

    class Record(Progress):
        def begin(self, totals: dict[str, int]) -> None:
            seen["totals"] = totals

        def table(self, name: str, rows: int) -> None:
            seen["tables"].append(name)

        def advance(self, rows: int) -> None:
            seen["rows"] += rows

    res = copy_store(source, f"sqlite:///{tmp_path / 'c.db'}", batch=500, progress=Record())
    assert seen["rows"] == res.rows == sum(seen["totals"].values())
    assert seen["tables"] == list(res.tables) and "alembic_version" not in seen["tables"]
    assert seen["tables"].index("party") < seen["tables"].index("holding") < seen["tables"].index("holding_period")
    with Session(make_engine(source)) as s:
        assert audit_svc.verify_chain(s).ok
