"""Red flag 28's corporate-group sum under concurrency, stale directories and answered lineages.

The customer-wide sum over a customer's corporate group outside Tier 1 is only as good as two properties:
reviews whose sums read each other's jobs are decided one at a time (in one batch, and across replicas whose
directory snapshots may disagree for up to ``VEU_CUSTOMER_CACHE_SECONDS`` after a change), and only work that
was asked about and answered is left out of the sum. The red flag's inquiry is of "the customer": one
member's answer about its own lineage says nothing of a sibling's jobs that name the same model.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

import agent.directory
from agent import cases, parties
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from agent.store.db import lock_key
from policies import redflag

from .conftest import M, job, review, seed

HALF = {M + "expected-hours": "8000"}  # 256 pods × 8 H100 × 8000 h = 5.8e25: under 1e26 alone, over it twice
BIG = {M + "expected-hours": "8000"}  # with 512 pods: 1.17e26, a lineage over the threshold on its own

GROUP = [
    ("Gulf Holdings", "AE", None, "tenant-gulf"),
    ("Gulf Labs", "AE", "Gulf Holdings", "tenant-gulf-labs"),
    ("Riyadh Labs", "SA", "Gulf Holdings", "tenant-gulf-sa"),
]


def half(name: str, ns: str, model: str) -> dict[str, Any]:
    return review(job(name, ns, pods=256, annotations={**HALF, M + "model": model}))


def _register(url: str, rows: list[tuple[str, str, str | None, str]]) -> None:
    with session_scope(url) as s:
        for name, hq, parent, ns in rows:
            parties.add_party(s, name, hq, parent, [ns])


@pytest.fixture(params=["sqlite", "postgresql"])
def group_store(request: pytest.FixtureRequest) -> Iterator[str]:
    url: str = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    agent.directory.clear()
    seed(url)
    _register(url, GROUP)
    yield url
    agent.directory.clear()


def _decide(url: str, body: dict[str, Any]) -> Outcome:
    with session_scope(url) as s:
        return cases.evaluate_review(s, registry(), body)


# ------------------------------------------------------------------------------ two replicas, two snapshots


@pytest.fixture()
def two_replicas(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """Two URLs of one PostgreSQL database: each keeps its own directory snapshot, as two replicas do. The
    first one's is taken before a new subsidiary (sorting before every other member) is registered, and kept
    (a long cache bound): it does not know the subsidiary; the second one's does."""
    from agent.store.db import _engines, _lock

    monkeypatch.setattr(agent.directory, "TTL", 3600.0)
    agent.directory.clear()
    seed(pg_url)
    _register(pg_url, GROUP)
    stale, fresh = pg_url, pg_url + ("&" if "?" in pg_url else "?") + "application_name=veu-replica-2"
    # The stale replica reads the directory (a dry run records nothing) before the new subsidiary exists.
    assert _decide(stale, review(job("warm", "tenant-gulf-labs"), dry_run=True)).allowed
    _register(fresh, [("Aaa Gulf Ventures", "AE", "Gulf Holdings", "tenant-gulf-aaa")])
    yield stale, fresh
    agent.directory.clear()
    with _lock:
        eng = _engines.pop(fresh, None)
    if eng is not None:
        eng.dispose()


def _at_once(monkeypatch: pytest.MonkeyPatch, calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Decide each (url, review) on its own thread and connection, each pausing after its reads until the
    other has read too (or 3 s have passed: the other is waiting for a lock this one holds). Reviews that
    are not serialised both read before either writes; serialised ones read one after the other."""
    pause = threading.Barrier(len(calls))
    read_ledger = cases._read_ledger

    def paused(*args: Any, **kw: Any) -> Any:
        out = read_ledger(*args, **kw)
        with contextlib.suppress(threading.BrokenBarrierError):
            pause.wait(3)
        return out

    monkeypatch.setattr(cases, "_read_ledger", paused)
    codes: dict[int, str] = {}

    def submit(i: int, url: str, body: dict[str, Any]) -> None:
        codes[i] = _decide(url, body).code

    threads = [threading.Thread(target=submit, args=(i, url, body)) for i, (url, body) in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(codes.values())


def test_a_customers_jobs_on_replicas_that_disagree_about_its_group_are_decided_one_at_a_time(
    two_replicas: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stale, fresh = two_replicas
    codes = _at_once(monkeypatch, [(stale, half("p1", "tenant-gulf-labs", "gulf-a")),
                                   (fresh, half("p2", "tenant-gulf-labs", "gulf-b"))])
    # One customer's split run: the second part sees the first, whatever each replica thinks its group is.
    assert codes == sorted([redflag.ALLOW, redflag.HOLD_FOR_INQUIRY])


def test_siblings_on_replicas_of_which_one_has_not_seen_a_new_subsidiary_are_decided_one_at_a_time(
    two_replicas: tuple[str, str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stale, fresh = two_replicas
    codes = _at_once(monkeypatch, [(stale, half("p1", "tenant-gulf-labs", "gulf-a")),
                                   (fresh, half("p2", "tenant-gulf-sa", "gulf-b"))])
    assert codes == sorted([redflag.ALLOW, redflag.HOLD_FOR_INQUIRY])


def test_a_batch_takes_its_customers_and_groups_locks_in_its_first_round_trip(
    pg_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent.directory.clear()
    seed(pg_url)
    _register(pg_url, GROUP)
    taken: list[list[int]] = []
    reserve = cases.reserve_ids

    def spy(*args: Any, **kw: Any) -> Any:
        taken.append(sorted(kw.get("locks", ())))
        return reserve(*args, **kw)

    monkeypatch.setattr(cases, "reserve_ids", spy)
    with session_scope(pg_url) as s:
        out = cases.evaluate_reviews(s, registry(), [half("b1", "tenant-gulf-labs", "gulf-a"),
                                                     half("b2", "tenant-gulf-sa", "gulf-b")])
    agent.directory.clear()
    assert [o.code for o in out] == [redflag.ALLOW, redflag.HOLD_FOR_INQUIRY]
    # Every lock before any case lock, in one ascending set (a lock taken in a later round, after another
    # transaction may hold it and wait for one of ours, could deadlock); each customer's own among them.
    assert taken[0] and all(not later for later in taken[1:])
    assert {lock_key("customer", "Gulf Labs"), lock_key("customer", "Riyadh Labs")} <= set(taken[0])


# ------------------------------------------------------------------------------------ answered lineages


def test_a_siblings_answered_lineage_does_not_leave_another_members_jobs_of_that_name_out_of_the_group_sum(
    group_store: str,
) -> None:
    big = review(job("big", "tenant-gulf-labs", pods=512, annotations={**BIG, M + "model": "shared-x"}))
    held = _decide(group_store, big)
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None, held.message
    with session_scope(group_store) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance@example.com")
    assert _decide(group_store, big).code == redflag.ALLOW_AFTER_INQUIRY
    # Riyadh Labs trains a model of the same name: Gulf Labs' answer was about Gulf Labs' training only.
    assert _decide(group_store, half("r1", "tenant-gulf-sa", "shared-x")).code == redflag.ALLOW
    second = _decide(group_store, half("r2", "tenant-gulf-sa", "riyadh-b"))
    assert second.code == redflag.HOLD_FOR_INQUIRY, second.message
    with session_scope(group_store) as s:
        case = cases.case_view(cases.get_case(s, second.case_id or 0))
    assert case["model"] == redflag.aggregate_key("Riyadh Labs")
    # Gulf Labs' answered 1.17e26 is still left out: only Riyadh Labs' two 5.8e25 jobs.
    assert case["estimate"] < 1.2e26


def test_a_members_own_answered_lineage_is_left_out_of_its_groups_sum(group_store: str) -> None:
    big = review(job("big", "tenant-gulf-labs", pods=512, annotations={**BIG, M + "model": "shared-x"}))
    held = _decide(group_store, big)
    assert held.case_id is not None
    with session_scope(group_store) as s:
        cases.resolve_case(s, registry(), held.case_id, export_intent=False, by="compliance@example.com")
    assert _decide(group_store, big).code == redflag.ALLOW_AFTER_INQUIRY
    # Gulf Labs' 1.17e26 was asked about and answered: its sibling's small job is admitted.
    small = _decide(group_store, review(job("eval", "tenant-gulf-sa", pods=2,
                                            annotations={M + "model": "eval", M + "expected-hours": "1"})))
    assert small.code == redflag.ALLOW, small.message


# ---------------------------------------------------------------------------------------- awkward names


def test_group_members_whose_names_hold_quotes_commas_braces_and_unicode_are_summed(
    db_url: str, pg_url: str,
) -> None:
    names = ['Gulf "Q" Holdings, {Ltd}', "O'Brien \\ Labs {a,b}", "Émirats 株式会社 NULL", "null"]
    rows = [(names[0], "AE", None, "tenant-odd-top"), (names[1], "AE", names[0], "tenant-odd-a"),
            (names[2], "SA", names[0], "tenant-odd-b"), (names[3], "IN", names[0], "tenant-odd-c")]
    for url in (db_url, pg_url):
        agent.directory.clear()
        _register(url, rows)
        with session_scope(url) as s:
            party, _tier = agent.directory.customer_for(s, registry(), "tenant-odd-b", "", date.today())
            assert party is not None
            assert agent.directory.corporate_group(s, registry(), party, date.today()).members == tuple(sorted(names))
        # 160 pods × 8 H100 × 8000 h = 3.6e25: two are under 1e26, three over it, so the third is held only
        # when both other members' jobs are found by name.
        def third(name: str, ns: str) -> dict[str, Any]:
            return review(job(name, ns, pods=160, annotations={**HALF, M + "model": name}))

        assert _decide(url, third("o1", "tenant-odd-c")).code == redflag.ALLOW
        assert _decide(url, third("o2", "tenant-odd-a")).code == redflag.ALLOW
        assert _decide(url, third("o3", "tenant-odd-b")).code == redflag.HOLD_FOR_INQUIRY, url
    agent.directory.clear()
