"""Supp. 10 ¶10 reports over adjacent periods: every holding change in exactly one period, and a holding retired
and later seen again keeps its retirement as attrition and reports its return."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from agent import exports, parties
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

Q1, Q2 = (date(2026, 1, 1), date(2026, 3, 31)), (date(2026, 4, 1), date(2026, 6, 30))
APR_1 = datetime(2026, 4, 1, tzinfo=UTC)  # midnight ending Q1's --to day and starting Q2's --from day


def _history(s: Any, ext: str, versions: list[tuple[datetime, datetime | None, int, float]],
             retired: datetime | None = None) -> Holding:
    """A holding with its versions (valid_from, valid_to, site_id, count); the holding row is its current state."""
    last = versions[-1]
    h = Holding(source="csv", external_id=ext, site_id=last[2], accelerator="h100-sxm", count=last[3],
                first_seen=versions[0][0], last_seen=last[0], retired_at=retired)
    s.add(h)
    s.flush()
    for since, until, site_id, count in versions:
        s.add(HoldingPeriod(holding_id=h.id, site_id=site_id, accelerator="h100-sxm", count=count,
                            valid_from=since, valid_to=until))
    s.flush()
    return h


def _table(url: str, packs: PackRegistry, kind: str, period: tuple[date, date], name: str) -> list[dict[str, Any]]:
    with session_scope(url) as s:
        report = exports.build(s, packs, kind, *period)
        table = next(t for t in report.tables if t.name == name)
        return [dict(zip(table.columns, r, strict=True)) for r in table.rows()]


def _summary(url: str, packs: PackRegistry, kind: str, period: tuple[date, date]) -> dict[str, Any]:
    with session_scope(url) as s:
        return exports.build(s, packs, kind, *period).summary


def _ids(rows: list[dict[str, Any]], key: str = "external_id") -> list[str]:
    return sorted(str(r[key]) for r in rows)


# ------------------------------------------------------------------------------ midnight between two periods


def test_a_change_at_midnight_between_two_quarters_is_reported_in_the_later_quarter_only(
        store: str, packs: PackRegistry) -> None:
    # --from and --to are both included: 00:00:00 UTC on 1 April is the first instant of Q2, none of Q1.
    with session_scope(store) as s:
        a, b = parties.add_site(s, "fra-9", "DE").id, parties.add_site(s, "auh-9", "AE").id
        jan = datetime(2026, 1, 10, tzinfo=UTC)
        _history(s, "moved-at-midnight", [(jan, APR_1, a, 8.0), (APR_1, None, b, 8.0)])
        _history(s, "shrunk-at-midnight", [(jan, APR_1, a, 8.0), (APR_1, None, a, 6.0)])
        _history(s, "retired-at-midnight", [(jan, APR_1, a, 4.0)], retired=APR_1)
    assert _table(store, packs, "transfers", Q1, "transfers") == []
    assert _table(store, packs, "transfers", Q1, "attrition") == []
    assert _ids(_table(store, packs, "transfers", Q2, "transfers")) == ["moved-at-midnight"]
    assert _ids(_table(store, packs, "transfers", Q2, "attrition")) == ["retired-at-midnight", "shrunk-at-midnight"]


def test_a_change_stamped_with_another_utc_offset_falls_in_the_quarter_of_its_utc_day(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    # 1 April 01:30 in Berlin summer time is 31 March 23:30 UTC: Q1, whatever zone the writer or the PostgreSQL
    # session (PGTZ) reads it in.
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")
    cest = timezone(timedelta(hours=2))
    with session_scope(store) as s:
        a, b = parties.add_site(s, "fra-9", "DE").id, parties.add_site(s, "auh-9", "AE").id
        late_q1 = datetime(2026, 4, 1, 1, 30, tzinfo=cest)
        early_q2 = datetime(2026, 3, 31, 20, 0, tzinfo=timezone(timedelta(hours=-5)))  # 1 April 01:00 UTC
        jan = datetime(2026, 1, 10, tzinfo=UTC)
        _history(s, "moved-late-q1", [(jan, late_q1, a, 8.0), (late_q1, None, b, 8.0)])
        _history(s, "moved-early-q2", [(jan, early_q2, a, 8.0), (early_q2, None, b, 8.0)])
    q1 = _table(store, packs, "transfers", Q1, "transfers")
    q2 = _table(store, packs, "transfers", Q2, "transfers")
    assert [(r["external_id"], str(r["date"])) for r in q1] == [("moved-late-q1", "2026-03-31")]
    assert [(r["external_id"], str(r["date"])) for r in q2] == [("moved-early-q2", "2026-04-01")]


def test_two_adjacent_quarters_together_report_every_retirement_once(store: str, packs: PackRegistry) -> None:
    second = timedelta(microseconds=1)
    with session_scope(store) as s:
        a = parties.add_site(s, "fra-9", "DE").id
        jan = datetime(2026, 1, 10, tzinfo=UTC)
        for i, t in enumerate((APR_1 - second, APR_1, APR_1 + second)):
            _history(s, f"retired-{i}", [(jan, t, a, 2.0)], retired=t)
        s.add(Holding(source="csv", external_id="retired-undated", site_id=a, accelerator="h100-sxm", count=1,
                      first_seen=jan, last_seen=jan, retired_at=APR_1))
    q1 = _ids(_table(store, packs, "transfers", Q1, "attrition"))
    q2 = _ids(_table(store, packs, "transfers", Q2, "attrition"))
    assert q1 == ["retired-0"]
    assert q2 == ["retired-1", "retired-2", "retired-undated"]


def test_the_installed_base_on_to_is_the_one_in_force_through_that_day_not_after_the_next_midnight(
        store: str, packs: PackRegistry) -> None:
    # A holding moved, or retired, at 00:00 UTC on 1 April was at its old site, in service, all of 31 March.
    with session_scope(store) as s:
        a, b = parties.add_site(s, "fra-9", "DE").id, parties.add_site(s, "auh-9", "AE").id
        jan = datetime(2026, 1, 10, tzinfo=UTC)
        _history(s, "moved-at-midnight", [(jan, APR_1, a, 8.0), (APR_1, None, b, 8.0)])
        _history(s, "retired-at-midnight", [(jan, APR_1, a, 4.0)], retired=APR_1)
    rows = _table(store, packs, "installed-base", Q1, "holding_detail")
    assert sorted((r["external_id"], r["site"], r["count"]) for r in rows) == [
        ("moved-at-midnight", "fra-9", 8.0), ("retired-at-midnight", "fra-9", 4.0)]
    assert _summary(store, packs, "installed-base", Q1)["holdings received in period"] == 2


# ------------------------------------------------------------------------------ retired, then seen again


def test_a_holding_retired_and_seen_again_in_a_later_quarter_keeps_its_retirement_as_attrition(
        store: str, packs: PackRegistry) -> None:
    # The holding's current row no longer says it was retired; its history does.
    with session_scope(store) as s:
        a = parties.add_site(s, "fra-9", "DE").id
        jan, feb, may = (datetime(2026, m, d, tzinfo=UTC) for m, d in ((1, 10), (2, 14), (5, 3)))
        _history(s, "came-back", [(jan, feb, a, 8.0), (may, None, a, 8.0)])
    q1 = _table(store, packs, "transfers", Q1, "attrition")
    assert [(r["external_id"], r["count"], r["kind"], r["site"], str(r["retired_at"])[:10]) for r in q1] == [
        ("came-back", 8.0, "retired", "fra-9", "2026-02-14")]
    assert _summary(store, packs, "transfers", Q1)["holdings retired"] == 1
    assert _table(store, packs, "transfers", Q1, "returned") == []
    assert _table(store, packs, "transfers", Q2, "attrition") == []
    q2 = _table(store, packs, "transfers", Q2, "returned")
    assert [(r["external_id"], r["count"], r["site"], str(r["returned_at"])[:10]) for r in q2] == [
        ("came-back", 8.0, "fra-9", "2026-05-03")]
    summary = _summary(store, packs, "transfers", Q2)
    assert summary["holdings retired"] == 0 and summary["holdings returned to service"] == 1


def test_a_holding_retired_and_seen_again_within_one_quarter_reports_both_and_no_count_reduction(
        store: str, packs: PackRegistry) -> None:
    # 8 chips retired, 6 came back: the retirement is the attrition (8), the return its own row (6); the 2 fewer
    # are not a second loss of the same chips. Returns are a table of their own: summing attrition counts the losses.
    with session_scope(store) as s:
        a = parties.add_site(s, "fra-9", "DE").id
        jan, feb, mar = (datetime(2026, m, d, tzinfo=UTC) for m, d in ((1, 10), (2, 14), (3, 3)))
        _history(s, "came-back-fewer", [(jan, feb, a, 8.0), (mar, None, a, 6.0)])
    lost = _table(store, packs, "transfers", Q1, "attrition")
    assert [(r["count"], r["kind"], str(r["retired_at"])[:10]) for r in lost] == [(8.0, "retired", "2026-02-14")]
    back = _table(store, packs, "transfers", Q1, "returned")
    assert [(r["count"], str(r["returned_at"])[:10]) for r in back] == [(6.0, "2026-03-03")]
    summary = _summary(store, packs, "transfers", Q1)
    assert summary["holdings retired"] == 1 and summary["holdings returned to service"] == 1
    assert summary["holdings with a reduced count"] == 0


def test_a_register_row_dropped_and_listed_again_is_one_retirement_and_one_return_in_the_report(
        store: str, packs: PackRegistry, tmp_path: Any) -> None:
    # Through the real import path: the re-import that drops SN-2 retires it, the next one lists it again.
    from agent.inventory import import_register
    from agent.store.tables.core import utc_today

    with session_scope(store) as s:
        parties.add_party(s, "Acme Cloud", "US")
        parties.add_site(s, "Dublin DC1", "IE")
    header, one = "site,accelerator,count,owner,operator,serial\n", "Dublin DC1,h100,1,Acme Cloud,Acme Cloud,SN-1\n"
    f = tmp_path / "register.csv"
    for body in (one + one.replace("SN-1", "SN-2"), one, one + one.replace("SN-1", "SN-2")):
        f.write_text(header + body)
        import_register(f, store)
    today = (utc_today(), utc_today())
    assert [(r["external_id"], r["kind"]) for r in _table(store, packs, "transfers", today, "attrition")] == [
        ("serial:SN-2", "retired")]
    assert _ids(_table(store, packs, "transfers", today, "returned")) == ["serial:SN-2"]


def test_a_holding_recorded_without_history_retired_then_listed_again_keeps_its_retirement(
        store: str, packs: PackRegistry, tmp_path: Any) -> None:
    # A holding written directly (no history rows, as the demo and older stores write them) was retired in
    # February; today the register lists it again. Reviving it must not erase its retirement from Q1's report.
    from agent.inventory import import_register
    from agent.store.tables.core import utc_today

    with session_scope(store) as s:
        owner = parties.add_party(s, "Acme Cloud", "US")
        site = parties.add_site(s, "Dublin DC1", "IE")
        s.add(Holding(source="csv", external_id="serial:SN-9", scope="register:register.csv", site_id=site.id,
                      accelerator="h100-sxm", count=1.0, owner_id=owner.id, operator_id=owner.id, serial="SN-9",
                      first_seen=datetime(2025, 11, 2, tzinfo=UTC), last_seen=datetime(2026, 2, 14, tzinfo=UTC),
                      retired_at=datetime(2026, 2, 14, tzinfo=UTC)))
    f = tmp_path / "register.csv"
    f.write_text("site,accelerator,count,owner,operator,serial\nDublin DC1,h100,1,Acme Cloud,Acme Cloud,SN-9\n")
    import_register(f, store)
    lost = _table(store, packs, "transfers", Q1, "attrition")
    assert [(r["external_id"], r["kind"], str(r["retired_at"])[:10]) for r in lost] == [
        ("serial:SN-9", "retired", "2026-02-14")]
    today = (utc_today(), utc_today())
    assert _ids(_table(store, packs, "transfers", today, "returned")) == ["serial:SN-9"]
    # The installed base as of a day of its first life still counts it there.
    rows = _table(store, packs, "installed-base", (date(2026, 1, 1), date(2026, 1, 31)), "holding_detail")
    assert _ids(rows) == ["serial:SN-9"]
