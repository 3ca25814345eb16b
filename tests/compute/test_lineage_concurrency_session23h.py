"""Two writers on one model lineage at once, on SQLite and PostgreSQL: neither's run is lost, and no lineage cycle
is committed.

4E091's count ("pre-training and any subsequent training, such as fine-tuning the pre-trained model") walks a model's
base chain and its data generators; a cycle in them has no total at all, so every read of those lineages (the ledger,
the admission webhook) fails until someone repairs the records by hand.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import date

import pytest

import agent.ledger as ledger
from agent.packs import registry
from agent.parties import add_party
from agent.store import session_scope
from policies.errors import PolicyError
from policies.ledger import LedgerError
from tests.races import after_check_at_once

DAY = date(2025, 6, 1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def _lineage(url: str) -> None:
    with session_scope(url) as s:
        add_party(s, "Lumen", "SG")
        ledger.add_model(s, "Base", "Lumen")
        ledger.add_model(s, "Tuned", "Lumen", base="Base")


def _both_at_once(url: str, monkeypatch: pytest.MonkeyPatch, writes: list[Callable[..., object]],
                  checks: tuple[str, ...] = ("find_cycle",)) -> list[Exception]:
    """Run two ledger writes in two sessions at once, each waiting after its check (the cycle check unless told)
    until the other has checked too: the window in which a check can miss the other's write."""

    def in_session(write: Callable[..., object]) -> Callable[[], object]:
        def run() -> object:
            with session_scope(url) as s:
                return write(s)
        return run

    return after_check_at_once(monkeypatch, ledger, checks, [in_session(w) for w in writes])


def _readable(url: str, *names: str) -> dict[str, float]:
    """Every named lineage still has a total (a committed cycle raises here)."""
    with session_scope(url) as s:
        return {n: ledger.model_status(s, registry(), n, DAY).cumulative_operations for n in names}


def test_a_based_on_b_and_b_based_on_a_recorded_at_once_is_refused_once(url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with session_scope(url) as s:
        add_party(s, "Lumen", "SG")
        ledger.add_model(s, "A", "Lumen")
        ledger.add_model(s, "B", "Lumen")
    errors = _both_at_once(url, monkeypatch, [lambda s: ledger.add_model(s, "A", "Lumen", base="B"),
                                              lambda s: ledger.add_model(s, "B", "Lumen", base="A")])
    assert len(errors) == 1 and isinstance(errors[0], LedgerError), errors
    assert str(errors[0]).startswith("base:") and "cycle" in str(errors[0])
    assert _readable(url, "A", "B") == {"A": 0.0, "B": 0.0}


def test_a_generator_and_a_base_closing_a_loop_recorded_at_once_is_refused_once(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tuned is recorded as trained on data from Gen (a generator edge) while Gen is re-based on Tuned: each alone is a
    lineage, together the loop Tuned -> Gen -> Tuned. One is refused, naming its field."""
    _lineage(url)
    with session_scope(url) as s:
        ledger.add_model(s, "Gen", "Lumen")
    errors = _both_at_once(url, monkeypatch, [
        lambda s: ledger.add_synthetic(s, "Tuned", "Gen", 0.5, 1e24),
        lambda s: ledger.add_model(s, "Gen", "Lumen", base="Tuned"),
    ])
    assert len(errors) == 1 and isinstance(errors[0], LedgerError), errors
    assert str(errors[0]).split(":")[0] in ("base", "generator") and "cycle" in str(errors[0])
    _readable(url, "Base", "Tuned", "Gen")


def _record_runs(url: str, model: str, n: int, barrier: multiprocessing.synchronize.Barrier,
                 failures: multiprocessing.Queue[str]) -> None:  # type: ignore[name-defined]
    barrier.wait()
    pk = registry()
    for i in range(n):
        try:
            with session_scope(url) as s:
                ledger.add_run(s, model, ledger.estimate(pk, DAY, operations=1e23), start=date(2025, 1, 1 + i))
        except (PolicyError, Exception) as exc:  # reported to the parent, which asserts there are none
            failures.put(f"{model} run {i}: {type(exc).__name__}: {exc}")


def test_two_processes_recording_runs_on_one_lineage_lose_neither(url: str) -> None:
    """A platform lead records the base model's runs while a colleague records the fine-tune's, in two processes: the
    fine-tune's total is every run of both (OPS: its own runs plus its base's total), none lost."""
    _lineage(url)
    n = 6
    ctx = multiprocessing.get_context("spawn")
    barrier, failures = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_record_runs, args=(url, m, n, barrier, failures)) for m in ("Base", "Tuned")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert failures.empty(), failures.get()
    with session_scope(url) as s:
        tuned = ledger.model_status(s, registry(), "Tuned", DAY)
        base = ledger.model_status(s, registry(), "Base", DAY)
    assert len(tuned.cumulative.runs_counted) == n and len(base.cumulative.runs_counted) == n
    assert tuned.cumulative_operations == pytest.approx(2 * n * 1e23, rel=1e-12)


def test_a_run_after_publication_and_the_publication_recorded_at_once_are_refused_once(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One writer records a run of Base ending 2025-07-01 while another publishes Base on 2025-06-01: each checks
    against the other's uncommitted write, so both would commit published weights with training after them."""
    _lineage(url)
    est = ledger.estimate(registry(), DAY, operations=1e24)
    # add_run's publication check comes before its lineage check; add_model's is _check_no_training_after.
    errors = _both_at_once(url, monkeypatch, [
        lambda s: ledger.add_run(s, "Base", est, end=date(2025, 7, 1)),
        lambda s: ledger.add_model(s, "Base", "Lumen", published=None, published_on=DAY)],
        checks=("_check_lineage_finite", "_check_no_training_after"))
    assert len(errors) == 1 and isinstance(errors[0], LedgerError), errors
    with session_scope(url) as s:
        m = ledger.get_model(s, "Base")
        runs = ledger.model_view(s, registry(), "Base", DAY)["runs"]
        assert not (m.published_on == DAY and runs), (m.published_on, runs)
