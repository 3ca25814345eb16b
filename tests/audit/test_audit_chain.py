"""The audit trail is tamper-evident: edits, deletions, reordering and truncation are caught by verify."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from agent import audit
from agent.store import session_scope
from agent.store.tables.core import Party
from policies.packs import PackRegistry


def _append(url: str, n: int, every_checkpoint: int | None = None) -> None:
    for i in range(n):
        with session_scope(url) as s:
            audit.record(s, actor="test:alice", action="party.update", subject=f"party:p{i}",
                         payload={"i": i, "hq": "DE", "when": datetime(2026, 1, 1, tzinfo=UTC)})
            if every_checkpoint and (i + 1) % every_checkpoint == 0:
                audit.checkpoint(s)


def _verify(url: str, **kw: object) -> audit.VerifyResult:
    with session_scope(url) as s:
        return audit.verify_chain(s, **kw)  # type: ignore[arg-type]


def _sql(url: str, stmt: str, **params: object) -> None:
    with session_scope(url) as s:
        s.execute(text(stmt), params)


def test_untouched_chain_verifies_and_links_each_entry_to_the_previous(store: str) -> None:
    _append(store, 10, every_checkpoint=5)
    res = _verify(store)
    assert res.ok, res.reason
    assert (res.checked, res.first_seq, res.last_seq, res.checkpoints_verified) == (10, 1, 10, 2)
    with session_scope(store) as s:
        rows = s.execute(text("SELECT seq, prev_hash, hash FROM audit_entry ORDER BY seq")).all()
    assert rows[0][1] == audit.GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, len(rows)))


def test_edited_entry_is_reported_with_its_sequence_number(store: str) -> None:
    _append(store, 8, every_checkpoint=4)
    _sql(store, "UPDATE audit_entry SET payload = :p WHERE seq = 6", p=json.dumps({"i": 999}))
    res = _verify(store)
    assert not res.ok and res.break_seq == 6 and "edited" in res.reason


def test_edited_actor_or_timestamp_is_caught(db_url: str) -> None:
    _append(db_url, 5)
    _sql(db_url, "UPDATE audit_entry SET actor = 'test:mallory' WHERE seq = 2")
    assert _verify(db_url).break_seq == 2
    _append(db_url, 0)


def test_deleted_entry_is_reported(store: str) -> None:
    _append(store, 8, every_checkpoint=4)
    _sql(store, "DELETE FROM audit_entry WHERE seq = 3")
    res = _verify(store)
    assert not res.ok and res.break_seq == 3 and "deleted" in res.reason


def test_reordered_entries_are_reported(store: str) -> None:
    _append(store, 6)
    # Swap entries 3 and 4 (their whole rows, hashes included) via a temporary sequence number.
    _sql(store, "UPDATE audit_entry SET seq = -4 WHERE seq = 4")
    _sql(store, "UPDATE audit_entry SET seq = 4 WHERE seq = 3")
    _sql(store, "UPDATE audit_entry SET seq = 3 WHERE seq = -4")
    res = _verify(store)
    assert not res.ok and res.break_seq == 3


def test_truncated_tail_is_caught_by_the_latest_signed_checkpoint(store: str) -> None:
    _append(store, 10)
    with session_scope(store) as s:
        cp = audit.checkpoint(s)
    assert cp is not None and cp.seq == 10
    _sql(store, "DELETE FROM audit_entry WHERE seq >= 8")
    res = _verify(store)
    assert not res.ok and res.break_seq == 8 and "truncated" in res.reason


def test_rewritten_and_rehashed_chain_fails_against_the_signed_checkpoint(store: str) -> None:
    """An attacker who edits an entry and recomputes every later hash still cannot forge a signature."""
    _append(store, 6)
    with session_scope(store) as s:
        audit.checkpoint(s)
    with session_scope(store) as s:
        rows = s.execute(text("SELECT seq, ts, actor, action, subject, payload FROM audit_entry "
                              "ORDER BY seq")).all()
        prev = audit.GENESIS
        for seq, _ts, actor, action, subject, payload in rows:
            ts = s.get(audit.AuditEntry, seq).ts  # type: ignore[union-attr]
            if seq == 2:
                payload = json.dumps({"i": 2, "hq": "CN"}, sort_keys=True, separators=(",", ":"))
            h = audit.entry_hash(seq, audit.ts_text(ts), actor, action, subject, payload, prev)
            s.execute(text("UPDATE audit_entry SET payload=:p, prev_hash=:v, hash=:h WHERE seq=:s"),
                      {"p": payload, "v": prev, "h": h, "s": seq})
            prev = h
    res = _verify(store)
    assert not res.ok and res.break_seq == 1 and "rewritten" in res.reason


def test_altered_checkpoint_fails_its_signature(db_url: str) -> None:
    _append(db_url, 4)
    with session_scope(db_url) as s:
        audit.checkpoint(s)
    _sql(db_url, "UPDATE audit_checkpoint SET seq = 3")
    res = _verify(db_url)
    assert not res.ok and "signature" in res.reason


def test_checkpoint_from_another_key_is_untrusted(db_url: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 3)
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "other.key"))
    with session_scope(db_url) as s:
        audit.checkpoint(s)
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    res = _verify(db_url)
    assert not res.ok and "untrusted key" in res.reason


def test_verify_from_a_sequence_number_starts_at_the_nearest_checkpoint(db_url: str) -> None:
    _append(db_url, 12, every_checkpoint=5)
    _sql(db_url, "UPDATE audit_entry SET subject = 'x' WHERE seq = 2")
    assert _verify(db_url).break_seq == 2
    res = _verify(db_url, from_seq=8)
    assert res.ok and res.start_from == "checkpoint 5" and res.checked == 7


def test_audit_entry_rolls_back_with_the_callers_failed_transaction(db_url: str) -> None:
    _append(db_url, 2)
    with pytest.raises(RuntimeError), session_scope(db_url) as s:
        s.add(Party(name="Acme", hq="DE"))
        audit.record(s, actor="test", action="party.create", subject="party:Acme", payload={})
        raise RuntimeError("boom")
    _append(db_url, 1)
    res = _verify(db_url)
    assert res.ok and res.last_seq == 3


def test_automatic_periodic_checkpoints_sign_every_n_entries(db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VEU_AUDIT_CHECKPOINT_EVERY", "4")
    _append(db_url, 9)
    res = _verify(db_url)
    assert res.ok and res.checkpoints_verified == 2 and res.latest_checkpoint_seq == 8
    assert res.unanchored_tail == 1


def _worker(url: str, n: int, name: str, errors: list[BaseException]) -> None:
    try:
        for i in range(n):
            with session_scope(url) as s:
                # Writers that change a table first, and writers whose first statement is the record.
                if int(name[1:]) % 2 == 0:
                    s.add(Party(name=f"{name}-{i}", hq="DE"))
                    s.flush()
                audit.record(s, actor=f"collector:{name}", action="party.create",
                             subject=f"party:{name}-{i}", payload={"i": i})
    except BaseException as exc:
        errors.append(exc)


def test_many_concurrent_writers_never_fork_or_break_the_chain(store: str) -> None:
    workers, each = 8, 25
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_worker, args=(store, each, f"w{k}", errors)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:1]
    res = _verify(store)
    assert res.ok, res.reason
    assert res.checked == workers * each and res.last_seq == workers * each
    with session_scope(store) as s:
        assert s.execute(text("SELECT COUNT(DISTINCT prev_hash) FROM audit_entry")).scalar() == workers * each


def _replica(url: str, name: str, n: int) -> None:
    """A webhook replica: its own process, engine and connection pool, appending to the shared chain."""
    from agent.store import db

    db._engines.clear()  # never reuse the parent's pooled connections after fork
    for i in range(n):
        with session_scope(url) as s:
            audit.record(s, actor="webhook:" + name, action="admission.decide", subject=name, payload={"i": i})


def test_webhook_replicas_in_separate_processes_share_one_chain(pg_url: str) -> None:
    _append(pg_url, 1)  # migrate once before the replicas race
    ctx = multiprocessing.get_context("fork")  # forked: no interpreter start-up per replica
    procs = [ctx.Process(target=_replica, args=(pg_url, f"r{k}", 40)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    res = _verify(pg_url)
    assert res.ok and res.last_seq == 161
    with session_scope(pg_url) as s:
        actors = s.execute(text("SELECT COUNT(DISTINCT actor) FROM audit_entry")).scalar()
    assert actors == 5


def _old_entries(url: str, monkeypatch: pytest.MonkeyPatch, when: list[datetime]) -> None:
    for t in when:
        monkeypatch.setattr(audit, "utcnow", lambda t=t: t)
        _append(url, 1)
    monkeypatch.undo()


def test_retention_prunes_only_records_older_than_five_years_and_what_remains_verifies(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch, signing_key_file) -> None:  # type: ignore[no-untyped-def]
    base = datetime(2019, 1, 10, tzinfo=UTC)
    _old_entries(store, monkeypatch, [base + timedelta(days=200 * k) for k in range(10)])
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(signing_key_file))
    years = packs.value("veu-recordkeeping", "retention_years", date(2026, 1, 1))
    as_of = date(2026, 1, 1)
    with session_scope(store) as s:
        res = audit.prune(s, packs, as_of=as_of, actor="test:ops")
    cutoff = datetime(2026 - years, 1, 1, tzinfo=UTC)
    kept = [base + timedelta(days=200 * k) for k in range(10) if base + timedelta(days=200 * k) >= cutoff]
    assert res.deleted == 10 - len(kept) and res.through_seq == 10 - len(kept)
    after = _verify(store)
    assert after.ok, after.reason
    assert after.start_from == f"pruning anchor {res.through_seq}" and after.checked == len(kept) + 1
    with session_scope(store) as s:
        last = s.execute(text("SELECT action, payload FROM audit_entry ORDER BY seq DESC LIMIT 1")).first()
    assert last[0] == "audit.prune" and json.loads(last[1])["retention_years"] == years
    # Deleting the first surviving record is still caught.
    _sql(store, "DELETE FROM audit_entry WHERE seq = :s", s=res.through_seq + 1)
    assert _verify(store).break_seq == res.through_seq + 1


def test_prune_refuses_to_anchor_a_tampered_history(db_url: str, packs: PackRegistry,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _old_entries(db_url, monkeypatch, [datetime(2018, 1, 1, tzinfo=UTC)] * 3)
    _sql(db_url, "UPDATE audit_entry SET subject='x' WHERE seq = 2")
    with pytest.raises(audit.AuditError, match="seq 2"), session_scope(db_url) as s:
        audit.prune(s, packs, as_of=date(2026, 1, 1), actor="test")
    with session_scope(db_url) as s:
        assert s.execute(text("SELECT COUNT(*) FROM audit_entry")).scalar() == 3


def test_deleting_the_oldest_records_without_an_anchor_is_caught(db_url: str) -> None:
    _append(db_url, 5)
    _sql(db_url, "DELETE FROM audit_entry WHERE seq <= 2")
    res = _verify(db_url)
    assert not res.ok and res.break_seq == 1


def _veuctl(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_veuctl_audit_verify_exits_1_and_names_the_broken_sequence(db_url: str, veuctl) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 5)
    rc, out, err = veuctl("audit", "checkpoint", "--json")
    assert rc == 0, err
    assert json.loads(out)["seq"] == 5
    rc, out, _ = veuctl("audit", "verify", "--json")
    assert rc == 0 and json.loads(out)["ok"] is True
    rc, out, _ = veuctl("audit", "log", "--json", "--limit", "2")
    assert [e["seq"] for e in json.loads(out)] == [1, 2]
    _sql(db_url, "DELETE FROM audit_entry WHERE seq = 5")
    bad = _veuctl("audit", "verify", url=db_url)  # the real binary: exit status 1
    assert bad.returncode == 1 and "BROKEN at seq 5" in bad.stdout and "truncated" in bad.stdout


def test_truncation_with_its_checkpoints_deleted_is_caught_by_a_checkpoint_kept_off_host(
        db_url: str, veuctl, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 6)
    rc, _, err = veuctl("audit", "checkpoint", "--out", str(tmp_path / "cp.json"))
    assert rc == 0, err
    _sql(db_url, "DELETE FROM audit_entry WHERE seq >= 5")
    _sql(db_url, "DELETE FROM audit_checkpoint")
    assert _verify(db_url).ok  # the database alone can no longer tell
    rc, out, _ = veuctl("audit", "verify", "--checkpoint", str(tmp_path / "cp.json"))
    assert rc == 1 and "BROKEN at seq 5" in out and "truncated" in out


def test_deleting_the_oldest_records_up_to_a_periodic_checkpoint_is_not_taken_for_a_pruning(store: str) -> None:
    # A periodic checkpoint signs (seq, hash) but vouches for no deletion: only prune's anchor does.
    _append(store, 8, every_checkpoint=5)
    _sql(store, "DELETE FROM audit_entry WHERE seq <= 5")
    res = _verify(store)
    assert not res.ok and res.break_seq == 1 and "no signed anchor" in res.reason
    res = _verify(store, from_seq=7)
    assert not res.ok and res.break_seq == 1
