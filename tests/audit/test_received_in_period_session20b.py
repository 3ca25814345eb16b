""""holdings received in period" in the installed-base export: the holdings of the installed base on --to (rebuilt
from the dated history, as the holding_detail table is) whose receipt date (first seen, the detail's ``received``)
falls in the period. A chip retired inside the period is not in that installed base, even when it was seen again
after the period (its current row then has no retirement)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agent import exports, parties
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

PERIOD = (date(2025, 1, 1), date(2025, 3, 31))


def _history(s: Any, ext: str, versions: list[tuple[datetime, datetime | None]], site_id: int,
             retired: datetime | None = None) -> None:
    h = Holding(source="csv", external_id=ext, site_id=site_id, accelerator="h100-sxm", count=8.0,
                first_seen=versions[0][0], last_seen=versions[-1][0], retired_at=retired)
    s.add(h)
    s.flush()
    for since, until in versions:
        s.add(HoldingPeriod(holding_id=h.id, site_id=site_id, accelerator="h100-sxm", count=8.0,
                            valid_from=since, valid_to=until))
    s.flush()


def _build(url: str, packs: PackRegistry) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with session_scope(url) as s:
        report = exports.build(s, packs, "installed-base", *PERIOD)
        t = next(t for t in report.tables if t.name == "holding_detail")
        return report.summary, [dict(zip(t.columns, r, strict=True)) for r in t.rows()]


def _seed(url: str) -> None:
    feb1, mar15, may1 = (datetime(2025, m, d, tzinfo=UTC) for m, d in ((2, 1), (3, 15), (5, 1)))
    with session_scope(url) as s:
        a = parties.add_site(s, "bom-dc1", "IN").id
        # Retired inside the period, seen again after it: not in the installed base on 31 March.
        _history(s, "revived-later", [(feb1, mar15), (may1, None)], a)
        # Received in the period and still in force on 31 March (retired after it): counted.
        _history(s, "kept", [(feb1, may1)], a, retired=may1)
        # Received before the period: in the installed base, not a receipt of the period.
        _history(s, "older", [(datetime(2024, 11, 1, tzinfo=UTC), None)], a)
        # Written without a history, received in the period and still in force: counted.
        s.add(Holding(source="csv", external_id="undated", site_id=a, accelerator="h100-sxm", count=2.0,
                      first_seen=feb1, last_seen=feb1))


def _received_in_detail(rows: list[dict[str, Any]]) -> list[str]:
    lo = datetime(2025, 1, 1, tzinfo=UTC)
    hi = datetime(2025, 4, 1, tzinfo=UTC)
    out = []
    for r in rows:
        got = r["received"] if r["received"].tzinfo else r["received"].replace(tzinfo=UTC)
        if lo <= got < hi:
            out.append(str(r["external_id"]))
    return sorted(out)


def test_a_holding_retired_in_the_period_and_revived_later_is_not_received_in_it(
        store: str, packs: PackRegistry) -> None:
    _seed(store)
    summary, rows = _build(store, packs)
    assert sorted(r["external_id"] for r in rows) == ["kept", "older", "undated"]
    assert _received_in_detail(rows) == ["kept", "undated"]
    assert summary["holdings received in period"] == 2


def test_without_the_caps_engine_the_count_is_the_same(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import agent

    _seed(store)
    monkeypatch.setitem(sys.modules, "agent.caps", None)  # type: ignore[arg-type]
    monkeypatch.delattr(agent, "caps", raising=False)
    summary, rows = _build(store, packs)
    assert "accelerators" in summary  # the build without caps
    assert _received_in_detail(rows) == ["kept", "undated"]
    assert summary["holdings received in period"] == 2
