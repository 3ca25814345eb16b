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


@pytest.mark.parametrize("store", ["db_url", "pg_url"], indirect=True)
def test_a_plan_for_now_is_checked_on_todays_allocation_and_beside_each_later_plan_on_its_date(store: str) -> None:
    """Chips placed now are still installed when a later plan's chips arrive: the plan for now must fit today's
    allocation with the plans due by today, and each later quarter's with the plans due by then."""
    packs = registry()
    later_limit, base = _nveu(store, LATER)["limit"], _nveu(store, TODAY)["value"]
    tpp = svc.chip(packs, "h100-sxm", TODAY).tpp
    m = math.floor((later_limit - base) / tpp) - 5  # type: ignore[operator]  # 2027's allocation but 5 chips
    with session_scope(store) as s:
        svc.reserve(s, packs, "falcon-ae", n=m, chip_name="h100-sxm", site="dxb", planned_for=LATER)
    assert _nveu(store, TODAY)["ok"] is True  # the dashboard today: within 2026 Q4's allocation

    with session_scope(store) as s:
        res = svc.whatif(s, packs, "falcon-ae", op="add", n=3, chip_name="h100-sxm", site="dxb", as_of=TODAY)
    assert res["ok"] is True and res["reservations_counted"] == 0
    assert res["later"] == [{"on": LATER.isoformat(), "ok": True, "max_fit": 5, "reservations_counted": 1}]
    assert res["max_fit"] == 5 and res["binding_on"] == LATER.isoformat()

    with session_scope(store) as s, pytest.raises(svc.CapExceeded, match=f"at most 5 fit under falcon-ae on {LATER}"):
        svc.reserve(s, packs, "falcon-ae", n=20, chip_name="h100-sxm", site="dxb", planned_for=TODAY)
    with session_scope(store) as s:
        svc.reserve(s, packs, "falcon-ae", n=5, chip_name="h100-sxm", site="dxb", planned_for=TODAY)
    assert _nveu(store, TODAY)["ok"] is True and _nveu(store, LATER)["ok"] is True


@pytest.mark.parametrize("store", ["db_url"], indirect=True)
def test_a_uveus_shares_still_count_every_open_plan_now(store: str) -> None:
    """The UVEU percentages are not quarterly: a plan counts from the day it is made, whatever its date."""
    packs = registry()
    with session_scope(store) as s:
        svc.reserve(s, packs, "aurora", n=40, chip_name="h100-sxm", site="iad", planned_for=LATER)
    with session_scope(store) as s:
        res = svc.whatif(s, packs, "aurora", op="add", n=1, chip_name="h100-sxm", site="fra", as_of=TODAY)
        caps = svc.caps_for(s, packs, "aurora", TODAY)
    assert res["reservations_counted"] == 1 and res["later"] == [] and res["reservations"] == "open now"
    assert any(p.label.startswith("reservation") for c in caps for p in c.contributors)


@pytest.mark.parametrize("store", ["db_url"], indirect=True)
def test_the_dashboard_planner_shows_the_later_plans_an_nveu_change_must_fit_beside(store: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    packs = registry()
    with session_scope(store) as s:
        svc.reserve(s, packs, "falcon-ae", n=100, chip_name="h100-sxm", site="dxb", planned_for=LATER)
    c = TestClient(create_app(store), base_url="https://testserver")
    r = c.post("/whatif", data={"authorization": "falcon-ae", "op": "add", "n": "3", "chip": "h100-sxm",
                                "site": "dxb", "as_of": TODAY.isoformat()})
    assert r.status_code == 200, r.text[:300]
    assert 'id="later-plans"' in r.text and LATER.isoformat() in r.text
