"""The transfers export's notice dates are the deadlines list's: `veuctl export transfers` against `deadlines list`.

Supp. 10 ¶5 (60 days' notice of an inter-country transfer by a UVEU) and § 748.15(a)(2)(ii)(A) (180 days' notice
of a new UVEU data center) bind from the AI Diffusion compliance date, 2025-05-15 (``veu-notices``
``compliance_from``). The export showed a ``notice_due_by`` for a move before that date, for a move of chips no
UVEU holder owns, and computed it with the notice period in force at the report's end date rather than on the
day of the move; `deadlines list` owed nothing for the first two and used the period in force on the move's day.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from agent import caps, exports, parties
from agent import obligations as ob
from agent.packs import load_registry
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

START, END = date(2025, 1, 13), date(2026, 6, 30)

# An operator pack lengthening the transfer notice from 2026-06-01: after the 2026 moves, before END.
LATER_NOTICES = """\
id: acme-notices
version: "1"
title: Acme notice periods (test)
provisions:
  - id: veu-notices
    title: "Notices under licence D1"
    citation: "licence D1, condition 4"
    effective_from: 2026-06-01
    status:
      - {since: 2026-06-01, codified: false, enforced: true}
    values:
      uveu_new_datacenter_notice_days: 200
      inter_country_transfer_notice_days: 90
      theft_loss_report_days: 30
"""


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def _moved(s: Any, owner: int, ext: str, sites: list[tuple[int, datetime]]) -> None:
    """A holding of ``owner`` at each site from its date on (the last version open)."""
    h = Holding(source="csv", external_id=ext, site_id=sites[-1][0], accelerator="h100-sxm", count=16,
                owner_id=owner, operator_id=owner, first_seen=sites[0][1], last_seen=sites[-1][1])
    s.add(h)
    s.flush()
    for i, (site, since) in enumerate(sites):
        until = sites[i + 1][1] if i + 1 < len(sites) else None
        s.add(HoldingPeriod(holding_id=h.id, site_id=site, accelerator="h100-sxm", count=16, owner_id=owner,
                            operator_id=owner, valid_from=since, valid_to=until))
    s.flush()


def _seed(s: Any, packs: PackRegistry) -> None:
    fc = parties.add_party(s, "Frontier Cloud", "US")
    other = parties.add_party(s, "Other Co", "US")
    us = parties.add_site(s, "iad-1", "US")
    de = parties.add_site(s, "fra-1", "DE")
    ae = parties.add_site(s, "auh-1", "AE")
    gb = parties.add_site(s, "lon-1", "GB")
    caps.add_authorization(s, packs, "UVEU-FC-1", "uveu", "Frontier Cloud", None, actor="test")
    ob.add_authorization(s, packs, "UVEU-FC-1", date(2025, 1, 20), locations=["US", "DE"], actor="test")
    _moved(s, fc.id, "early", [(us.id, _at(2025, 2, 1)), (de.id, _at(2025, 4, 1))])  # before 2025-05-15
    _moved(s, fc.id, "late", [(us.id, _at(2025, 2, 1)), (ae.id, _at(2026, 3, 2))])  # a UVEU holder's move
    _moved(s, other.id, "others", [(us.id, _at(2025, 2, 1)), (gb.id, _at(2026, 3, 10))])  # no UVEU holder's
    _moved(s, fc.id, "london", [(de.id, _at(2025, 5, 20)), (gb.id, _at(2026, 4, 1))])  # to a new location


@pytest.fixture()
def later_packs(tmp_path: Path) -> PackRegistry:
    (tmp_path / "packs").mkdir()
    (tmp_path / "packs" / "acme.yaml").write_text(LATER_NOTICES)
    return load_registry([tmp_path / "packs"])


def _export(url: str, packs: PackRegistry, out: Path) -> dict[str, list[dict[str, Any]]]:
    with session_scope(url) as s:
        m = exports.run_export(s, packs, "transfers", START, END, ["json"], out, actor="test:auditor")
    name = next(f["name"] for f in m["files"] if f["name"].endswith(".json"))
    doc = json.loads((out / name).read_text())
    return {t: doc["tables"][t]["rows"] for t in doc["tables"]}


def _deadlines(url: str, packs: PackRegistry) -> list[Any]:
    with session_scope(url) as s:
        return ob.deadline_list(s, packs, END)


@pytest.mark.parametrize("pack_set", ["built-in", "later-notices"])
def test_transfer_notice_dates_are_those_of_the_deadlines_list(
        db_url: str, packs: PackRegistry, later_packs: PackRegistry, tmp_path: Path, pack_set: str) -> None:
    reg = packs if pack_set == "built-in" else later_packs
    with session_scope(db_url) as s:
        _seed(s, reg)
    tables = _export(db_url, reg, tmp_path / "out")
    with session_scope(db_url) as s:
        ext = {h.id: h.external_id for h in s.exec(select(Holding)).all()}
    owed = {}
    for d in _deadlines(db_url, reg):
        m = re.search(r":(\d{4}-\d{2}-\d{2})#h(\d+)$", d.key)
        if d.kind == "inter-country-transfer-notice" and m:
            owed[(ext[int(m[2])], m[1])] = d.due.isoformat()
    # The deadlines list: the 2026 UVEU moves owe a 60-day notice (the period on the move's day), no other does.
    assert owed == {("late", "2026-03-02"): "2026-01-01", ("london", "2026-04-01"): "2026-01-31"}
    moves = {(r["external_id"], r["date"]): r for r in tables["transfers"] if r["kind"] == "inter-country"}
    assert set(moves) == {("early", "2025-04-01"), ("late", "2026-03-02"), ("others", "2026-03-10"),
                          ("london", "2026-04-01")}
    assert {k: r["notice_due_by"] for k, r in moves.items() if r["notice_due_by"]} == owed
    assert moves[("late", "2026-03-02")]["notice_days"] == 60
    assert moves[("early", "2025-04-01")]["notice_days"] is None  # before the compliance date: none owed
    assert moves[("others", "2026-03-10")]["notice_days"] is None  # no UVEU holder's chips: none owed


def test_new_site_notice_dates_are_those_of_the_deadlines_list(
        db_url: str, later_packs: PackRegistry, tmp_path: Path) -> None:
    with session_scope(db_url) as s:
        _seed(s, later_packs)
    tables = _export(db_url, later_packs, tmp_path / "out")
    owed = {d.key.rsplit(":", 1)[1]: d.due.isoformat() for d in _deadlines(db_url, later_packs)
            if d.kind == "uveu-new-datacenter-notice"}
    # auh-1 (AE) and lon-1 (GB) are not among the application's locations; 180 days before the UVEU's first use.
    assert owed == {"auh-1": "2025-09-03", "lon-1": "2025-10-03"}
    sites = {r["site"]: r for r in tables["new_sites"]}
    assert {n: r["notice_due_by"] for n, r in sites.items() if r["notice_due_by"]} == owed
    assert sites["auh-1"]["notice_days"] == 180


def test_a_new_site_whose_country_has_a_planned_new_location_shows_that_notice(
        db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    """A planned new location (`deadlines event --kind new-location`, its --site free text) stands for the
    country's first site in the deadlines list; the export left that site's notice blank, which reads 'none owed'."""
    with session_scope(db_url) as s:
        _seed(s, packs)
        ob.add_event(s, "new-location", "NL-1", date(2026, 3, 2), authorization="UVEU-FC-1", site="Abu Dhabi DC",
                     to_country="AE", actor="test")
    tables = _export(db_url, packs, tmp_path / "out")
    owed = [d for d in _deadlines(db_url, packs) if d.kind == "uveu-new-datacenter-notice" and ":AE:" in d.key]
    assert owed, "the planned location is owed a notice"
    sites = {r["site"]: r for r in tables["new_sites"]}
    assert sites["auh-1"]["notice_due_by"] == min(d.due for d in owed).isoformat()


def test_an_export_to_the_end_of_the_calendar_is_written(db_url: str, packs: PackRegistry, tmp_path: Path) -> None:
    """--to 9998-12-31: the deadlines list's look-ahead went past the calendar (a 'too large' error)."""
    with session_scope(db_url) as s:
        _seed(s, packs)
        m = exports.run_export(s, packs, "transfers", START, date(9998, 12, 31), ["json"], tmp_path / "o",
                               actor="test:auditor")
    assert any(f["name"].endswith(".json") for f in m["files"])
