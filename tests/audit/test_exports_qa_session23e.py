"""Exports as a compliance officer files them and an auditor checks them: years, dollars, tiers and HQs as of the
report's dates, and the PDF saying what the CSV says."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from agent import caps, exports, parties
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.packs import PackRegistry
from tests.audit.seed import seed

START, END = date(2026, 1, 1), date(2026, 6, 30)
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")


def _export(url: str, packs: PackRegistry, kind: str, out: Path, formats: list[str],
            start: date = START, end: date = END) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.run_export(s, packs, kind, start, end, formats, out, actor="test:auditor")


def _json(m: dict[str, Any], out: Path) -> dict[str, Any]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(".json"))
    return json.loads((out / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _csv(m: dict[str, Any], out: Path, table: str) -> list[dict[str, str]]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(f"_{table}.csv"))
    with (out / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _pdf_text(m: dict[str, Any], out: Path) -> str:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(".pdf"))
    return subprocess.run(["pdftotext", "-layout", str(out / name), "-"], capture_output=True, text=True,
                          check=True).stdout


# ------------------------------------------------------------------------------ the LPP year of a consignee


def test_the_calendar_year_of_a_consignees_shipments_is_written_2026_on_every_store(
        store: str, packs: PackRegistry, tmp_path: Path) -> None:
    # LPP is capped per consignee per calendar year: the year is a label, written as the shipments' dates give it
    # (PostgreSQL's EXTRACT answers a numeric, which was written 2026.0 in the CSV and the JSON).
    with session_scope(store) as s:
        seed(s, packs)
    out = tmp_path / "out"
    m = _export(store, packs, "shipments", out, ["csv", "json"])
    assert {r["year"] for r in _csv(m, out, "consignee_year")} == {"2026"}
    assert {r["year"] for r in _json(m, out)["tables"]["consignee_year"]["rows"]} == {2026}


@needs_pdftotext
def test_the_pdf_prints_the_year_of_a_consignees_shipments_as_a_year_not_as_a_quantity(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        seed(s, packs)
    out = tmp_path / "out"
    text = _pdf_text(_export(db_url, packs, "shipments", out, ["pdf"]), out)
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("Gulf AI")]
    assert rows and all("2026" in r and "2,026" not in r for r in rows), rows


# ------------------------------------------------------------------------------ the value of a shipment


@needs_pdftotext
def test_the_pdf_prints_a_shipments_value_in_dollars_and_cents_as_the_csv_records_it(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    # § 748.15(f)(1)(i) asks for the value of each shipment: $12,345.50 is not $12,346.
    with session_scope(db_url) as s:
        seed(s, packs)
        caps.add_shipment(s, packs, day=date(2026, 2, 20), consignee="Gulf AI", destination="AE",
                          chip_name="h100-sxm", count=3, via="licence", reference="D123", actor="test",
                          value_usd=12345.5)
        caps.add_shipment(s, packs, day=date(2026, 2, 21), consignee="Gulf AI", destination="AE",
                          chip_name="h100-sxm", count=1, via="licence", reference="D124", actor="test",
                          value_usd=999.99)
    out = tmp_path / "out"
    m = _export(db_url, packs, "shipments", out, ["pdf", "csv"])
    assert {r["value_usd"] for r in _csv(m, out, "shipments")} >= {"12345.5", "999.99"}
    text = _pdf_text(m, out)
    assert "12,345.50" in text and "999.99" in text
    assert "12,346" not in text and "1,000" not in text.split("Shipments in the period")[1]


# ------------------------------------------------------------------------------ NVEU customers as of --to


def test_an_nveu_customer_list_gives_each_customers_headquarters_on_the_to_date_not_today(
        store: str, packs: PackRegistry, tmp_path: Path) -> None:
    # § 748.15(f)(1)(ii)(C): the report for the first half of 2026 lists the customers as they were then; a
    # customer that moved its headquarters from Singapore to China in August is listed as in Singapore.
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    with session_scope(store) as s:
        holder = parties.add_party(s, "Gulf AI", "AE", effective=date(2025, 1, 1))
        site = parties.add_site(s, "auh-1", "AE", cluster="auh-k8s")
        s.add(Holding(source="csv", external_id="h1", site_id=site.id, accelerator="h100-sxm", count=8,
                      owner_id=holder.id, operator_id=holder.id, first_seen=t0, last_seen=t0))
        caps.add_authorization(s, packs, "NVEU-GA-1", "nveu", "Gulf AI", "AE", actor="test")
        parties.add_party(s, "Mover Co", "SG", namespaces=["mover"], cluster="auh-k8s", effective=date(2025, 1, 1))
    with session_scope(store) as s:
        parties.add_party(s, "Mover Co", "CN", effective=date(2026, 8, 1))
    out = tmp_path / "out"
    m = _export(store, packs, "installed-base", out, ["csv", "json"])
    assert [(r["customer"], r["hq"]) for r in _csv(m, out, "nveu_customers")] == [("Mover Co", "SG")]
    assert [r["hq"] for r in _json(m, out)["tables"]["nveu_customers"]["rows"]] == ["SG"]
    later = tmp_path / "later"
    m = _export(store, packs, "installed-base", later, ["csv"], start=date(2026, 8, 1), end=date(2026, 8, 31))
    assert [r["hq"] for r in _csv(m, later, "nveu_customers")] == ["CN"]


# ------------------------------------------------------------------------------ a shipment's destination tier


def test_a_shipment_to_cambodia_before_it_left_d5_is_listed_at_the_tier_it_had_on_the_shipment_date(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    # Cambodia was in D:5 (Tier 3) until 2026-02-03: a licensed shipment on 2026-01-20 went to a Tier 3
    # destination, one on 2026-03-01 to a Tier 2 one. A half-year report must not show the first as Tier 2.
    with session_scope(db_url) as s:
        parties.add_party(s, "Khmer AI", "KH", address="Phnom Penh")
        for day in (date(2026, 1, 20), date(2026, 3, 1)):
            caps.add_shipment(s, packs, day=day, consignee="Khmer AI", destination="KH", chip_name="h100-sxm",
                              count=2, via="licence", reference=f"D-{day}", actor="test")
    out = tmp_path / "out"
    m = _export(db_url, packs, "shipments", out, ["csv", "json"])
    assert [(r["date"], r["destination_tier"]) for r in _csv(m, out, "shipments")] == [
        ("2026-01-20", "3"), ("2026-03-01", "2")]
    assert [r["destination_tier"] for r in _json(m, out)["tables"]["shipments"]["rows"]] == [3, 2]


def test_an_nveu_customer_list_names_the_customer_a_namespace_was_mapped_to_on_the_to_date(
        store: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Session 24: namespace "shared" was Old Co's until it moved to New Co on 2026-08-01; the first half of 2026's
    # report lists Old Co (it had read today's mapping: New Co, which was no customer of the NVEU then).
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    with session_scope(store) as s:
        holder = parties.add_party(s, "Gulf AI", "AE", effective=date(2025, 1, 1))
        site = parties.add_site(s, "auh-1", "AE", cluster="auh-k8s")
        s.add(Holding(source="csv", external_id="h1", site_id=site.id, accelerator="h100-sxm", count=8,
                      owner_id=holder.id, operator_id=holder.id, first_seen=t0, last_seen=t0))
        caps.add_authorization(s, packs, "NVEU-GA-1", "nveu", "Gulf AI", "AE", actor="test")
        parties.add_party(s, "Old Co", "SG", namespaces=["shared"], cluster="auh-k8s", effective=date(2025, 1, 1))
        parties.add_party(s, "New Co", "IN", effective=date(2025, 1, 1))
    monkeypatch.setattr(parties, "utc_today", lambda: date(2026, 8, 1))
    with session_scope(store) as s:
        parties.add_party(s, "New Co", None, namespaces=["shared"], cluster="auh-k8s", reassign=True)
    out = tmp_path / "out"
    m = _export(store, packs, "installed-base", out, ["csv"])
    assert [r["customer"] for r in _csv(m, out, "nveu_customers")] == ["Old Co"]
    later = tmp_path / "later"
    m = _export(store, packs, "installed-base", later, ["csv"], start=date(2026, 8, 1), end=date(2026, 8, 31))
    assert [r["customer"] for r in _csv(m, later, "nveu_customers")] == ["New Co"]
