"""Session 22h QA: a review as of a later day (a dry run: `veuctl admission review --as-of`, which refuses a
recorded one) sees the customer's admitted jobs that day would: the lineage's related jobs and the customer-wide
sum both run back from the end of that day, so a part of a split run that has left one window by then has left
the other too. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from agent import cases
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utcnow
from policies import redflag

from .conftest import M, job, review

# 256 pods × 8 H100 × 8000 h ≈ 0.585e26 operations: one part is under 10^26, two are over it.
PART = {"pods": 256}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


# The same operations in 1000 hours (2048 pods): a part whose run has ended 42 days after its approval.
SHORT = {"pods": 2048, "hours": "1000"}


def _decide(url: str, name: str, model: str, *, as_of: date | None = None, now: datetime | None = None,
            dry_run: bool = False, pods: int = PART["pods"], hours: str = "8000") -> Outcome:
    body = review(job(name, annotations={M + "model": model, M + "expected-hours": hours}, pods=pods),
                  dry_run=dry_run)
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body, as_of, now=now)


def test_a_part_that_has_left_both_windows_by_a_later_as_of_day_is_counted_in_neither(url: str) -> None:
    now = utcnow()
    # Decided 80 days ago and run for 1000 hours (ended 38 days ago): inside today's 90-day windows, outside those
    # of a day 15 days from now, and no longer running then.
    first = _decide(url, "part-1", "frontier-1", now=now - timedelta(days=80), pods=SHORT["pods"], hours=SHORT["hours"])
    assert first.code == redflag.ALLOW
    today = _decide(url, "part-2", "frontier-1", dry_run=True)
    assert today.code == redflag.HOLD_FOR_INQUIRY, today.message
    later = _decide(url, "part-2", "frontier-1", as_of=(now + timedelta(days=15)).date(), dry_run=True)
    # The lineage left it out (its window ends with that day); the customer-wide sum must too, not hold the
    # job as "across model names" on a part of the same model that the lineage no longer counts.
    assert later.code == redflag.ALLOW, later.message
    assert later.estimate == pytest.approx(today.estimate / 2)


def test_a_part_still_running_on_a_later_as_of_day_is_counted_past_both_windows(url: str) -> None:
    """Decided 80 days ago for 8000 hours: outside the windows of a day 15 days from now, but still running then
    (until day 333): it counts in the sums until its run ends."""
    now = utcnow()
    assert _decide(url, "part-1", "frontier-1", now=now - timedelta(days=80)).code == redflag.ALLOW
    later = _decide(url, "part-2", "frontier-1", as_of=(now + timedelta(days=15)).date(), dry_run=True)
    assert later.code == redflag.HOLD_FOR_INQUIRY, later.message


def test_a_part_still_inside_the_windows_on_a_later_as_of_day_is_counted_in_both(url: str) -> None:
    now = utcnow()
    assert _decide(url, "part-1", "frontier-1", now=now - timedelta(days=60)).code == redflag.ALLOW
    later = _decide(url, "part-2", "frontier-1", as_of=(now + timedelta(days=15)).date(), dry_run=True)
    assert later.code == redflag.HOLD_FOR_INQUIRY, later.message
    other = _decide(url, "part-3", "frontier-2", as_of=(now + timedelta(days=15)).date(), dry_run=True)
    assert other.code == redflag.HOLD_FOR_INQUIRY and "model name" in other.message, other.message
