"""Exports as BIS and an auditor read them: dates before the rule, any script, ¶10 transfers and attrition."""

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
from agent.store.tables.inventory import HoldingPeriod
from policies.errors import PolicyError
from policies.packs import PackRegistry
from tests.audit.seed import seed

START, END = date(2026, 1, 1), date(2026, 6, 30)


def _export(url: str, packs: PackRegistry, kind: str, out: Path, formats: list[str],
            start: date = START, end: date = END) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.run_export(s, packs, kind, start, end, formats, out, actor="test:auditor")


def _json(m: dict[str, Any], out: Path) -> dict[str, Any]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(".json"))
    return json.loads((out / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ a period before the rule


@pytest.mark.parametrize("kind", ["shipments", "installed-base", "model-ledger"])
def test_a_report_ending_before_the_rule_took_effect_names_to_not_an_option_export_lacks(
        kind: str, db_url: str, tmp_path: Path, veuctl) -> None:  # type: ignore[no-untyped-def]
    rc, _, err = veuctl("export", kind, "--from", "2024-07-01", "--to", "2024-12-31", "--out", str(tmp_path / "x"),
                        "--db", db_url)
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith("error: --to: ") and "--as-of" not in err, err
    assert not (tmp_path / "x").exists()


def test_an_api_client_asking_for_a_period_before_the_rule_is_told_which_date_is_at_fault(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    # The API answers with the message as built (its fields are the options without "--"): it must name --to.
    with session_scope(db_url) as s, pytest.raises(PolicyError) as exc:
        exports.run_export(s, packs, "shipments", date(2024, 7, 1), date(2024, 12, 31), ["json"], tmp_path / "x",
                           actor="test")
    assert str(exc.value).startswith("--to: ") and "--as-of" not in str(exc.value)


# ------------------------------------------------------------------------------ PDF text in any script


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt poppler-utils provides pdftotext")
def test_pdf_shows_consignee_names_in_any_script_distinguishably_not_as_blank_boxes(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    names = ["北京智算", "上海智算", "Łódź Compute"]
    with session_scope(db_url) as s:
        for i, n in enumerate(names):
            parties.add_party(s, n, "AE", address="Doha ☃ Tower")
            caps.add_shipment(s, packs, day=date(2026, 2, 1 + i), consignee=n, destination="AE",
                              chip_name="h100-sxm", count=1, via="licence", actor="test")
    out = tmp_path / "out"
    m = _export(db_url, packs, "shipments", out, ["pdf", "json"])
    pdf = next(f["name"] for f in m["files"] if f["name"].endswith(".pdf"))
    text = subprocess.run(["pdftotext", "-raw", str(out / pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "■" not in text  # no glyph the font lacks drawn as a box
    flat = "".join(text.split())  # table cells wrap: compare without the line breaks
    for shown in ("[U+5317][U+4EAC][U+667A][U+7B97]", "[U+4E0A][U+6D77][U+667A][U+7B97]",
                  "[U+0141]ód[U+017A]Compute", "Doha[U+2603]Tower"):
        assert shown in flat, shown
    assert "U+XXXX" in flat or "code point" in text  # the title page says how such characters are written
    rows = _json(m, out)["tables"]["shipments"]["rows"]
    assert [r["consignee"] for r in rows] == names  # the JSON keeps the text as stored


# ------------------------------------------------------------------------------ ¶10: transfers to entities


def _versions(s: Any, ext: str, site_id: int, versions: list[tuple[datetime, int | None, float]],
              retired: datetime | None = None) -> Holding:
    """A holding with a versioned history: (valid_from, owner_id, count) per version, at one site."""
    first, (last_from, last_owner, last_count) = versions[0][0], versions[-1]
    h = Holding(source="csv", external_id=ext, site_id=site_id, accelerator="h100-sxm", count=last_count,
                owner_id=last_owner, operator_id=last_owner, first_seen=first, last_seen=last_from,
                retired_at=retired)
    s.add(h)
    s.flush()
    for i, (since, owner, count) in enumerate(versions):
        until = versions[i + 1][0] if i + 1 < len(versions) else retired
        s.add(HoldingPeriod(holding_id=h.id, site_id=site_id, accelerator="h100-sxm", count=count, owner_id=owner,
                            operator_id=owner, valid_from=since, valid_to=until))
    s.flush()
    return h


def test_chips_resold_to_another_entity_in_the_same_data_center_are_a_transfer_naming_both_entities(
        store: str, packs: PackRegistry, tmp_path: Path) -> None:
    # Supp. 10 ¶10(a): the accounting gives the chips "transferred to relevant destinations and entities to which
    # transfers have occurred"; a resale in place changes no site, only the owner.
    with session_scope(store) as s:
        seed(s, packs)
        seller = parties.add_party(s, "Frontier Cloud Ops", "US")
        buyer = parties.add_party(s, "=Desert Compute", "AE")
        site = parties.add_site(s, "auh-2", "AE")
        _versions(s, "h-resold-1", site.id, [(datetime(2026, 1, 10, tzinfo=UTC), seller.id, 16.0),
                                             (datetime(2026, 4, 20, tzinfo=UTC), buyer.id, 16.0)])
    out = tmp_path / "out"
    m = _export(store, packs, "transfers", out, ["json", "csv"])
    doc = _json(m, out)
    rows = {r["external_id"]: r for r in doc["tables"]["transfers"]["rows"]}
    resale = rows["h-resold-1"]
    assert (resale["date"], resale["from_site"], resale["to_site"]) == ("2026-04-20", "auh-2", "auh-2")
    assert (resale["from_owner"], resale["to_owner"], resale["kind"]) == ("Frontier Cloud Ops", "=Desert Compute",
                                                                          "change-of-owner")
    assert resale["count"] == 16
    move = rows["h-move-1"]  # the seeded move DE -> AE names its owner on both sides
    assert move["kind"] == "inter-country" and move["from_owner"] == move["to_owner"]
    assert doc["summary"]["changes of owner"] == 1
    name = next(f["name"] for f in m["files"] if f["name"].endswith("_transfers.csv"))
    with (out / name).open(newline="", encoding="utf-8") as f:
        cells = {r["external_id"]: r for r in csv.DictReader(f)}
    assert cells["h-resold-1"]["to_owner"] == "'=Desert Compute"  # a formula-looking name stays text


def test_an_owner_recorded_for_the_first_time_or_cleared_is_not_a_transfer(
        store: str, packs: PackRegistry, tmp_path: Path) -> None:
    # Collectors first given an owner (agent config `owner:`) record one on every holding they see: the chips did
    # not pass to another entity, and reporting the whole fleet as resold would be a false ¶10(a) accounting.
    with session_scope(store) as s:
        seed(s, packs)
        owner = parties.add_party(s, "Frontier Cloud Ops", "US")
        site = parties.add_site(s, "iad-3", "US")
        _versions(s, "h-attributed-1", site.id, [(datetime(2026, 1, 10, tzinfo=UTC), None, 8.0),
                                                 (datetime(2026, 3, 2, tzinfo=UTC), owner.id, 8.0),
                                                 (datetime(2026, 4, 2, tzinfo=UTC), None, 8.0)])
    out = tmp_path / "out"
    doc = _json(_export(store, packs, "transfers", out, ["json"]), out)
    assert "h-attributed-1" not in {r["external_id"] for r in doc["tables"]["transfers"]["rows"]}
    assert doc["summary"]["changes of owner"] == 0


def test_attrition_counts_chips_lost_from_a_holding_whose_count_fell_not_only_whole_holdings_retired(
        store: str, packs: PackRegistry, tmp_path: Path) -> None:
    # Supp. 10 ¶10(b): "information about chip attrition due to factors such as loss, damage, failure ...": a node
    # group reporting 60 GPUs where it had 64 lost 4 chips, though the holding itself stays in service.
    with session_scope(store) as s:
        seed(s, packs)
        owner = parties.add_party(s, "Frontier Cloud Ops", "US")
        site = parties.add_site(s, "iad-2", "US")
        _versions(s, "h-failing-1", site.id, [(datetime(2025, 11, 1, tzinfo=UTC), owner.id, 64.0),
                                              (datetime(2026, 5, 12, tzinfo=UTC), owner.id, 60.0),
                                              (datetime(2026, 6, 1, tzinfo=UTC), owner.id, 62.0),  # 2 repaired
                                              (datetime(2026, 7, 2, tzinfo=UTC), owner.id, 50.0)])  # after --to
    out = tmp_path / "out"
    doc = _json(_export(store, packs, "transfers", out, ["json"]), out)
    rows = doc["tables"]["attrition"]["rows"]
    assert [(r["external_id"], r["count"], r["kind"]) for r in rows] == [
        ("h-dead-1", 8, "retired"), ("h-failing-1", 4, "count-reduced")]
    lost = rows[1]
    assert (lost["retired_at"][:10], lost["site"], lost["country"]) == ("2026-05-12", "iad-2", "US")
    assert doc["summary"]["holdings retired"] == 1 and doc["summary"]["holdings with a reduced count"] == 1
