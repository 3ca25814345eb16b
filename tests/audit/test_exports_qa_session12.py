"""Exports and the audit trail as an auditor meets them: period edges, PDF text, added files, key and disk errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from agent import audit, exports, parties
from agent.exports import manifest as mf
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Holding
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry
from tests.audit.seed import seed

START, END = date(2026, 1, 1), date(2026, 6, 30)


def _export(url: str, packs: PackRegistry, kind: str, out: Path, formats: list[str],
            start: date = START, end: date = END) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.run_export(s, packs, kind, start, end, formats, out, actor="test:auditor")


def _pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True,
                          check=True).stdout


def test_a_period_ending_on_the_last_calendar_day_is_refused_naming_to(db_url: str, tmp_path: Path,
                                                                       veuctl) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = veuctl("export", "decisions", "--from", "2026-01-01", "--to", "9999-12-31", "--out",
                        str(tmp_path / "x"), "--db", db_url)
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: --to: 9999-12-31") and "too large" not in err
    assert not (tmp_path / "x").exists()


def test_only_the_installed_base_export_takes_an_authorization(
        db_url: str, packs: PackRegistry, tmp_path: Path, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        seed(s, packs)
    rc, _, err = veuctl("export", "shipments", "--from", "2026-01-01", "--to", "2026-06-30", "--authorization",
                        "NVEU-GA-1", "--out", str(tmp_path / "x"), "--db", db_url)
    assert rc == 2 and "--authorization" in err and "shipments" in err
    assert not (tmp_path / "x").exists()  # no unfiltered export under a name that looks filtered


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
def test_pdf_shows_a_name_that_looks_like_a_number_as_written(db_url: str, packs: PackRegistry,
                                                                tmp_path: Path) -> None:
    from agent import ledger

    with session_scope(db_url) as s:
        parties.add_party(s, "Lumen", "SG")
        ledger.add_model(s, "2.10", owner="Lumen", actor="test")
        ledger.add_model(s, "7E3", owner="Lumen", actor="test")
    m = _export(db_url, packs, "model-ledger", tmp_path / "out", ["pdf"])
    text = _pdf_text(tmp_path / "out" / m["files"][0]["name"])
    rows = [line.split() for line in text.splitlines() if "Lumen" in line]
    assert sorted(r[0] for r in rows) == ["2.10", "7E3"], rows  # not the numbers 2.1 and 7,000


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
def test_pdf_of_an_audit_entry_larger_than_a_page_is_written_with_the_cell_cut(db_url: str, packs: PackRegistry,
                                                                              tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        audit.record(s, actor="collector:csv", action="inventory.sync.scope", subject="scope:assets",
                     payload={"superseded": [f"holding {i} at fra-1" for i in range(400)]})
    today = datetime.now(UTC).date()
    m = _export(db_url, packs, "audit-log", tmp_path / "out", ["pdf", "csv"], today, today)
    pdf = next(f["name"] for f in m["files"] if f["name"].endswith(".pdf"))
    assert "characters; complete in the CSV and JSON" in " ".join(_pdf_text(tmp_path / "out" / pdf).split())
    csv_text = (tmp_path / "out" / next(f["name"] for f in m["files"] if f["name"].endswith(".csv"))).read_text()
    assert "holding 399 at fra-1" in csv_text  # the CSV keeps the whole payload
    assert mf.verify(Path(m["manifest"])) == []


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
def test_pdf_title_page_states_the_inclusive_period_and_the_as_of_date(db_url: str, packs: PackRegistry,
                                                                      tmp_path: Path) -> None:
    m = _export(db_url, packs, "model-ledger", tmp_path / "out", ["pdf"])
    text = " ".join(_pdf_text(tmp_path / "out" / m["files"][0]["name"]).split())
    assert "2026-01-01 through 2026-06-30, both days included (UTC)" in text
    assert "As of 2026-06-30 (end of the UTC day)" in text


def test_verify_export_reports_a_file_added_to_the_export_with_exit_1(
        db_url: str, packs: PackRegistry, tmp_path: Path, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        seed(s, packs)
    out = tmp_path / "reports"
    m = _export(db_url, packs, "shipments", out, ["csv", "json"])
    _export(db_url, packs, "transfers", out, ["csv"])  # another export in the same directory is not "added"
    (out / "notes.txt").write_text("the auditor's own file\n")
    rc, stdout, _ = veuctl("audit", "verify-export", m["manifest"])
    assert rc == 0 and "OK" in stdout
    added = out / "shipments_2026-01-01_2026-06-30_shipments_corrected.csv"
    added.write_text("id,consignee\n1,Someone else\n")
    rc, stdout, _ = veuctl("audit", "verify-export", m["manifest"])
    assert rc == 1 and f"FAILED: {added.name}: not listed in the signed manifest" in stdout
    assert mf.verify(Path(m["manifest"])) == [
        f"{added.name}: not listed in the signed manifest (file added to the export, or left from an earlier "
        "export of the same kind and period)"]


def test_verify_export_finds_an_added_file_after_the_manifest_was_renamed(db_url: str, packs: PackRegistry,
                                                                          tmp_path: Path) -> None:
    m = _export(db_url, packs, "decisions", tmp_path / "out", ["json"])
    renamed = tmp_path / "out" / "for-bis.manifest.json"
    Path(m["manifest"]).rename(renamed)
    (tmp_path / "out" / "decisions_2026-01-01_2026-06-30_decisions.csv").write_text("id\n1\n")
    assert mf.verify(renamed) == [
        "decisions_2026-01-01_2026-06-30_decisions.csv: not listed in the signed manifest (file added to the "
        "export, or left from an earlier export of the same kind and period)"]


def test_a_chip_moved_to_a_new_site_dates_that_site_from_the_move(store: str, packs: PackRegistry,
                                                                 tmp_path: Path) -> None:
    received, moved = datetime(2025, 12, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    with session_scope(store) as s:
        de, sg = parties.add_site(s, "fra-1", "DE"), parties.add_site(s, "sin-1", "SG")
        h = Holding(source="csv", external_id="m1", site_id=sg.id, accelerator="h100-sxm", count=8,  # type: ignore[arg-type]
                    first_seen=received, last_seen=moved)
        s.add(h)
        s.flush()
        s.add(HoldingPeriod(holding_id=h.id, site_id=de.id, accelerator="h100-sxm", count=8,  # type: ignore[arg-type]
                            valid_from=received, valid_to=moved))
        s.add(HoldingPeriod(holding_id=h.id, site_id=sg.id, accelerator="h100-sxm", count=8,  # type: ignore[arg-type]
                            valid_from=moved, valid_to=None))
    m = _export(store, packs, "transfers", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / m["files"][0]["name"]).read_text())
    # Singapore's first chips arrived on 2 March 2026, inside the period: a new site in a new country,
    # whose § 748.15(a)(2)(ii)(A) notice falls due 180 days before the move, not before the chip's receipt.
    new_sites = {r["site"]: r for r in doc["tables"]["new_sites"]["rows"]}
    assert new_sites["sin-1"]["first_installed"] == "2026-03-02" and new_sites["sin-1"]["new_country"] is True
    assert "fra-1" not in new_sites  # installed before the period
    assert doc["summary"]["new countries"] == 1


def test_an_export_that_runs_out_of_disk_fails_naming_out_and_leaves_nothing(
        db_url: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*_a: Any, **_k: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(exports, "write_json", full)
    with session_scope(db_url) as s:
        before = len(list(s.execute(select(AuditEntry)).scalars()))
    with pytest.raises(exports.ExportError, match=r"^--out: cannot write the export to .*No space left"):
        _export(db_url, packs, "decisions", tmp_path / "out", ["csv", "json"])
    assert list((tmp_path / "out").iterdir()) == []
    with session_scope(db_url) as s:
        assert len(list(s.execute(select(AuditEntry)).scalars())) == before


def test_a_signing_key_that_cannot_be_created_is_a_one_line_error_naming_the_setting(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, veuctl) -> None:  # type: ignore[no-untyped-def]
    from agent import signing

    def read_only(path: Path) -> Any:
        raise PermissionError(13, "Permission denied", str(path.parent))

    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.key"))
    monkeypatch.setattr(signing, "generate", read_only)  # e.g. a read-only home in a container
    rc, _, err = veuctl("export", "decisions", "--from", "2026-01-01", "--to", "2026-06-30", "--out",
                        str(tmp_path / "x"), "--db", db_url)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: VEU_SIGNING_KEY_FILE: cannot create")
    assert [p.name for p in (tmp_path / "x").iterdir()] == []


def test_audit_log_help_matches_what_it_shows_oldest_first_from_from(db_url: str, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        for i in range(5):
            audit.record(s, actor="t", action="test.entry", subject=f"x:{i}", payload={})
    rc, out, _ = veuctl("audit", "log", "--limit", "2", "--json", "--db", db_url)
    assert rc == 0 and [e["seq"] for e in json.loads(out)] == [1, 2]
    rc, out, _ = veuctl("audit", "log", "--help")
    words = " ".join(w for w in out.split() if w != "│")  # the help is boxed and wrapped
    assert rc == 0 and "How many entries to show, oldest first from --from" in words and "Newest" not in out


def test_red_flag_register_lists_a_case_whose_answers_expired_in_the_period(store: str, packs: PackRegistry,
                                                                           tmp_path: Path) -> None:
    from agent.store.tables.cases import RedFlagCase

    answered = datetime(2025, 10, 2, tzinfo=UTC)
    with session_scope(store) as s:
        parties.add_party(s, "Gulf AI", "AE")
        s.add(RedFlagCase(customer_name="Gulf AI", model_key="falcon-z", status="resolved",
                          estimate_operations=2e26, threshold=1e26, jobs=json.dumps(["c/ns/Job/z"]),
                          explanation="lineage 2e26 > 1e26", export_intent=False, customer_informed=True,
                          resolved_by="token:compliance", resolved_at=answered,
                          opened_at=datetime(2025, 10, 1, tzinfo=UTC), updated_at=answered,
                          expires_at=datetime(2026, 3, 1, tzinfo=UTC)))
    m = _export(store, packs, "red-flags", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / m["files"][0]["name"]).read_text())
    # Opened and answered in 2025, its answers lapsed on 1 March 2026: a change inside the period.
    assert [(r["model"], r["status"]) for r in doc["tables"]["cases"]["rows"]] == [("falcon-z", "expired")]
    assert doc["summary"]["cases expired on 2026-06-30"] == 1
    m = _export(store, packs, "red-flags", tmp_path / "later", ["json"], date(2026, 7, 1), date(2026, 12, 31))
    doc = json.loads((tmp_path / "later" / m["files"][0]["name"]).read_text())
    assert doc["tables"]["cases"]["rows"] == []  # expired before that period, nothing changed in it


def test_both_period_days_are_included_to_the_last_microsecond_utc(store: str, packs: PackRegistry,
                                                                    tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    from agent.store.tables.cases import AdmissionDecision

    edges = {"before": datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
             "first": datetime(2026, 1, 1, tzinfo=UTC),
             "last": datetime(2026, 6, 30, 23, 59, 59, 999999, tzinfo=UTC),
             "after": datetime(2026, 7, 1, tzinfo=UTC),
             # 23:30 on 30 June in New York is 03:30 UTC on 1 July: outside, the days are UTC days.
             "ny": datetime(2026, 6, 30, 23, 30, tzinfo=ZoneInfo("America/New_York"))}
    with session_scope(store) as s:
        for name, at in edges.items():
            s.add(AdmissionDecision(uid=name, decided_at=at, namespace="ns", kind="Job", name=name,
                                    operation="CREATE", job_ref=f"c/ns/Job/{name}", customer_name="Gulf AI",
                                    model_key="m", code="allowed", allowed=True, chips=1.0, message="",
                                    pack_versions="{}"))
    m = _export(store, packs, "decisions", tmp_path / "out", ["json"])
    doc = json.loads((tmp_path / "out" / m["files"][0]["name"]).read_text())
    assert sorted(r["uid"] for r in doc["tables"]["decisions"]["rows"]) == ["first", "last"]
