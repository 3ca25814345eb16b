"""Chip counts in every output of an export are the CSV's and JSON's: the installed base written without the caps
engine sums its accelerators exactly (an int when whole, never 1,100.0), and the PDF prints a fractional count
(MIG slices) as the CSV writes it, not rounded to a whole chip once it is over 1,000."""

from __future__ import annotations

import json
import sys
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from reportlab.platypus import Paragraph
from reportlab.platypus import Table as PdfTable

import agent
from agent import exports
from agent.exports import pdf as pdf_mod
from agent.exports.base import Report, Table
from agent.store import session_scope
from agent.store.tables.core import Holding, Site
from policies.packs import PackRegistry
from tests.audit.seed import T0, seed

START, END = date(2026, 1, 1), date(2026, 6, 30)


def _add_slices(url: str, n: int, first: int = 0) -> None:
    """``n`` holdings of one MIG slice (1/7 of an A100) at iad-1, numbered from ``first``."""
    with session_scope(url) as s:
        site = s.query(Site).filter(Site.name == "iad-1").one()
        for i in range(first, first + n):
            s.add(Holding(source="csv", external_id=f"mig-{i}", site_id=site.id, accelerator="a100-sxm4-80gb",
                          count=1 / 7, first_seen=T0, last_seen=T0))


@pytest.fixture()
def fleet(db_url: str, packs: PackRegistry) -> str:
    with session_scope(db_url) as s:
        seed(s, packs)
    return db_url


@pytest.fixture()
def without_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build without the caps engine: ``from agent import caps`` fails as it would there."""
    monkeypatch.setitem(sys.modules, "agent.caps", None)  # type: ignore[arg-type]
    monkeypatch.delattr(agent, "caps", raising=False)


def _json_doc(m: dict[str, Any], out: Path) -> dict[str, Any]:
    name = next(f["name"] for f in m["files"] if f["name"].endswith(".json"))
    return json.loads((out / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _export(url: str, packs: PackRegistry, out: Path, formats: list[str]) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.run_export(s, packs, "installed-base", START, END, formats, out, actor="test:auditor")


def test_without_the_caps_engine_the_accelerator_total_is_a_whole_count(
        fleet: str, packs: PackRegistry, tmp_path: Path, without_caps: None) -> None:
    m = _export(fleet, packs, tmp_path, ["csv", "json"])
    doc = _json_doc(m, tmp_path)
    assert any("caps engine" in n for n in doc["notes"]), doc["notes"]
    total = doc["summary"]["accelerators"]
    # 512 + 256 (US) + 128 (DE) + 64 + 32 (AE, the moved one included); the retired 8 went on 1 April.
    assert total == 992 and type(total) is int, total
    rows = doc["tables"]["countries"]["rows"]
    assert sum(r["count"] for r in rows) == total and all(type(r["count"]) is int for r in rows), rows


def test_without_the_caps_engine_a_fractional_total_is_the_exact_sum_of_its_slices(
        fleet: str, packs: PackRegistry, tmp_path: Path, without_caps: None) -> None:
    _add_slices(fleet, 8)  # 8/7 of an A100: a float sum drifts
    m = _export(fleet, packs, tmp_path, ["csv", "json"])
    total = _json_doc(m, tmp_path)["summary"]["accelerators"]
    assert total == float(992 + Fraction(8, 7)), total
    _add_slices(fleet, 6, first=8)  # 14 slices: two whole GPUs, an int again
    m = _export(fleet, packs, tmp_path / "again", ["json"])
    total = _json_doc(m, tmp_path / "again")["summary"]["accelerators"]
    assert total == 994 and type(total) is int, total


def _cells(story: list[Any]) -> list[str]:
    out: list[str] = []
    for f in story:
        if isinstance(f, PdfTable):
            for row in f._cellvalues:  # the cells as drawn
                out += [c.getPlainText() if isinstance(c, Paragraph) else str(c) for c in row]
    return out


def test_the_pdf_prints_a_fractional_chip_count_as_the_csv_writes_it() -> None:
    count = 1000 + 1 / 7  # 7,001 MIG slices of one GPU type at a site
    rows = [("iad-1", "a100-sxm4-80gb", count), ("iad-1", "h100-sxm", 1234.0), ("fra-1", "h100-sxm", 1 / 7)]
    report = Report(kind="installed-base", title="t", start=START, end=END, as_of=END,
                    summary={"accelerators": 1234.0})
    report.tables = [Table("holdings", "Holdings", ["site", "accelerator", "count"], lambda: iter(rows))]
    cells = _cells(pdf_mod._story(report, {}))
    assert "1,000.1428571428571" in cells, cells  # repr(1000 + 1/7) = the CSV's cell, with the thousands marked
    assert "1,001" not in cells and "1,000" not in cells, cells
    assert "1,234" in cells and "1,234.0" not in cells, cells  # a whole count: no decimal point, as in the CSV
    assert "0.14285714285714285" in cells, cells  # not 0.1429
    report.summary, report.tables = {"accelerators": count}, []  # the key figure alone
    assert "1,000.1428571428571" in _cells(pdf_mod._story(report, {})), cells


def test_the_installed_base_pdf_is_written_with_exact_counts(fleet: str, packs: PackRegistry, tmp_path: Path) -> None:
    _add_slices(fleet, 1)
    m = _export(fleet, packs, tmp_path, ["csv", "json", "pdf"])
    assert any(f["name"].endswith(".pdf") for f in m["files"])
