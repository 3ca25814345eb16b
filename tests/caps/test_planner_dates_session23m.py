"""QA session 23 (m) on the capacity planner and reservations across dates: a UVEU's plan for a site in Cambodia,
reserved before Cambodia leaves Country Group D:5 (2026-02-03) for installation after, holds headroom from the day it
is made but puts no chip in D:5 before it arrives, so it neither shows the fleet over nor blocks every other plan."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import registry
from agent.store import session_scope
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet

TODAY = date(2026, 1, 20)  # Cambodia is still in D:5 (Tier 3)
ARRIVES = date(2026, 2, 10)  # Cambodia left D:5 on 2026-02-03 (Tier 2)


def _pin_today(monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    monkeypatch.setattr(svc, "utcnow", lambda: datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


def _caps(url: str, on: date) -> dict[str, svc.CapResult]:
    with session_scope(url) as s:
        return {c.id: c for c in svc.caps_for(s, registry(), "aurora", on)}


def test_a_plan_for_cambodia_after_it_leaves_d5_puts_no_chip_in_d5_before_it_arrives(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pin_today(monkeypatch, TODAY)
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_site(s, "pnh", "KH")
    with session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora", n=5, chip_name="h100", site="pnh", planned_for=ARRIVES)
    # Supp. 10 ¶6 and § 748.15(b)(2)(i): no UVEU data center in D:5. The chips are not in Cambodia until they
    # arrive, when it is no longer in D:5: the fleet is within every cap today and on the day they arrive.
    today = _caps(db_url, TODAY)
    assert today["uveu.excluded_locations.owned"].ok, today["uveu.excluded_locations.owned"].numerator
    assert all(c.ok for c in today.values() if c.binding)
    assert all(c.ok for c in _caps(db_url, ARRIVES).values() if c.binding)
    # The headroom is spent now all the same: Cambodia is outside Supp. 5(a) on both dates.
    assert today["uveu.single_country.KH.owned"].numerator == 5 * svc.chip(packs, "h100", TODAY).tpp
    # Another plan, at a US site for a date before Cambodia leaves D:5, is not refused for the Cambodian plan.
    with session_scope(db_url) as s:
        plan = svc.whatif(s, packs, "aurora", n=10, chip_name="h100", site="iad", as_of=date(2026, 1, 25))
        assert plan["ok"], plan["binding"]
        svc.reserve(s, packs, "aurora", n=10, chip_name="h100", site="iad", planned_for=date(2026, 1, 25))


def test_chips_planned_for_cambodia_while_it_is_in_d5_are_still_refused(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pin_today(monkeypatch, TODAY)
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_site(s, "pnh", "KH")
    with session_scope(db_url) as s:
        plan = svc.whatif(s, packs, "aurora", n=1, chip_name="h100", site="pnh", as_of=TODAY)
        assert not plan["ok"] and plan["binding"] == "uveu.excluded_locations.owned"
    with pytest.raises(PolicyError, match="excluded_locations"), session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora", n=1, chip_name="h100", site="pnh", planned_for=date(2026, 2, 2))


def test_the_explanation_of_the_d5_figure_does_not_mark_a_plan_that_has_not_arrived(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _pin_today(monkeypatch, TODAY)
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_site(s, "pnh", "KH")
    with session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora", n=5, chip_name="h100", site="pnh", planned_for=ARRIVES)
    for on in (TODAY, ARRIVES):
        cap = svc.cap_to_dict(_caps(db_url, on)["uveu.excluded_locations.owned"])
        marked = sum(p["tpp"] for p in cap["explanation"]["contributors"] if p["in_numerator"])
        assert marked == cap["numerator_tpp"] == 0, (on, cap["explanation"]["contributors"])
