"""Session 19: metered usage is charged against the declared run whose period it falls in, not against the job's
name. A January run and a June run of one job are two runs (:func:`policies.ledger.one_run_per_job`); pods metered
in June are not absorbed by January's larger declaration, nor pooled with January's pods. One run is charged the
larger of its declared and its metered operations; separate runs add; usage in no declared period of the job is a
metered run of its own (usage before the job's first declared run is that run started early, as before).

Every reader agrees: show / page / the webhook's one-statement lineage read (``lineage_records``) and list /
export (``load_records`` over all models, ``_merge_metered``), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agent import ledger as svc
from agent.store import session_scope
from policies.packs import PackRegistry

from .test_ledger_jobs_session18 import JOB, _all, _ops, _seed, _totals

ON = date(2026, 7, 1)
OPS_PER_H100_SECOND = 989.4e12 * 0.35  # metering's default utilization, BF16 dense


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest) -> str:
    """The embedded SQLite store and a fresh database on the real PostgreSQL server."""
    return _seed(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture()
def url(db_url: str) -> str:
    return _seed(db_url)


def _pod(s: Any, packs: PackRegistry, pod: str, operations: float, start: datetime, end: datetime) -> None:
    """What the metering controller writes for one pod of the job: ``<job>#<pod>``."""
    svc.add_metered_usage(s, customer="Zeta", model="m", job=f"{JOB}#{pod}", accelerator_name="h100-sxm",
                          chip_seconds=operations / OPS_PER_H100_SECOND, start=start, end=end, packs=packs)


def _day(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


# ------------------------------------------------------------------- metered usage outside a declared run


def test_june_pods_of_a_job_declared_for_january_are_held_as_a_run_of_their_own(
    both: str, packs: PackRegistry
) -> None:
    # The job ran in January (declared 9e25) and its name ran again in June (metered 5e25, nothing declared):
    # two runs, 1.4e26. Charged against January's larger declaration, June's operations vanished (9e25).
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB)
        _pod(s, packs, "train-worker-0", 3e25, _day(6, 2), _day(6, 20))
        _pod(s, packs, "train-worker-1", 2e25, _day(6, 2), _day(6, 20))
    _all(_totals(both, packs, ON), 1.4e26)
    # Before June the January run alone counts: the June run had not started.
    _all(_totals(both, packs, date(2026, 5, 1)), 9e25)


def test_pods_metered_inside_the_declared_period_are_still_charged_the_larger_of_the_two(
    both: str, packs: PackRegistry
) -> None:
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB)
        _pod(s, packs, "train-worker-0", 5e25, _day(1, 5, 10), _day(1, 30))
    _all(_totals(both, packs, ON), 9e25)  # max(9e25 declared, 5e25 metered), once
    with session_scope(both) as s:
        _pod(s, packs, "train-worker-1", 7e25, _day(1, 6), _day(1, 30))
    _all(_totals(both, packs, ON), 1.2e26)  # max(9e25, 5e25 + 7e25): what the chips did


def test_each_run_of_a_job_is_charged_against_its_own_periods_pods_not_the_pooled_ones(
    both: str, packs: PackRegistry
) -> None:
    # January declared 9e25 and ran 1e25; June declared 6e25 and ran 8e25: max(9, 1) + max(6, 8) = 1.7e26.
    # Pooled per job name, all 9e25 metered went against January (max(9, 9)) and June counted 6e25: 1.5e26.
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB)
        svc.add_run(s, "m", _ops(packs, 6e25), start=date(2026, 6, 1), end=date(2026, 6, 30), job=JOB)
        _pod(s, packs, "train-worker-0", 1e25, _day(1, 5, 10), _day(1, 30))
        _pod(s, packs, "train-worker-0", 8e25, _day(6, 1, 10), _day(6, 29))  # the same pod name, another run
    _all(_totals(both, packs, ON), 1.7e26)


def test_pods_between_two_declared_runs_of_a_job_are_a_run_of_their_own(both: str, packs: PackRegistry) -> None:
    # The job's name ran in March, after January's run ended and before June's was declared to start: neither
    # declaration's period holds it, so it adds (charged as what it was metered).
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB)
        svc.add_run(s, "m", _ops(packs, 6e25), start=date(2026, 6, 1), end=date(2026, 6, 30), job=JOB)
        _pod(s, packs, "train-worker-0", 2e25, _day(3, 2), _day(3, 20))
    _all(_totals(both, packs, ON), 1.7e26)


def test_pods_before_the_jobs_first_declared_run_are_that_run_started_early(
    both: str, packs: PackRegistry
) -> None:
    # The declared start is the declarer's estimate: chips of the job that ran before its only declared run
    # are that run, started early (charged the larger, counted from the day they ran).
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 6, 1), end=date(2026, 6, 30), job=JOB)
        _pod(s, packs, "train-worker-0", 5e25, _day(5, 20), _day(5, 31))
    _all(_totals(both, packs, ON), 9e25)
    _all(_totals(both, packs, date(2026, 5, 25)), 9e25)


def test_show_lists_the_june_pods_as_their_own_metered_runs_beside_the_january_run(
    both: str, packs: PackRegistry
) -> None:
    with session_scope(both) as s:
        jan = svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB).id
        _pod(s, packs, "train-worker-0", 5e25, _day(6, 2), _day(6, 20))
        runs = svc.model_view(s, packs, "m", ON)["runs"]
    declared = next(r for r in runs if r["id"] == jan)
    assert declared["operations"] == pytest.approx(9e25) and declared["method"] == "declared-operations"
    june = [r for r in runs if r["id"] is None]
    assert [(r["job"], r["method"], r["start"]) for r in june] == [(f"{JOB}#train-worker-0", "metered", "2026-06-02")]
    assert june[0]["operations"] == pytest.approx(5e25)


# ------------------------------------------------------------------- the rule in the core


def test_match_metered_charges_usage_against_the_run_whose_period_holds_it() -> None:
    from policies.ledger import Run, match_metered

    jan = Run(9e25, start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB, ref="run:1")
    jan_again = Run(7e25, start=date(2026, 1, 20), end=date(2026, 2, 10), job=JOB, ref="run:2")  # one run with jan
    june = Run(6e25, start=date(2026, 6, 1), end=date(2026, 6, 30), job=JOB, ref="run:3")
    other = Run(1e24, job="other", ref="run:4")
    once, at = match_metered([jan, jan_again, june, other], [
        (f"{JOB}#w-0", date(2026, 2, 5), date(2026, 2, 8)),   # in jan_again's tail: January's run
        (f"{JOB}#w-0", date(2026, 6, 3), date(2026, 6, 9)),   # June's
        (JOB, date(2026, 3, 1), date(2026, 3, 2)),            # between the runs: none
        (f"{JOB}#w-0", date(2026, 7, 2), date(2026, 7, 9)),   # after every run: none
        ("other#p", date(2026, 7, 2), date(2026, 7, 9)),      # an undated declaration holds every date
        ("elsewhere", date(2026, 1, 6), date(2026, 1, 7)),    # no declared run of that job
    ], "#")
    assert [r.ref for r in once] == ["run:1", "run:3", "run:4"]
    assert at == [0, 1, None, None, 2, None]


def test_match_metered_takes_usage_before_a_jobs_first_declared_run_as_that_run_started_early() -> None:
    from policies.ledger import Run, match_metered

    june = Run(6e25, start=date(2026, 6, 1), job=JOB, ref="run:1")
    once, at = match_metered([june], [(f"{JOB}#w-0", date(2026, 5, 1), date(2026, 5, 1))], "#")
    assert list(once) == [june] and at == [0]


def test_an_earlier_objects_pods_stay_a_run_of_their_own_in_an_updates_lineage_read(
    url: str, packs: PackRegistry
) -> None:
    # An UPDATE's object was created on 1 June at noon: pods of its job that started before then were an earlier
    # object's of that name (svc.earlier_object_ref), never charged against the run the object is declared as.
    from agent.store.db import fetch_all

    created = _day(6, 1, 12)
    with session_scope(url) as s:
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 6, 1), job=JOB)
        _pod(s, packs, "train-worker-0", 5e25, _day(6, 1, 1), _day(6, 1, 11))  # the earlier object's
        _pod(s, packs, "train-worker-0", 3e25, _day(6, 1, 13), _day(6, 20))  # the object's own
        query = svc.lineage_query(["m"], ON)
        assert query is not None
        rows = fetch_all(s, *query)
    runs = svc.lineage_records(rows, (JOB, created))["m"].runs
    assert sorted((r.job, r.operations) for r in runs) == [
        (JOB, pytest.approx(9e25)), (svc.earlier_object_ref(JOB, created) + "#train-worker-0", pytest.approx(5e25))]
    # Without an UPDATE's object, both pods are the declared run's: max(9e25, 8e25).
    assert sum(r.operations for r in svc.lineage_records(rows)["m"].runs) == pytest.approx(9e25)
