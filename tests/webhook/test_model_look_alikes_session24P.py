"""Session 24 (P): a job whose model annotation reads as a registered model's name is that model's lineage at
admission, as it is at registration and in metering.

The ledger refuses to register "Zoë 70B" typed with a decomposed ë, two spaces or full-width letters once "Zoë 70B"
is registered (they would split one lineage's operations, 4E091's 10^26, in two), and metering charges such a job to
the registered model. The webhook still looked the annotation up by its exact text: a lineage at 9.99e25 operations
held a job naming it in composed form and admitted the same job naming it decomposed (review R2, fail-open).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import date

import pytest
from sqlmodel import select

from agent import ledger
from agent.cases import Outcome, evaluate_review
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.cases import AdmissionDecision

from .conftest import M, job, review

NFC = unicodedata.normalize("NFC", "Zoë 70B")
NFD = unicodedata.normalize("NFD", "Zoë 70B")
LOOK_ALIKES = [NFD, "Zoë  70B", "Zoë\u00a070B", "Ｚoë 70B"]  # decomposed, two spaces, a no-break space, full-width


def _registered_near_threshold(url: str) -> None:
    with session_scope(url) as s:
        ledger.add_model(s, NFC, "Emirates AI")
        ledger.add_run(s, NFC, ledger.estimate(registry(), date.today(), operations=9.99e25), start=date(2026, 1, 1))


def _decide(url: str, name: str, model: str, **annotations: str) -> Outcome:
    ann = {M + "model": model, M + "expected-hours": "8000", **{M + k: v for k, v in annotations.items()}}
    with session_scope(url) as s:
        return evaluate_review(s, registry(), review(job(name, pods=8, annotations=ann)))


@pytest.mark.parametrize("typed", LOOK_ALIKES)
def test_a_job_naming_a_look_alike_of_a_registered_model_is_decided_on_that_models_lineage(
    store: str, typed: str,
) -> None:
    _registered_near_threshold(store)
    exact = _decide(store, "j-exact", NFC)
    assert exact.code == "HOLD_FOR_INQUIRY", exact.message
    alike = _decide(store, "j-alike", typed)
    assert alike.code == exact.code, alike.message
    assert alike.estimate == exact.estimate


@pytest.mark.postgres
def test_look_alike_annotations_are_resolved_on_postgresql_too(pg_store: str) -> None:
    _registered_near_threshold(pg_store)
    codes = {typed: _decide(pg_store, f"j-{i}", typed).code for i, typed in enumerate([NFC, *LOOK_ALIKES])}
    assert set(codes.values()) == {"HOLD_FOR_INQUIRY"}, codes


def test_the_decision_names_the_registered_model_and_says_the_annotation_read_as_it(store: str) -> None:
    _registered_near_threshold(store)
    out = _decide(store, "j-nfd", NFD)
    assert out.decision is not None and out.decision.model_key == NFC
    assert any(repr(NFD) in w and repr(NFC) in w for w in out.warnings), out.warnings  # kubectl shows it
    with session_scope(store) as s:
        (row,) = s.exec(select(AdmissionDecision).where(AdmissionDecision.job_ref.like("%j-nfd"))).all()
        assert row.model_key == NFC  # later reviews' related-jobs sums find it under the lineage


def test_parts_of_one_run_under_two_spellings_of_a_registered_model_are_summed(store: str) -> None:
    """Related-jobs rule: a run split in two jobs, each below 10^26, the second naming the model decomposed, is one
    lineage's training."""
    with session_scope(store) as s:
        ledger.add_model(s, NFC, "Emirates AI")
    first = _decide(store, "part-1", NFC, operations="6e25")
    assert first.code == "ALLOW", first.message
    second = _decide(store, "part-2", NFD, operations="6e25")
    assert second.code == "HOLD_FOR_INQUIRY", second.message
    # Held on the lineage (both parts), not only by the customer-wide sum, which reads every model name.
    assert second.decision is not None
    assert (second.decision.case_subject, second.decision.lineage_operations) == (NFC, pytest.approx(1.2e26))


def test_a_base_model_annotation_in_another_unicode_form_counts_the_registered_base(store: str) -> None:
    _registered_near_threshold(store)
    out = _decide(store, "ft", "Zoë 70B Instruct", **{"base-model": NFD})
    assert out.code == "HOLD_FOR_INQUIRY", out.message


@pytest.mark.parametrize("other", ["Zoe 70B", "zoë 70B", "Zoë 7B"])
def test_a_name_that_only_resembles_the_registered_one_is_still_its_own_lineage(store: str, other: str) -> None:
    """Only Unicode form and blanks are looked through: another letter, or case (the lookup keeps case), is another
    model."""
    _registered_near_threshold(store)
    assert _decide(store, "j-other", other).code == "ALLOW"


def test_the_review_reads_the_ledger_in_one_statement_for_a_look_alike_free_name(
    store: str, decide_review: Callable[..., Outcome],
) -> None:
    """Resolving look-alikes adds no statement to a review of a model named exactly (the per-review path)."""
    from sqlalchemy import event

    from agent.store import get_engine

    _registered_near_threshold(store)
    _decide(store, "warm", NFC)  # prepared statements, caches
    seen: list[str] = []

    def count(_conn: object, _cur: object, statement: str, *_a: object) -> None:
        if "ledger_model" in statement:
            seen.append(statement)

    eng = get_engine(store)
    event.listen(eng, "before_cursor_execute", count)
    try:
        _decide(store, "exact", NFC)
    finally:
        event.remove(eng, "before_cursor_execute", count)
    assert len(seen) == 1, seen
