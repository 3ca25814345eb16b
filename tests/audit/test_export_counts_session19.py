"""Chip counts in exports are written as BIS reads them: a whole count as an integer (64, never 64.0), in CSV and
JSON, and a fractional one (MIG slices shipped) exactly."""

from __future__ import annotations

import csv
import json
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from agent import exports
from agent.caps import chip
from agent.store import session_scope
from agent.store.tables.caps import Shipment
from agent.store.tables.core import Party
from policies.packs import PackRegistry
from tests.audit.seed import seed, seed_cases

START, END = date(2026, 1, 1), date(2026, 6, 30)


def _export(url: str, packs: PackRegistry, kind: str, out: Path) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.run_export(s, packs, kind, START, END, ["csv", "json"], out, actor="test:auditor")


def _csv(m: dict[str, Any], out: Path, table: str) -> list[dict[str, str]]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(f"{table}.csv"))
    with (out / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _json_rows(m: dict[str, Any], out: Path, table: str) -> list[dict[str, Any]]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(".json"))
    return json.loads((out / name).read_text(encoding="utf-8"))["tables"][table]["rows"]  # type: ignore[no-any-return]


@pytest.fixture()
def fleet(db_url: str, packs: PackRegistry) -> str:
    with session_scope(db_url) as s:
        seed(s, packs)
        seed_cases(s)
        # One MIG slice (1/7 of an A100) and seven of them (a whole GPU's worth), as a store written before
        # shipments took whole chips only (session 21b) holds them: fractional counts of the GPU.
        gpu = chip(packs, "NVIDIA-A100-SXM4-80GB", date(2026, 3, 1))
        consignee = s.exec(select(Party).where(Party.name == "Gulf AI")).one()
        for day, n in ((date(2026, 3, 1), 1), (date(2026, 3, 2), 7)):
            s.add(Shipment(day=day, consignee_id=consignee.id, destination="AE", accelerator=gpu.id, count=n / 7,
                           tpp_each=float(gpu.tpp), eccn=gpu.eccn, via="licence"))
    return db_url


def test_shipment_counts_are_written_as_whole_numbers_in_csv_and_json(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "shipments", tmp_path)
    rows = _csv(m, tmp_path, "shipments")
    counts = [r["count"] for r in rows if r["accelerator"] == "h100-sxm"]
    assert counts == ["64", "100"]
    js = [r["count"] for r in _json_rows(m, tmp_path, "shipments") if r["accelerator"] == "h100-sxm"]
    assert js == [64, 100] and all(type(c) is int for c in js)
    per_year = {(r["via"], r["count"]) for r in _csv(m, tmp_path, "consignee_year")}
    assert ("nveu", "64") in per_year and ("lpp", "100") in per_year
    assert all(type(r["count"]) is int for r in _json_rows(m, tmp_path, "consignee_year") if r["via"] != "licence")


def test_a_fractional_shipment_count_is_still_written_exactly(
        fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    m = _export(fleet, packs, "shipments", tmp_path)
    mig = [r["count"] for r in _csv(m, tmp_path, "shipments") if r["accelerator"] == "a100-sxm4-80gb"]
    assert [Fraction(c).limit_denominator(10_000) for c in mig] == [Fraction(1, 7), Fraction(1)]
    assert mig == [repr(1 / 7), "1"]
    js = [r["count"] for r in _json_rows(m, tmp_path, "shipments") if r["accelerator"] == "a100-sxm4-80gb"]
    assert js == [1 / 7, 1]
    # The year's sum of slices, 8/7, is that fraction (a float sum drifts), as the installed base writes it.
    licence = [r["count"] for r in _csv(m, tmp_path, "consignee_year") if r["via"] == "licence"]
    assert licence == [repr(8 / 7)]


@pytest.mark.parametrize(("kind", "table", "column"), [
    ("installed-base", "holdings", "count"),
    ("installed-base", "holding_detail", "count"),
    ("installed-base", "countries", "count"),
    ("transfers", "transfers", "count"),
    ("transfers", "attrition", "count"),
    ("decisions", "decisions", "chips"),
    ("red-flags", "held_decisions", "chips"),
])
def test_every_exports_whole_chip_counts_are_written_without_a_decimal_point(
        fleet: str, packs: PackRegistry, tmp_path: Path, kind: str, table: str, column: str) -> None:
    m = _export(fleet, packs, kind, tmp_path)
    rows = _csv(m, tmp_path, table)
    assert rows, f"{kind}/{table}: no rows to check"
    whole = [r[column] for r in rows if r[column] and Fraction(r[column]).denominator == 1]
    assert whole and not [c for c in whole if "." in c or "e" in c.lower()], whole
    js = [r[column] for r in _json_rows(m, tmp_path, table)]
    assert not [c for c in js if isinstance(c, float) and c.is_integer()], js
