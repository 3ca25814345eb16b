"""A review "as of" a past day sees the customer's jobs as they stood on that day (red flag 28, 15 CFR 732 Supp. 3):
the related-jobs and customer-wide windows end with the as-of day and run back from it, not from the wall clock,
and an inquiry answered after that day was not on record then. On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from agent import cases
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.cases import RedFlagCase
from agent.store.tables.core import utcnow
from policies import redflag

from .conftest import M, job, review

# 256 pods × 8 H100 × 8000 h ≈ 0.585e26 operations: one part is under 10^26, two are over it.
PART = {"pods": 256}


def _ann(model: str) -> dict[str, str]:
    return {M + "model": model, M + "expected-hours": "8000"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


def _decide(url: str, name: str, model: str, *, as_of: date | None = None, now: datetime | None = None,
            dry_run: bool = False) -> Outcome:
    body = review(job(name, annotations=_ann(model), **PART), dry_run=dry_run)
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body, as_of, now=now)


def test_a_review_as_of_a_past_day_does_not_count_a_part_of_the_run_decided_after_that_day(url: str) -> None:
    first = _decide(url, "part-1", "frontier-1")
    assert first.code == redflag.ALLOW, first.message
    month_ago = (utcnow() - timedelta(days=30)).date()
    then = _decide(url, "part-2", "frontier-1", as_of=month_ago, dry_run=True)
    assert then.code == redflag.ALLOW, then.message
    today = _decide(url, "part-2", "frontier-1", dry_run=True)
    assert today.code == redflag.HOLD_FOR_INQUIRY, today.message


def test_a_review_as_of_a_past_day_counts_the_parts_decided_in_the_window_before_that_day(url: str) -> None:
    # Decided 120 days ago: outside today's 90-day related-jobs window, 20 days inside the as-of day's.
    now = utcnow()
    first = _decide(url, "part-1", "frontier-1", now=now - timedelta(days=120))
    assert first.code == redflag.ALLOW, first.message
    then = _decide(url, "part-2", "frontier-1", as_of=(now - timedelta(days=100)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY, then.message
    # Outside today's window, but part-1 (8000 hours from 120 days ago) still runs: it counts until its run ends.
    assert _decide(url, "part-2", "frontier-1", dry_run=True).code == redflag.HOLD_FOR_INQUIRY


def test_a_review_as_of_a_past_day_counts_a_part_whose_run_has_since_ended(url: str) -> None:
    # Decided 400 days ago for 8000 hours (ended 67 days ago): inside the window of a day 380 days ago; today
    # outside the window and no longer running.
    now = utcnow()
    assert _decide(url, "part-1", "frontier-1", now=now - timedelta(days=400)).code == redflag.ALLOW
    then = _decide(url, "part-2", "frontier-1", as_of=(now - timedelta(days=380)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY, then.message
    assert _decide(url, "part-2", "frontier-1", dry_run=True).code == redflag.ALLOW


def test_the_customer_wide_sum_as_of_a_past_day_leaves_out_jobs_decided_after_that_day(url: str) -> None:
    assert _decide(url, "a-1", "model-a").code == redflag.ALLOW
    month_ago = (utcnow() - timedelta(days=30)).date()
    then = _decide(url, "b-1", "model-b", as_of=month_ago, dry_run=True)
    assert then.code == redflag.ALLOW, then.message
    today = _decide(url, "b-1", "model-b", dry_run=True)
    assert today.code == redflag.HOLD_FOR_INQUIRY, today.message


def test_the_customer_wide_sum_as_of_a_past_day_counts_the_jobs_of_its_window_before_that_day(url: str) -> None:
    now = utcnow()
    assert _decide(url, "a-1", "model-a", now=now - timedelta(days=120)).code == redflag.ALLOW
    then = _decide(url, "b-1", "model-b", as_of=(now - timedelta(days=100)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY, then.message
    # a-1 (8000 hours from 120 days ago) still runs: the customer-wide sum counts it until its run ends.
    assert _decide(url, "b-1", "model-b", dry_run=True).code == redflag.HOLD_FOR_INQUIRY


def test_the_customer_wide_sum_leaves_out_a_job_whose_run_has_ended_outside_its_window(url: str) -> None:
    now = utcnow()
    assert _decide(url, "a-1", "model-a", now=now - timedelta(days=400)).code == redflag.ALLOW
    then = _decide(url, "b-1", "model-b", as_of=(now - timedelta(days=380)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY, then.message
    assert _decide(url, "b-1", "model-b", dry_run=True).code == redflag.ALLOW


def test_a_lineage_answered_after_the_as_of_day_is_still_summed_customer_wide_on_that_day(url: str) -> None:
    now = utcnow()
    sixty = now - timedelta(days=60)
    assert _decide(url, "a-1", "model-a", now=sixty).code == redflag.ALLOW
    body = review(job("a-big", annotations=_ann("model-a"), pods=512))
    with session_scope(url) as s:
        held = cases.evaluate_review(s, registry(), body, now=sixty)
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None, held.message
    with session_scope(url) as s:  # answered today
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance")
    # Today model-a's inquiry is on record: its admitted job is not summed again with model-b's.
    assert _decide(url, "b-1", "model-b", dry_run=True).code == redflag.ALLOW
    # A month ago it was not: model-a's admitted job and model-b's reach 10^26 together.
    then = _decide(url, "b-1", "model-b", as_of=(now - timedelta(days=30)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY, then.message


def test_an_answer_expiring_on_the_as_of_day_is_still_on_record_that_day_for_the_customer_wide_sum(url: str) -> None:
    now = utcnow()
    sixty = now - timedelta(days=60)
    assert _decide(url, "a-1", "model-a", now=sixty).code == redflag.ALLOW
    body = review(job("a-big", annotations=_ann("model-a"), pods=512))
    with session_scope(url) as s:
        held = cases.evaluate_review(s, registry(), body, now=sixty)
    assert held.case_id is not None, held.message
    with session_scope(url) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance", now=sixty)
    day = (now - timedelta(days=30)).date()
    with session_scope(url) as s:  # the answer lapses at noon that day: it was on record on that day
        row = s.get(RedFlagCase, held.case_id)
        assert row is not None
        row.expires_at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        s.add(row)
    then = _decide(url, "b-1", "model-b", as_of=day, dry_run=True)
    assert then.code == redflag.ALLOW, then.message
    # The day after, it is not: model-a's admitted job is summed with model-b's again.
    after = _decide(url, "b-1", "model-b", as_of=day + timedelta(days=1), dry_run=True)
    assert after.code == redflag.HOLD_FOR_INQUIRY, after.message
