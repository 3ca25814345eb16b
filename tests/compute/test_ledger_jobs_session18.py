"""Session 18: a run of a job is one run. Declaring it again (an updated estimate) never doubles its operations;
the same job name re-created for a later, separate run adds.

The rule is the declared-vs-metered rule's: the job counts once, at the largest of its declarations (a lower
re-declaration never lowers a total: a declaration recorded in error is withdrawn, with its reason), from the
earliest day any of them says it started. Different jobs, and runs declared without a job, still add.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any

import pytest
from sqlmodel import select

from agent import ledger as svc
from agent.cli import app
from agent.cli._common import run_app
from agent.parties import add_party
from agent.store import session_scope
from agent.store.db import fetch_all
from agent.store.tables.audit import AuditEntry
from policies.compute import Estimate
from policies.packs import PackRegistry

D = date(2026, 6, 1)
JOB = "zeta/PyTorchJob/train"


def _seed(u: str) -> str:
    with session_scope(u) as s:
        add_party(s, "Zeta", "CN")
        svc.add_model(s, "m", "Zeta")
    return u


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest) -> str:
    """The embedded SQLite store and a fresh database on the real PostgreSQL server."""
    return _seed(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture()
def url(db_url: str) -> str:
    return _seed(db_url)


def _ops(packs: PackRegistry, x: float) -> Estimate:
    return svc.estimate(packs, D, operations=x)


def _totals(url: str, packs: PackRegistry, on: date = D) -> dict[str, float]:
    """The model's total as each reader computes it: show, list, export and the webhook's lineage read."""
    from agent.exports import model_ledger

    with session_scope(url) as s:
        view = svc.model_view(s, packs, "m", on)
        listed = svc.list_models(s, packs, on).items[0]
        paged = svc.list_models(s, packs, on, limit=10).items[0]
        query = svc.lineage_query(["m"], on)
        assert query is not None
        records = svc.lineage_records(fetch_all(s, *query))
        webhook = svc.Ledger(records, svc.regime(packs, "eccn-4e091", on), on).status("m").cumulative_operations
        report = model_ledger.build(s, packs, on, on)
        exported = next(iter(report.tables[0].rows()))
    return {"show": view["cumulative_operations"], "list": listed["cumulative_operations"],
            "page": paged["cumulative_operations"], "webhook": webhook,
            "export": exported[model_ledger.COLUMNS.index("cumulative_operations")]}


def _all(totals: dict[str, float], expected: float) -> None:
    assert totals == {k: pytest.approx(expected) for k in totals}, totals


# ------------------------------------------------------------------- one job, declared twice


def test_two_declarations_of_one_job_count_once_at_the_larger(both: str, packs: PackRegistry) -> None:
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1), job=JOB)
        svc.add_run(s, "m", _ops(packs, 8e25), start=date(2026, 5, 1), job=JOB)  # the updated estimate
    _all(_totals(both, packs), 8e25)


def test_a_lower_re_declaration_of_a_job_does_not_lower_its_total(url: str, packs: PackRegistry) -> None:
    # An export-control total is never under-counted by a later, smaller figure: a declaration recorded in
    # error is withdrawn (`veuctl models withdraw-run`), with its reason, in the audit trail.
    with session_scope(url) as s:
        first = svc.add_run(s, "m", _ops(packs, 1.2e26), start=date(2026, 5, 1), job=JOB)
        svc.add_run(s, "m", _ops(packs, 9e25), start=date(2026, 5, 1), job=JOB)
    _all(_totals(url, packs), 1.2e26)
    with session_scope(url) as s:
        svc.withdraw_run(s, first.id or 0, "recorded the estimate before the run was cut short")
    _all(_totals(url, packs), 9e25)


def test_a_re_declared_job_counts_from_the_earliest_start_any_declaration_gives(
    url: str, packs: PackRegistry
) -> None:
    with session_scope(url) as s:
        svc.add_run(s, "m", _ops(packs, 1e25), start=date(2026, 3, 1), job=JOB)
        svc.add_run(s, "m", _ops(packs, 5e25), start=date(2026, 4, 1), job=JOB)
    _all(_totals(url, packs, date(2026, 2, 1)), 0.0)
    _all(_totals(url, packs, date(2026, 3, 15)), 5e25)  # one run: started 1 March, its operations committed


def test_the_same_job_name_re_created_for_a_later_run_adds(both: str, packs: PackRegistry) -> None:
    # A job's name is held by one object at a time: a run in January and another in June under the same name are
    # two runs (the webhook, too, counts a re-created job as a new run). Only overlapping declarations are one.
    with session_scope(both) as s:
        svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 1, 5), end=date(2026, 1, 31), job=JOB)
        svc.add_run(s, "m", _ops(packs, 4e25), start=date(2026, 5, 1), end=date(2026, 5, 20), job=JOB)
        svc.add_run(s, "m", _ops(packs, 5e25), start=date(2026, 5, 10), job=JOB)  # May's run re-declared
    _all(_totals(both, packs), 3e25 + 5e25)
    with session_scope(both) as s:
        view = svc.model_view(s, packs, "m", D)
    counted = [(r["operations"], r["counted"], r.get("counted_with")) for r in view["runs"]]
    may = next(r["id"] for r in view["runs"] if r["operations"] == 4e25)
    assert sorted(counted) == [(3e25, True, None), (4e25, False, may + 1), (5e25, True, None)], counted


def test_same_run_groups_join_overlapping_declarations_of_a_job_only() -> None:
    from policies.ledger import Run, same_run_groups

    jan = Run(1.0, start=date(2026, 1, 1), end=date(2026, 1, 31), job=JOB, ref="run:1")
    may = Run(2.0, start=date(2026, 5, 1), end=date(2026, 5, 31), job=JOB, ref="run:2")
    late_may = Run(3.0, start=date(2026, 5, 31), job=JOB, ref="run:3")  # still running: overlaps May's last day
    other = Run(4.0, start=date(2026, 1, 1), job="zeta/Job/other", ref="run:4")
    groups = [[r.ref for r in g] for g in same_run_groups([jan, may, late_may, other])]
    assert groups == [["run:1"], ["run:2", "run:3"], ["run:4"]]
    undated = Run(5.0, job=JOB, ref="run:5")  # any run of the job: joins them all (the cautious side)
    assert [[r.ref for r in g] for g in same_run_groups([jan, may, undated])] == [["run:1", "run:2", "run:5"]]


def test_two_different_jobs_still_add(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1), job=JOB)
        svc.add_run(s, "m", _ops(packs, 4e25), start=date(2026, 5, 1), job="zeta/PyTorchJob/train-2")
    _all(_totals(url, packs), 7e25)


def test_runs_declared_without_a_job_still_add(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1))
        svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1))
        svc.add_run(s, "m", _ops(packs, 2e25), start=date(2026, 5, 1), job=JOB)
    _all(_totals(url, packs), 8e25)


def test_the_same_job_name_on_two_models_is_two_runs(url: str, packs: PackRegistry) -> None:
    with session_scope(url) as s:
        svc.add_model(s, "ft", "Zeta", base="m")
        svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1), job=JOB)
        svc.add_run(s, "ft", _ops(packs, 1e25), start=date(2026, 5, 2), job=JOB)
        assert svc.model_view(s, packs, "ft", D)["cumulative_operations"] == pytest.approx(4e25)


def test_metered_pods_of_a_re_declared_job_are_charged_against_the_larger_declaration(
    url: str, packs: PackRegistry
) -> None:
    from datetime import UTC, datetime

    with session_scope(url) as s:
        svc.add_run(s, "m", _ops(packs, 1e21), start=date(2026, 5, 1), job=JOB)
        svc.add_run(s, "m", _ops(packs, 1e22), start=date(2026, 5, 1), job=JOB)
        t0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
        svc.add_metered_usage(s, customer="Zeta", model="m", job=f"{JOB}#train-worker-0", accelerator_name="h100-sxm",
                              chip_seconds=1000 * 3600, start=t0, end=t0.replace(hour=11), packs=packs)
    _all(_totals(url, packs), 1e22)  # max(1e21, 1e22, 1.2e21 metered), once


# ------------------------------------------------------------------- what the user sees


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    capsys.readouterr()
    rc = run_app(app)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_show_lists_every_declaration_of_a_job_and_which_one_it_is_counted_at(
    url: str, packs: PackRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing disappears: the smaller declaration is listed with its id (to withdraw it if it was an error),
    # saying it is counted with the other, once.
    with session_scope(url) as s:
        a = svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1), job=JOB).id
        b = svc.add_run(s, "m", _ops(packs, 8e25), start=date(2026, 5, 1), job=JOB).id
    rc, out, err = _cli(capsys, monkeypatch, "models", "show", "m", "--json")
    assert rc == 0, err
    runs: list[dict[str, Any]] = json.loads(out)["runs"]
    assert sorted(r["id"] for r in runs) == sorted([a, b])
    kept = next(r for r in runs if r["id"] == b)
    other = next(r for r in runs if r["id"] == a)
    assert kept["counted"] and kept["operations"] == pytest.approx(8e25)
    assert not other["counted"] and other["counted_with"] == b and other["operations"] == pytest.approx(3e25)
    rc, out, err = _cli(capsys, monkeypatch, "models", "show", "m")
    assert rc == 0, err
    assert f"run {a}: 3e25" in out and f"counted once with run {b}" in out


def test_re_declaring_a_job_is_in_the_audit_trail_with_the_earlier_declaration(
    url: str, packs: PackRegistry
) -> None:
    with session_scope(url) as s:
        a = svc.add_run(s, "m", _ops(packs, 3e25), start=date(2026, 5, 1), job=JOB).id
        svc.add_run(s, "m", _ops(packs, 8e25), start=date(2026, 5, 1), job=JOB)
    with session_scope(url) as s:
        adds = [json.loads(e.payload) for e in s.exec(select(AuditEntry).where(AuditEntry.action == "model.run.add")
                                          .order_by(AuditEntry.seq)).all()]
    assert adds[0]["same_job_as"] == [] and adds[1]["same_job_as"] == [a]


# ------------------------------------------------------------------- the rule in the core


def test_an_undated_declaration_of_a_job_makes_it_count_on_every_date_as_an_undated_run_does() -> None:
    from policies.ledger import Run, one_run_per_job

    once = one_run_per_job([Run(5e25, start=date(2026, 4, 1), job=JOB, ref="run:1"),
                            Run(1e25, job=JOB, ref="run:2")])
    assert len(once) == 1 and once[0].operations == 5e25 and once[0].counts_on(date(2020, 1, 1))


def test_runs_keep_their_order_and_a_job_stands_where_it_was_first_declared() -> None:
    from policies.ledger import Run, one_run_per_job

    runs = [Run(1.0, job="a", ref="run:1"), Run(2.0, ref="run:2"), Run(3.0, job="b", ref="run:3"),
            Run(4.0, job="a", ref="run:4")]
    assert [r.ref for r in one_run_per_job(runs)] == ["run:4", "run:2", "run:3"]
    unique = runs[:3]
    assert one_run_per_job(unique) is unique
