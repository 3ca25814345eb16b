"""Red flag 28's customer-wide sum leaves out lineages whose inquiry is on record.

The customer-aggregate hold asks whether a customer's jobs across model names could together make weights over
the threshold. A lineage whose own inquiry was answered (a resolved case, not expired) was asked about already:
summing it again held every later job of the customer, of any model, under a customer-aggregate case.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from agent import cases
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utcnow
from policies import redflag

from .conftest import M, job, review

Decide = Callable[..., Outcome]
BIG = {M + "model": "frontier-1", M + "expected-hours": "8000"}  # 4096 H100 × 8000 h = 1.17e26
HALF = {M + "expected-hours": "8000"}  # 2048 H100 × 8000 h = 5.8e25: below 1e26 alone, over it with another


def _answer_frontier(decide_review: Decide, store: str) -> None:
    held = decide_review(review(job("big", pods=512, annotations=BIG)))
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None
    with session_scope(store) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance@example.com")
    assert decide_review(review(job("big", pods=512, annotations=BIG))).code == redflag.ALLOW_AFTER_INQUIRY


def test_a_small_job_of_another_model_after_an_answered_4e091_model_is_admitted(
    decide_review: Decide, store: str,
) -> None:
    _answer_frontier(decide_review, store)
    small = decide_review(review(job("eval", pods=2, annotations={M + "model": "eval-b", M + "expected-hours": "1"})))
    assert small.allowed and small.code == redflag.ALLOW, small.message


def test_a_run_split_across_new_model_names_is_still_held_after_another_model_was_answered(
    decide_review: Decide, store: str,
) -> None:
    _answer_frontier(decide_review, store)
    first = decide_review(review(job("b1", pods=256, annotations={**HALF, M + "model": "b-1"})))
    assert first.code == redflag.ALLOW
    second = decide_review(review(job("b2", pods=256, annotations={**HALF, M + "model": "b-2"})))
    assert second.code == redflag.HOLD_FOR_INQUIRY and second.case_id is not None
    with session_scope(store) as s:
        case = cases.case_view(cases.get_case(s, second.case_id))
    assert case["model"].startswith(redflag.AGGREGATE_PREFIX)
    # frontier-1's 1.17e26 is not in it: only b-1 and b-2.
    assert case["estimate"] < 1.2e26


def test_once_the_answered_case_expires_its_lineage_counts_in_the_customer_wide_sum_again(
    decide_review: Decide, store: str,
) -> None:
    from sqlmodel import select

    from agent.store.tables.cases import RedFlagCase

    _answer_frontier(decide_review, store)
    with session_scope(store) as s:  # the answer's validity ran out yesterday (case_expiry_days after resolving)
        for case in s.exec(select(RedFlagCase)).all():
            case.expires_at = utcnow() - timedelta(days=1)
            s.add(case)
    small = decide_review(review(job("eval", pods=2, annotations={M + "model": "eval-b", M + "expected-hours": "1"})))
    assert small.code == redflag.HOLD_FOR_INQUIRY, small.message
    assert "customer" in small.message and "model name(s)" in small.message


def test_training_on_a_published_model_answered_under_its_derivative_is_left_out_of_the_customer_wide_sum(
    decide_review: Decide, store: str,
) -> None:
    _derivative_answered(decide_review, store)


def test_on_postgresql_an_answered_derivative_is_left_out_of_the_customer_wide_sum(pg_store: str) -> None:
    def decide(body: dict[str, object]) -> Outcome:
        with session_scope(pg_store) as s:
            return cases.evaluate_review(s, registry(), body)

    _derivative_answered(decide, pg_store)


def _derivative_answered(decide_review: Decide, store: str) -> None:
    from datetime import date

    from agent import ledger

    with session_scope(store) as s:
        ledger.add_model(s, "open-9e25", "US Lab", published=True, published_on=date(2026, 1, 1))
        ledger.add_run(s, "open-9e25", ledger.estimate(registry(), date(2026, 5, 1), operations=9e25),
                       start=date(2025, 6, 1))
    # 1024 H100 × 8000 h = 2.9e25 on a published 9e25 model: the customer's derivative, held for inquiry.
    on_open = {M + "model": "open-9e25", M + "expected-hours": "8000"}
    held = decide_review(review(job("ft", pods=128, annotations=on_open)))
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None, held.message
    with session_scope(store) as s:
        case = cases.case_view(cases.get_case(s, held.case_id))
        assert case["model"] == "Emirates AI/open-9e25"  # answered under the derivative's name
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance@example.com")
    assert decide_review(review(job("ft", pods=128, annotations=on_open))).code == redflag.ALLOW_AFTER_INQUIRY
    # 2560 H100 × 8000 h = 7.3e25 of another model: under the threshold alone; with the answered 2.9e25 it
    # would reach 1.02e26 and be held under a customer-aggregate case.
    own_b = {M + "model": "own-b", M + "expected-hours": "8000"}
    other = decide_review(review(job("other", pods=320, annotations=own_b)))
    assert other.code == redflag.ALLOW, other.message


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("store" if request.param == "sqlite" else "pg_store"))


@pytest.mark.parametrize("blank", ["   ", "\t", "\n", "\u00a0"])
def test_a_case_whose_recorded_answer_is_no_answer_leaves_nothing_out_of_the_customer_wide_sum(
        any_store: str, blank: str) -> None:
    """Review R6: a resolved case written outside veuctl/the API with export intent "yes", a licence number of blanks
    and the customer not informed answers nothing (CaseState.satisfied), yet the store's sum left its lineage out
    as answered."""
    from sqlmodel import select

    from agent.store.tables.cases import RedFlagCase

    store = any_store

    def decide_review(body: dict[str, object]) -> Outcome:
        with session_scope(store) as s:
            return cases.evaluate_review(s, registry(), body)

    _answer_frontier(decide_review, store)
    with session_scope(store) as s:
        for case in s.exec(select(RedFlagCase)).all():
            case.export_intent, case.licence_number, case.customer_informed = True, blank, False
            s.add(case)
    small = decide_review(review(job("eval", pods=2, annotations={M + "model": "eval-b", M + "expected-hours": "1"})))
    assert small.code == redflag.HOLD_FOR_INQUIRY, small.message
