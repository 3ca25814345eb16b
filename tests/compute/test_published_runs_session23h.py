"""A run the ledger dates on or after a model's publication is refused on the published record, whichever date dates it.

4E091 "does not control the 'parameters' of any artificial intelligence model that have been 'published'", and a
derivative is controlled only when "derived using additional training 'operations' that constitute more than
2.5 x 10^25 'operations' or more than 25 percent of the training 'operations'" of the published model. The published
parameters are the weights as of their publication: training after it makes new weights (a derivative, recorded on a
model based on the published one). A run with only an end date counts from that end (policies.ledger.Run.counts_on);
recorded on the published model it grew the published total after publication, and with it every derivative's
25 percent allowance.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

import agent.ledger as ledger
from agent.packs import registry
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.ledger import LedgerRun
from policies.ledger import LedgerError

PUBLISHED = date(2025, 6, 1)


def ops(x: float):  # type: ignore[no-untyped-def]
    return ledger.estimate(registry(), PUBLISHED, operations=x)


def _published_with_derivative(url: str) -> None:
    """P: 2e26 trained from 2025-01-01, published 2025-06-01. D (another party) fine-tunes P with 5e25 = 25% of 2e26,
    not more than max(2.5e25, 5e25): excluded as a derivative."""
    with session_scope(url) as s:
        add_party(s, "Open Lab", "US")
        add_party(s, "Lumen", "SG")
        ledger.add_model(s, "P", "Open Lab")
        ledger.add_run(s, "P", ops(2e26), start=date(2025, 1, 1), end=date(2025, 5, 1))
        ledger.add_model(s, "P", "Open Lab", published=None, published_on=PUBLISHED)
        ledger.add_model(s, "D", "Lumen", base="P")
        ledger.add_run(s, "D", ops(5e25), start=date(2025, 7, 1))


def _status(url: str, name: str, day: date) -> tuple[float, str]:
    with session_scope(url) as s:
        st = ledger.model_status(s, registry(), name, day)
        return st.cumulative_operations, st.status


@pytest.mark.parametrize("end", [date(2025, 6, 2), date(2025, 7, 2)])
def test_a_run_ending_after_publication_with_no_start_is_refused_on_the_published_model(
        db_url: str, end: date) -> None:
    _published_with_derivative(db_url)
    with pytest.raises(LedgerError) as err, session_scope(db_url) as s:
        ledger.add_run(s, "P", ops(1e26), end=end)
    msg = str(err.value)
    assert msg.startswith("--end:") and "2025-06-01" in msg and "--base P" in msg
    with session_scope(db_url) as s:  # nothing written
        assert len(s.exec(select(LedgerRun)).all()) == 2
    # The derivative keeps its allowance: 25% of 2e26, not of 3e26.
    assert _status(db_url, "P", date(2025, 8, 1)) == (2e26, "excluded:published")
    assert _status(db_url, "D", date(2025, 8, 1)) == (2.5e26, "excluded:derivative-of-published")


def test_a_run_ending_before_publication_with_no_start_is_recorded(db_url: str) -> None:
    _published_with_derivative(db_url)
    with session_scope(db_url) as s:
        ledger.add_run(s, "P", ops(1e25), end=date(2025, 5, 31))
    assert _status(db_url, "P", date(2025, 5, 31)) == (2.1e26, "4E091")  # not yet published that day
    assert _status(db_url, "P", PUBLISHED) == (2.1e26, "excluded:published")


def test_a_publication_date_before_an_end_dated_run_is_refused_naming_the_run_date(db_url: str) -> None:
    """The other order: the run (end only, 2025-07-02) first, then a publication date before it."""
    with session_scope(db_url) as s:
        add_party(s, "Open Lab", "US")
        ledger.add_model(s, "Q", "Open Lab")
        ledger.add_run(s, "Q", ops(1e25), end=date(2025, 7, 2))
    with pytest.raises(LedgerError) as err, session_scope(db_url) as s:
        ledger.add_model(s, "Q", "Open Lab", published=None, published_on=PUBLISHED)
    assert str(err.value).startswith("--published-on:") and "2025-07-02" in str(err.value)
    with session_scope(db_url) as s:
        assert not ledger.get_model(s, "Q").published
    with session_scope(db_url) as s:  # a date on or after the run's end is the published weights
        ledger.add_model(s, "Q", "Open Lab", published=None, published_on=date(2025, 7, 3))
    assert _status(db_url, "Q", date(2025, 7, 3)) == (1e25, "excluded:published")


def test_weights_published_the_day_their_last_run_ended_are_accepted_in_either_order(db_url: str) -> None:
    """Training that ended on the day the weights were published is in those weights: a run known only by that end
    is the published model's, as a run dated 2025-01-01 to that day is, whichever is recorded first."""
    _published_with_derivative(db_url)
    with session_scope(db_url) as s:  # the run after the publication
        ledger.add_run(s, "P", ops(1e25), end=PUBLISHED)
    assert _status(db_url, "P", PUBLISHED) == (2.1e26, "excluded:published")
    with session_scope(db_url) as s:  # the publication after the run
        add_party(s, "Open Lab 2", "US")
        ledger.add_model(s, "R", "Open Lab 2")
        ledger.add_run(s, "R", ops(1e25), end=PUBLISHED)
        ledger.add_model(s, "R", "Open Lab 2", published=None, published_on=PUBLISHED)
    assert _status(db_url, "R", PUBLISHED) == (1e25, "excluded:published")
