"""The transfers export states each move and new site as it stood on the day it happened, and owes what the
deadlines list owes.

A move's ``from_tier``/``to_tier`` and a new site's ``tier`` are the countries' tiers on the day of the move or of
the first installation (as a shipment's ``destination_tier`` is on its date), not on ``--to``: Cambodia, in D:5
until 2026-02-03, is Tier 3 for a move there in January 2026. Before the AI Diffusion rule took effect
(2025-01-13) no country has a tier: the cell is empty (JSON null).

Supp. 10 ¶5 asks a UVEU for 60 days' notice of "any planned construction or installations of data centers in
countries not previously included in prior notifications to BIS", besides § 748.15(a)(2)(ii)(A)'s 180 days for
each new location: `veuctl deadlines list` owes both, the export showed only the 180-day one.

Rows of the transfers table are in date order (then by holding), as every other dated table of the export.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from agent import caps, exports, parties
from agent import obligations as ob
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry


def _at(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def _moved(s: Any, owner: int, ext: str, sites: list[tuple[int, datetime]]) -> int:
    """A holding of ``owner`` at each site from its date on (the last version open); its id."""
    h = Holding(source="csv", external_id=ext, site_id=sites[-1][0], accelerator="h100-sxm", count=16,
                owner_id=owner, operator_id=owner, first_seen=sites[0][1], last_seen=sites[-1][1])
    s.add(h)
    s.flush()
    for i, (site, since) in enumerate(sites):
        until = sites[i + 1][1] if i + 1 < len(sites) else None
        s.add(HoldingPeriod(holding_id=h.id, site_id=site, accelerator="h100-sxm", count=16, owner_id=owner,
                            operator_id=owner, valid_from=since, valid_to=until))
    s.flush()
    assert h.id is not None
    return h.id


def _export(url: str, packs: PackRegistry, start: date, end: date, out: Path,
            formats: tuple[str, ...] = ("json",)) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The JSON tables by name (rows as dicts) and the manifest."""
    with session_scope(url) as s:
        m = exports.run_export(s, packs, "transfers", start, end, list(formats), out, actor="test:auditor")
    doc = json.loads((out / next(f["name"] for f in m["files"] if f["name"].endswith(".json"))).read_text())
    return {t: doc["tables"][t]["rows"] for t in doc["tables"]}, m


def _csv(out: Path, m: dict[str, Any], table: str) -> list[dict[str, str]]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(f"_{table}.csv"))
    with (out / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_a_move_into_cambodia_in_january_2026_is_listed_at_tier_3_the_tier_that_day(
        store: str, packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(store) as s:
        fc = parties.add_party(s, "Frontier Cloud", "US")
        us, kh = parties.add_site(s, "iad-1", "US"), parties.add_site(s, "pnh-1", "KH")
        _moved(s, fc.id, "there-and-back", [(us.id, _at(2025, 6, 1)), (kh.id, _at(2026, 1, 20)),
                                           (us.id, _at(2026, 2, 10))])
    tables, _ = _export(store, packs, date(2026, 1, 1), date(2026, 3, 31), tmp_path / "out")
    moves = [(r["date"], r["from_country"], r["from_tier"], r["to_country"], r["to_tier"])
             for r in tables["transfers"]]
    # Cambodia left D:5 on 2026-02-03: Tier 3 on the day chips went there, Tier 2 on the day they left.
    assert moves == [("2026-01-20", "US", 1, "KH", 3), ("2026-02-10", "KH", 2, "US", 1)]
    assert {r["site"]: r["tier"] for r in tables["new_sites"]} == {"pnh-1": 3}


def test_a_move_before_the_rule_took_effect_has_no_tier(store: str, packs: PackRegistry, tmp_path: Path) -> None:
    """Tiers exist from 2025-01-13 on: a 2024 move and a site first installed in 2024 show none (not --to's)."""
    with session_scope(store) as s:
        fc = parties.add_party(s, "Frontier Cloud", "US")
        us, ae = parties.add_site(s, "iad-1", "US"), parties.add_site(s, "auh-1", "AE")
        _moved(s, fc.id, "early", [(us.id, _at(2024, 3, 1)), (ae.id, _at(2024, 9, 1)), (us.id, _at(2025, 3, 1))])
    out = tmp_path / "out"
    tables, m = _export(store, packs, date(2024, 1, 1), date(2025, 3, 31), out, ("json", "csv"))
    assert [(r["date"], r["from_tier"], r["to_tier"]) for r in tables["transfers"]] == [
        ("2024-09-01", None, None), ("2025-03-01", 2, 1)]
    assert {r["site"]: r["tier"] for r in tables["new_sites"]} == {"iad-1": None, "auh-1": None}
    assert [(r["date"], r["from_tier"], r["to_tier"]) for r in _csv(out, m, "transfers")] == [
        ("2024-09-01", "", ""), ("2025-03-01", "2", "1")]


def _seed_new_countries(s: Any, packs: PackRegistry) -> None:
    """A UVEU whose application named the US and Germany, first using a site in the UAE (and later a second one
    there) and one in the UK; another party's chips reached the UK first."""
    fc = parties.add_party(s, "Frontier Cloud", "US")
    other = parties.add_party(s, "Other Co", "US")
    us, de = parties.add_site(s, "iad-1", "US"), parties.add_site(s, "fra-1", "DE")
    ae, ae2 = parties.add_site(s, "auh-1", "AE"), parties.add_site(s, "auh-2", "AE")
    gb = parties.add_site(s, "lon-1", "GB")
    caps.add_authorization(s, packs, "UVEU-FC-1", "uveu", "Frontier Cloud", None, actor="test")
    ob.add_authorization(s, packs, "UVEU-FC-1", date(2025, 1, 20), locations=["US", "DE"], actor="test")
    _moved(s, fc.id, "to-uae", [(us.id, _at(2025, 2, 1)), (ae.id, _at(2026, 3, 2))])
    _moved(s, fc.id, "uae-again", [(de.id, _at(2025, 6, 1)), (ae2.id, _at(2026, 5, 1))])
    _moved(s, other.id, "others", [(us.id, _at(2025, 2, 1)), (gb.id, _at(2026, 3, 10))])
    _moved(s, fc.id, "to-uk", [(de.id, _at(2025, 5, 20)), (gb.id, _at(2026, 4, 1))])


def test_the_first_site_in_a_new_country_shows_the_60_day_notice_the_deadlines_list_owes(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        _seed_new_countries(s, packs)
    end = date(2026, 6, 30)
    out = tmp_path / "out"
    tables, m = _export(db_url, packs, date(2025, 1, 13), end, out, ("json", "csv", "pdf"))
    with session_scope(db_url) as s:
        owed = {d.key: d.due.isoformat() for d in ob.deadline_list(s, packs, end)
                if d.kind == "uveu-new-country-notice"}
    # Supp. 10 ¶5: 60 days before the UVEU's first use in a country its application did not name; one per country.
    assert owed == {"uveu-new-country:UVEU-FC-1:AE": "2026-01-01", "uveu-new-country:UVEU-FC-1:GB": "2026-01-31"}
    sites = {r["site"]: r for r in tables["new_sites"]}
    assert {n: (r["country_notice_days"], r["country_notice_due_by"]) for n, r in sites.items()} == {
        "auh-1": (60, "2026-01-01"), "lon-1": (60, "2026-01-31"),
        "auh-2": (None, None),  # the UAE was notified with auh-1: a second site there owes only its 180 days
        "iad-1": (None, None), "fra-1": (None, None),  # countries the application named
    }
    assert sites["auh-2"]["notice_days"] == 180 and sites["auh-2"]["notice_due_by"] == "2025-11-02"
    by_site = {r["site"]: r for r in _csv(out, m, "new_sites")}
    assert (by_site["auh-1"]["country_notice_days"], by_site["auh-1"]["country_notice_due_by"]) == ("60",
                                                                                                   "2026-01-01")
    assert (by_site["auh-2"]["country_notice_days"], by_site["auh-2"]["country_notice_due_by"]) == ("", "")
    if shutil.which("pdftotext"):
        pdf = out / next(f["name"] for f in m["files"] if f["name"].endswith(".pdf"))
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                              check=True).stdout
        row = next(line for line in text.splitlines() if line.split()[:2] == ["auh-1", "AE"])
        assert "2026-01-01" in row, row  # the country notice's due date, beside the site's own 2025-09-03
        assert "2025-09-03" in row, row


def test_transfers_are_listed_by_date_then_holding(store: str, packs: PackRegistry, tmp_path: Path) -> None:
    """Holdings numbered against the calendar: the table reads in date order, holdings of one day by id."""
    with session_scope(store) as s:
        fc = parties.add_party(s, "Frontier Cloud", "US")
        us, de, gb = (parties.add_site(s, n, c).id for n, c in (("iad-1", "US"), ("fra-1", "DE"), ("lon-1", "GB")))
        late = _moved(s, fc.id, "march", [(us, _at(2025, 6, 1)), (de, _at(2026, 3, 1))])
        noon = _moved(s, fc.id, "jan-5-noon", [(us, _at(2025, 6, 1)), (gb, _at(2026, 1, 5, 12))])
        morning = _moved(s, fc.id, "jan-5-morning", [(us, _at(2025, 6, 1)), (de, _at(2026, 1, 5, 8)),
                                                      (gb, _at(2026, 2, 1))])
    out = tmp_path / "out"
    tables, m = _export(store, packs, date(2026, 1, 1), date(2026, 3, 31), out, ("json", "csv"))
    want = [("2026-01-05", noon), ("2026-01-05", morning), ("2026-02-01", morning), ("2026-03-01", late)]
    assert [(r["date"], r["holding_id"]) for r in tables["transfers"]] == want
    assert [(r["date"], int(r["holding_id"])) for r in _csv(out, m, "transfers")] == want
