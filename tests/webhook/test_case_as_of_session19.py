"""A review "as of" a past day reads the red-flag-28 case as it stood on that day (15 CFR 732 Supp. 3, red flag 28):
answers on record then admit, even if they have expired since; a case opened after that day did not exist then;
answers recorded (or amended) after that day were not on record then. A recorded past review that is held still
files its job under the case open today, never a second case beside it. Today's reviews read the case on file now,
with the same statement as before. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from agent import cases
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.cases import RedFlagCase
from agent.store.tables.core import utcnow
from policies import redflag

from .conftest import M, job, review

BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}  # 4096 H100 × 8000 h = 1.17e26: held alone


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


def _decide(url: str, name: str, *, as_of: date | None = None, now: datetime | None = None,
            dry_run: bool = False) -> Outcome:
    body = review(job(name, pods=512, annotations=BIG), dry_run=dry_run)
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body, as_of, now=now)


def _held(url: str, name: str = "big", *, now: datetime | None = None) -> int:
    out = _decide(url, name, now=now)
    assert out.code == redflag.HOLD_FOR_INQUIRY and out.case_id is not None, out.message
    return out.case_id


def _resolve(url: str, case_id: int, *, now: datetime | None = None, amend: bool = False, **answers: Any) -> None:
    with session_scope(url) as s:
        cases.resolve_case(s, registry(), case_id, by=answers.pop("by", "compliance"), now=now, amend=amend,
                           **{"export_intent": False, **answers})


def _cases(url: str) -> dict[int, RedFlagCase]:
    with session_scope(url) as s:
        rows = {c["id"]: s.get(RedFlagCase, c["id"]) for c in cases.list_cases(s)}
        for row in rows.values():
            s.expunge(row)
        return rows  # type: ignore[return-value]


def test_an_answer_expired_since_still_admits_a_past_dry_run_dated_while_it_was_on_record(url: str) -> None:
    now = utcnow()
    answered = _held(url, now=now - timedelta(days=400))
    _resolve(url, answered, now=now - timedelta(days=400))  # expires 35 days ago (case_expiry_days 365)
    then = _decide(url, "big", as_of=(now - timedelta(days=200)).date(), dry_run=True)
    assert then.code == redflag.ALLOW_AFTER_INQUIRY and then.allowed, then.message
    assert then.case_id == answered
    # Today the answer has lapsed: held, and a dry run opens nothing.
    today = _decide(url, "big", dry_run=True)
    assert today.code == redflag.HOLD_FOR_INQUIRY and today.case_id is None, today.message


def test_an_answer_lapsing_before_the_as_of_day_does_not_admit_a_past_dry_run(url: str) -> None:
    now = utcnow()
    answered = _held(url, now=now - timedelta(days=400))
    _resolve(url, answered, now=now - timedelta(days=400))
    then = _decide(url, "big", as_of=(now - timedelta(days=20)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY and then.case_id is None, then.message


def test_a_case_opened_after_the_as_of_day_is_not_named_by_a_past_dry_run(url: str) -> None:
    _held(url)  # opened today
    then = _decide(url, "big", as_of=(utcnow() - timedelta(days=30)).date(), dry_run=True)
    assert then.code == redflag.HOLD_FOR_INQUIRY and then.case_id is None, then.message


def test_a_case_opened_after_the_as_of_day_is_not_the_one_a_past_dry_run_is_admitted_under(url: str) -> None:
    now = utcnow()
    old = _held(url, now=now - timedelta(days=400))
    _resolve(url, old, now=now - timedelta(days=400))  # expired 35 days ago
    new = _held(url)  # so today's held job opened a new case, answered today
    assert new != old
    _resolve(url, new)
    then = _decide(url, "big", as_of=(now - timedelta(days=200)).date(), dry_run=True)
    assert then.code == redflag.ALLOW_AFTER_INQUIRY and then.case_id == old, then.message
    assert f"case {old}" in then.message and f"case {new}" not in then.message
    today = _decide(url, "big", dry_run=True)
    assert today.code == redflag.ALLOW_AFTER_INQUIRY and today.case_id == new, today.message


def test_a_case_open_on_the_as_of_day_and_answered_after_it_holds_a_past_dry_run(url: str) -> None:
    now = utcnow()
    case_id = _held(url, now=now - timedelta(days=100))
    _resolve(url, case_id)  # answered today
    then = _decide(url, "big", as_of=(now - timedelta(days=50)).date(), dry_run=True)
    # On that day the case was open: the job was held under it.
    assert then.code == redflag.HOLD_FOR_INQUIRY and then.case_id == case_id, then.message


def test_answers_amended_after_the_as_of_day_are_not_the_ones_a_past_dry_run_quotes(url: str) -> None:
    now = utcnow()
    case_id = _held(url, now=now - timedelta(days=100))
    _resolve(url, case_id, now=now - timedelta(days=100), export_intent=True, licence="D111111", by="first")
    _resolve(url, case_id, amend=True, export_intent=True, licence="D222222", by="second")  # amended today
    then = _decide(url, "big", as_of=(now - timedelta(days=50)).date(), dry_run=True)
    assert then.code == redflag.ALLOW_AFTER_INQUIRY and then.case_id == case_id, then.message
    assert "licence D111111" in then.message and "D222222" not in then.message, then.message
    assert then.decision is not None and any("resolved by first" in w for w in then.decision.explanation)
    today = _decide(url, "big", dry_run=True)
    assert "licence D222222" in today.message, today.message


def test_answers_amended_before_the_as_of_day_are_the_ones_a_past_dry_run_quotes(url: str) -> None:
    now = utcnow()
    case_id = _held(url, now=now - timedelta(days=100))
    _resolve(url, case_id, now=now - timedelta(days=100), export_intent=True, licence="D111111")
    _resolve(url, case_id, now=now - timedelta(days=80), amend=True, export_intent=True, licence="D222222")
    then = _decide(url, "big", as_of=(now - timedelta(days=50)).date(), dry_run=True)
    assert then.code == redflag.ALLOW_AFTER_INQUIRY and "licence D222222" in then.message, then.message


def test_a_past_recorded_held_review_files_under_todays_open_case_and_opens_no_second_one(url: str) -> None:
    today_case = _held(url)
    held = _decide(url, "big-2", as_of=(utcnow() - timedelta(days=30)).date())
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id == today_case, held.message
    assert f"cases resolve {today_case}" in held.message
    on_file = _cases(url)
    assert list(on_file) == [today_case]
    assert "tenant-ae/Job/big-2" in json.loads(on_file[today_case].jobs)


def test_a_past_recorded_review_held_under_a_case_open_then_files_under_todays_open_case(url: str) -> None:
    now = utcnow()
    old = _held(url, now=now - timedelta(days=480))
    _resolve(url, old, now=now - timedelta(days=380))  # expired 15 days ago
    today_case = _held(url)
    # As of 420 days ago the old case was open (answered 60 days later): held under it then; filed now under the
    # case open today, not added to the answered, expired one.
    held = _decide(url, "big-2", as_of=(now - timedelta(days=420)).date())
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id == today_case, held.message
    assert f"cases resolve {today_case}" in held.message
    on_file = _cases(url)
    assert sorted(on_file) == sorted([old, today_case])
    assert "tenant-ae/Job/big-2" in json.loads(on_file[today_case].jobs)
    assert "tenant-ae/Job/big-2" not in json.loads(on_file[old].jobs)
    assert on_file[old].status == "resolved"


def test_a_past_recorded_review_is_still_refused_when_todays_case_was_answered_after_that_day(url: str) -> None:
    case_id = _held(url)
    _resolve(url, case_id)
    with pytest.raises(cases.CaseError, match="--as-of"):
        _decide(url, "big-2", as_of=(utcnow() - timedelta(days=30)).date())
    assert list(_cases(url)) == [case_id]


def test_todays_review_reads_the_case_on_file_now_with_the_same_statement(
    url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = utcnow()
    old = _held(url, now=now - timedelta(days=400))
    _resolve(url, old, now=now - timedelta(days=400))
    read: list[tuple[Any, dict[str, Any]]] = []
    real = cases.fetch_each

    def spy(s: Any, queries: list[tuple[Any, dict[str, Any]]], **kw: Any) -> Any:
        read.extend(queries)
        return real(s, queries, **kw)

    monkeypatch.setattr(cases, "fetch_each", spy)
    dry = _decide(url, "big", dry_run=True)
    assert dry.code == redflag.HOLD_FOR_INQUIRY and dry.case_id is None, dry.message
    held = _decide(url, "big")
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id not in (None, old), held.message
    again = _decide(url, "big-2", as_of=now.date())
    assert again.case_id == held.case_id, again.message
    case_reads = [q for q in read if "redflag_case" in str(q[0])]
    assert len(case_reads) == 3
    for stmt, params in case_reads:
        assert stmt is cases._CURRENT_CASE
        assert params == {"customer": "Emirates AI", "model_key": "frontier-1"}
    assert held.case_id is not None
    _resolve(url, held.case_id)
    assert _decide(url, "big", dry_run=True).code == redflag.ALLOW_AFTER_INQUIRY
