"""§ 748.15(a)(2)(iii)(B) Table 1 caps an NVEU's installed base quarter by quarter, with a cumulative allocation that
grows: a reservation planned for a later quarter is checked against that quarter's allocation, and does not count
against today's smaller one (it showed the NVEU over its allocation today, with nothing installed)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest

from agent import caps as svc
from agent.packs import registry
from agent.store import session_scope
from tests.caps.conftest import seed_fleet

TODAY = date(2026, 11, 2)  # in 2026 Q4 of Table 1
LATER = date(2027, 2, 1)  # in the 2027 allocation, larger than 2026 Q4's


@pytest.fixture()
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    url = str(request.getfixturevalue(request.param))
    monkeypatch.setattr(svc, "utcnow", lambda: datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=UTC))
    seed_fleet(url)
    return url


def _nveu(url: str, on: date) -> dict[str, object]:
    packs = registry()
    with session_scope(url) as s:
        cap = next(c for c in svc.caps_for(s, packs, "falcon-ae", on) if c.id == "nveu.installed_base.AE")
    return {"ok": cap.ok, "value": cap.numerator, "limit": cap.limit,
            "reservations": [p.label for p in cap.contributors if p.label.startswith("reservation")]}


def _chips_between_the_allocations(url: str) -> int:
    """Enough H100s that Falcon's installed base passes 2026 Q4's allocation but stays within 2027's."""
    packs = registry()
    today_limit, later_limit = _nveu(url, TODAY)["limit"], _nveu(url, LATER)["limit"]
    assert isinstance(today_limit, type(later_limit)) and later_limit > today_limit  # type: ignore[operator]
    tpp = svc.chip(packs, "h100-sxm", TODAY).tpp
    base = _nveu(url, TODAY)["value"]
    n = math.ceil((today_limit - base) / tpp) + 10  # type: ignore[operator]
    assert base + n * tpp <= later_limit  # type: ignore[operator]
    return n


@pytest.mark.parametrize("store", ["db_url", "pg_url"], indirect=True)
def test_nveu_reservation_for_a_later_quarter_counts_against_that_quarters_allocation_not_todays(
    store: str,
) -> None:
    n = _chips_between_the_allocations(store)
    packs = registry()
    with session_scope(store) as s:
        # Within 2027's allocation: reserved (the plan is checked on its own date).
        svc.reserve(s, packs, "falcon-ae", n=n, chip_name="h100-sxm", site="dxb", planned_for=LATER)

    today = _nveu(store, TODAY)
    assert today["ok"] is True and today["reservations"] == []  # not installed by today, not counted today
    later = _nveu(store, LATER)
    assert later["ok"] is True and len(later["reservations"]) == 1  # type: ignore[arg-type]
    assert later["value"] > today["limit"]  # type: ignore[operator]  # over today's allocation, within its own


@pytest.mark.parametrize("store", ["db_url", "pg_url"], indirect=True)
def test_nveu_reservation_due_by_the_date_still_counts_and_one_over_its_quarter_is_refused(store: str) -> None:
    n = _chips_between_the_allocations(store)
    packs = registry()
    with session_scope(store) as s, pytest.raises(svc.CapExceeded, match="--count: reserving"):
        # The same plan for this quarter is over this quarter's allocation: refused, nothing stored.
        svc.reserve(s, packs, "falcon-ae", n=n, chip_name="h100-sxm", site="dxb", planned_for=TODAY)
    with session_scope(store) as s:
        svc.reserve(s, packs, "falcon-ae", n=10, chip_name="h100-sxm", site="dxb", planned_for=TODAY)
    assert len(_nveu(store, TODAY)["reservations"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("store", ["db_url"], indirect=True)
def test_planning_today_still_counts_a_later_quarters_reservation(store: str) -> None:
    """Planning stays conservative: a new plan for this quarter is checked with every open reservation counted
    (chips added now are still installed when the later plan's chips arrive)."""
    n = _chips_between_the_allocations(store)
    packs = registry()
    with session_scope(store) as s:
        svc.reserve(s, packs, "falcon-ae", n=n - 20, chip_name="h100-sxm", site="dxb", planned_for=LATER)
    with session_scope(store) as s:
        res = svc.whatif(s, packs, "falcon-ae", op="add", n=20, chip_name="h100-sxm", site="dxb", as_of=TODAY)
    assert res["ok"] is False and res["reservations_counted"] == 1
