"""A party's HQ and parent over time: an "as of" date before a re-domiciling or an acquisition sees the earlier
ones (red flag 28: the stricter tier of the HQ and the ultimate parent's HQ, § 740.27(a), on that date)."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import Session, select

import agent.directory as directory
import agent.parties as parties
from agent.packs import registry
from agent.store import get_engine, session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Party, PartyOwnership, utc_today
from policies.errors import PartyError, PolicyError
from policies.packs import PackRegistry
from policies.parties import PartyRef, effective_tier

ACQUIRED = date(2026, 3, 1)  # the day of the change in these tests (before today, after the packs' start)
BEFORE = ACQUIRED - timedelta(days=1)


@pytest.fixture(autouse=True)
def _fresh_directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(directory, "TTL", 60.0)  # the webhook's snapshot, as deployed
    directory.clear()
    yield
    directory.clear()


def tier_on(url: str, name: str, day: date) -> tuple[str, int, str]:
    with session_scope(url) as s:
        _, eff = parties.party_view(s, registry(), name, day)
        return eff.hq, eff.tier, eff.ultimate_parent


def review_tier(url: str, ns: str, day: date) -> int | None:
    with Session(get_engine(url)) as s:
        _, eff = directory.customer_for(s, registry(), ns, "", day)
        return eff.tier if eff else None


def test_redomiciled_customer_keeps_its_earlier_hq_tier_before_the_effective_date(db_url: str) -> None:
    with session_scope(db_url) as s:
        parties.add_party(s, "Lion Compute", "SG", namespaces=["lion"])  # Tier 2
        parties.add_party(s, "Lion Compute", "CN", effective=ACQUIRED)  # re-domiciled to a Tier 3 country
    assert tier_on(db_url, "Lion Compute", BEFORE) == ("SG", 2, "Lion Compute")
    assert tier_on(db_url, "Lion Compute", ACQUIRED) == ("CN", 3, "Lion Compute")
    assert tier_on(db_url, "Lion Compute", utc_today()) == ("CN", 3, "Lion Compute")
    # The admission path: the snapshot for today, the history for the earlier date, in either order.
    assert review_tier(db_url, "lion", utc_today()) == 3
    assert review_tier(db_url, "lion", BEFORE) == 2
    with session_scope(db_url) as s:
        assert s.exec(select(Party.hq).where(Party.name == "Lion Compute")).one() == "CN"  # current state
        rows = s.exec(select(PartyOwnership.effective_from, PartyOwnership.hq).order_by(PartyOwnership.id)).all()
        assert [(d, hq) for d, hq in rows] == [(date.min, "SG"), (ACQUIRED, "CN")]
        entry = s.exec(select(AuditEntry).where(AuditEntry.action == "party.update")).one()
        payload = json.loads(entry.payload) if isinstance(entry.payload, str) else entry.payload
        assert payload["effective"] == ACQUIRED.isoformat() and payload["before"] == {"hq": "SG", "parent": None}


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_customer_acquired_by_a_tier3_parent_is_tier1_before_the_acquisition_and_tier3_from_it(
        backend: str, request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    with session_scope(url) as s:
        parties.add_party(s, "Dragon Holdings", "CN")
        parties.add_party(s, "Nordic Cloud", "SE", namespaces=["nordic"])  # Tier 1, no parent
        parties.add_party(s, "Nordic Edge", "DE", "Nordic Cloud", namespaces=["edge"])  # its subsidiary
        parties.add_party(s, "Nordic Cloud", None, "Dragon Holdings", effective=ACQUIRED)
    assert tier_on(url, "Nordic Cloud", BEFORE) == ("SE", 1, "Nordic Cloud")
    assert tier_on(url, "Nordic Cloud", ACQUIRED) == ("SE", 3, "Dragon Holdings")
    # A subsidiary's chain goes through the acquired party: its tier follows the parent's history too.
    assert tier_on(url, "Nordic Edge", BEFORE) == ("DE", 1, "Nordic Cloud")
    assert tier_on(url, "Nordic Edge", ACQUIRED) == ("DE", 3, "Dragon Holdings")
    for ns in ("nordic", "edge"):
        assert review_tier(url, ns, utc_today()) == 3
        assert review_tier(url, ns, BEFORE) == 1
        assert review_tier(url, ns, ACQUIRED) == 3
    # Without a snapshot (a store too large to hold), the per-namespace query reads the same history.
    directory.clear()
    try:
        directory.SNAPSHOT_MAX, saved = 1, directory.SNAPSHOT_MAX
        assert review_tier(url, "edge", BEFORE) == 1 and review_tier(url, "edge", ACQUIRED) == 3
    finally:
        directory.SNAPSHOT_MAX = saved
    with session_scope(url) as s:
        assert parties.party_refs(s)["Nordic Cloud"].parent == "Dragon Holdings"
        assert parties.party_refs(s, BEFORE)["Nordic Cloud"].parent is None


def test_an_ownership_change_dated_in_the_future_or_before_the_previous_change_is_refused(db_url: str) -> None:
    with session_scope(db_url) as s:
        parties.add_party(s, "Dragon Holdings", "CN")
        parties.add_party(s, "Lion Compute", "SG")
        parties.add_party(s, "Lion Compute", "MY", effective=ACQUIRED)
    tomorrow = utc_today() + timedelta(days=1)
    with pytest.raises(PolicyError, match=r"^--effective: .* is after today"), session_scope(db_url) as s:
        parties.add_party(s, "Lion Compute", None, "Dragon Holdings", effective=tomorrow)
    with pytest.raises(PolicyError, match=r"^--effective: 2026-02-28 is before Lion Compute's previous HQ or "
                                          r"parent change, effective 2026-03-01"), session_scope(db_url) as s:
        parties.add_party(s, "Lion Compute", "CN", effective=BEFORE)
    with session_scope(db_url) as s:  # nothing written by either
        assert s.exec(select(Party.hq, Party.parent_id).where(Party.name == "Lion Compute")).one() == ("MY", None)
        assert len(s.exec(select(PartyOwnership)).all()) == 3
    # The CLI and the API name their own field.
    from agent.cli import app
    from agent.cli._common import run_app

    rc, err = _veuctl(run_app, app, "parties", "add", "Lion Compute", "--hq", "CN", "--effective",
                      tomorrow.isoformat())
    assert rc == 2 and err.startswith("error: --effective:") and "after today" in err
    client = TestClient(create_app_for(db_url), raise_server_exceptions=False)
    r = client.patch("/api/v1/parties/Lion%20Compute", json={"hq": "CN", "effective": tomorrow.isoformat()})
    assert r.status_code == 422 and r.json()["detail"].startswith("effective:"), r.text
    r = client.patch("/api/v1/parties/Lion%20Compute", json={"hq": "CN", "effective": ACQUIRED.isoformat()})
    assert r.status_code == 200 and r.json()["hq"] == "CN", r.text  # the same day as the previous: a correction
    assert tier_on(db_url, "Lion Compute", ACQUIRED)[:2] == ("CN", 3)
    assert tier_on(db_url, "Lion Compute", BEFORE)[:2] == ("SG", 2)


def create_app_for(url: str):  # type: ignore[no-untyped-def]
    from agent.api.app import create_app

    return create_app(url)


def _veuctl(run_app, app, *args: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["veuctl", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_app(app)
    finally:
        sys.argv = argv
    return rc, err.getvalue() + out.getvalue()


def test_a_parent_dated_into_a_past_where_the_other_party_pointed_back_is_an_ownership_cycle(db_url: str) -> None:
    """Today's graph has no loop, but from 2026-01-01 to 2026-03-01 it would: refused, naming --parent."""
    with session_scope(db_url) as s:
        parties.add_party(s, "A Co", "US")
        parties.add_party(s, "B Co", "US")
        parties.add_party(s, "B Co", None, "A Co", effective=date(2026, 1, 1))
        parties.add_party(s, "B Co", None, no_parent=True, effective=ACQUIRED)
    with pytest.raises(PartyError, match=r"^--parent: .*ownership cycle"), session_scope(db_url) as s:
        parties.add_party(s, "A Co", None, "B Co", effective=date(2025, 12, 1))
    with session_scope(db_url) as s:  # dated after B Co's parent was removed: no loop on any date
        parties.add_party(s, "A Co", None, "B Co", effective=ACQUIRED)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_migration_0020_backfills_each_party_as_always_so_every_existing_decision_is_unchanged(
        backend: str, request: pytest.FixtureRequest, packs: PackRegistry) -> None:
    from alembic import command
    from alembic.config import Config

    from agent.store.db import _MIGRATIONS, make_engine

    url = str(request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url"))
    eng = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    days = (date(2025, 6, 1), date(2026, 2, 2), date(2026, 2, 3), utc_today())
    try:
        with eng.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
            command.downgrade(cfg, "0016_party_address")
            conn.commit()
            t = {"t": "2026-01-01 00:00:00"}
            for name, hq, parent in (("KH Co", "KH", None), ("DE Sub", "DE", "KH Co"), ("Macau Holdings", "MO", None),
                                     ("US Lab", "US", "Macau Holdings"), ("Gulf AI", "AE", None)):
                conn.execute(text("INSERT INTO party (name, hq, parent_id, created_at, updated_at) VALUES "
                                  "(:n, :h, (SELECT id FROM party WHERE name = :p), :t, :t)"),
                             {"n": name, "h": hq, "p": parent, **t})
                conn.execute(text("INSERT INTO party_namespace (cluster, namespace, party_id, created_at) VALUES "
                                  "('', :ns, (SELECT id FROM party WHERE name = :n), :t)"),
                             {"ns": name.lower().replace(" ", "-"), "n": name, **t})
            conn.commit()
            rows = conn.execute(text("SELECT p.name, p.hq, q.name FROM party p LEFT JOIN party q "
                                     "ON q.id = p.parent_id")).all()
            refs = {n: PartyRef(n, h, p) for n, h, p in rows}
            expected = {(n, d): effective_tier(packs, refs, n, d).tier for n in refs for d in days}
            command.upgrade(cfg, "heads")
            conn.commit()
            backfill = conn.execute(text("SELECT effective_from, count(*) FROM party_ownership "
                                         "GROUP BY effective_from")).all()
            assert [(parties.as_day(d), c) for d, c in backfill] == [(date.min, 5)]
            assert conn.execute(text("SELECT count(*) FROM party p JOIN party_ownership o ON o.party_id = p.id "
                                     "AND o.hq = p.hq AND (o.parent_id = p.parent_id OR (o.parent_id IS NULL "
                                     "AND p.parent_id IS NULL))")).scalar() == 5
            # A history write by any writer moves the directory's change marker, as a party write does.
            marker = conn.execute(text("SELECT n FROM change_marker WHERE name = 'parties'")).scalar_one()
            conn.execute(text("UPDATE party_ownership SET recorded_by = 'sql' WHERE 1 = 0"))
            conn.execute(text("UPDATE party_ownership SET recorded_by = recorded_by"))
            conn.commit()
            assert conn.execute(text("SELECT n FROM change_marker WHERE name = 'parties'")).scalar_one() > marker
    finally:
        eng.dispose()
    with session_scope(url) as s:
        got = {(n, d): effective_tier(packs, parties.party_refs(s, d), n, d).tier for n in refs for d in days}
    assert got == expected
    assert {(n, d): review_tier(url, n.lower().replace(" ", "-"), d) for n in refs for d in days} == expected


@pytest.mark.postgres
def test_concurrent_reciprocal_parents_cannot_both_commit_an_ownership_cycle(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `parties add` at once, A's parent B and B's parent A: each checks for a cycle, then waits until the
    other has checked too (or 2 s, when the other is blocked). The ownership lock, taken before the graph is
    read, makes the second check after the first commits, and it is refused: never a committed cycle.

    (Without the lock the defect no longer reproduces here: the graph is read as columns after the party's own
    UPDATE, whose change-marker trigger queues it behind the other writer. That is incidental, so the test
    asserts the lock is what each write takes first.)"""
    from sqlalchemy import event

    with session_scope(pg_url) as s:
        parties.add_party(s, "A Co", "US")
        parties.add_party(s, "B Co", "GB")
    sent: dict[str, list[str]] = {}

    def note(conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        sent.setdefault(threading.current_thread().name, []).append(statement)

    event.listen(get_engine(pg_url), "before_cursor_execute", note)
    barrier = threading.Barrier(2, timeout=2)
    real_chain = parties.ownership_chain
    waited = threading.local()

    def chain_then_wait(refs: dict[str, PartyRef], name: str) -> tuple[PartyRef, ...]:
        out = real_chain(refs, name)
        if not getattr(waited, "done", False):
            waited.done = True
            with contextlib.suppress(threading.BrokenBarrierError):  # the other is blocked on the lock
                barrier.wait()
        return out

    monkeypatch.setattr(parties, "ownership_chain", chain_then_wait)
    errors: list[BaseException] = []

    def add(name: str, parent: str) -> None:
        try:
            with session_scope(pg_url) as s:
                parties.add_party(s, name, None, parent)
        except BaseException as exc:  # collected for the assertions below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=a, name=f"add-{a[0]}") for a in (("A Co", "B Co"),
                                                                                  ("B Co", "A Co"))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    event.remove(get_engine(pg_url), "before_cursor_execute", note)
    with session_scope(pg_url) as s:
        refs = parties.party_refs(s)
    assert not (refs["A Co"].parent == "B Co" and refs["B Co"].parent == "A Co")
    assert len(errors) == 1 and isinstance(errors[0], PartyError), errors
    assert str(errors[0]).startswith("--parent:") and "ownership cycle" in str(errors[0])
    for th in threads:
        first = next(st for st in sent[th.name] if "advisory" in st or "party" in st)
        assert "pg_advisory_xact_lock" in first, sent[th.name]


def test_veuctl_parties_show_and_admission_review_as_of_a_date_before_the_acquisition_use_the_earlier_tier(
        db_url: str, tmp_path: Path) -> None:
    from agent.cli import app
    from agent.cli._common import run_app

    for args in (("parties", "add", "Dragon Holdings", "--hq", "CN"),
                 ("parties", "add", "Nordic Cloud", "--hq", "SE", "--namespace", "nordic"),
                 ("parties", "add", "Nordic Cloud", "--parent", "Dragon Holdings", "--effective",
                  ACQUIRED.isoformat())):
        rc, out = _veuctl(run_app, app, *args, "--json")
        assert rc == 0, out
    assert json.loads(out)["effective_tier"] == 3  # as of today
    rc, out = _veuctl(run_app, app, "parties", "show", "Nordic Cloud", "--as-of", BEFORE.isoformat(), "--json")
    shown = json.loads(out)
    assert (shown["effective_tier"], shown["parent"], shown["ultimate_parent"]) == (1, None, "Nordic Cloud")
    rc, out = _veuctl(run_app, app, "parties", "list", "--as-of", ACQUIRED.isoformat(), "--json")
    assert {r["name"]: r["effective_tier"] for r in json.loads(out)}["Nordic Cloud"] == 3

    f = tmp_path / "review.json"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train", "namespace": "nordic"},
           "spec": {"parallelism": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "t", "image": "train:1", "resources": {"limits": {"nvidia.com/gpu": 8}}}],
               "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}}}
    f.write_text(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "batch", "version": "v1", "kind": "Job"},
        "resource": {"group": "batch", "version": "v1", "resource": "jobs"}, "name": "train",
        "namespace": "nordic", "operation": "CREATE", "userInfo": {"username": "alice@example.com"},
        "object": job, "oldObject": None, "dryRun": True}}))
    decided = {}
    for day in (BEFORE, ACQUIRED):
        rc, out = _veuctl(run_app, app, "admission", "review", str(f), "--as-of", day.isoformat(), "--json")
        assert rc == 0, out
        decided[day] = json.loads(out)
    assert decided[BEFORE]["allowed"] is True, decided[BEFORE]
    assert decided[ACQUIRED]["allowed"] is False and "Tier 3" in json.dumps(decided[ACQUIRED]), decided[ACQUIRED]


def test_caps_and_paths_as_of_a_date_before_a_redomicile_use_the_hq_of_that_date(db_url: str) -> None:
    """A UVEU holder headquartered in the US until it re-domiciled to the UK: the 50%-outside-the-US cap
    (§ 748.15, US-headquartered UVEUs only) binds its caps as of a day before the move, not after it."""
    from agent import caps as capsvc
    from agent.packs import registry
    from tests.caps.conftest import seed_fleet

    seed_fleet(db_url)
    moved = date(2026, 3, 1)
    with session_scope(db_url) as s:
        parties.add_party(s, "Aurora", "GB", effective=moved)
    packs = registry()
    with session_scope(db_url) as s:
        before = {c.id for c in capsvc.caps_for(s, packs, "aurora", moved - timedelta(days=1))}
        after = {c.id for c in capsvc.caps_for(s, packs, "aurora", moved)}
    assert "uveu.outside_us.owned" in before
    assert "uveu.outside_us.owned" not in after
