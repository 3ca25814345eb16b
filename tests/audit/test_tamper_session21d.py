"""Adversarial QA of the audit chain (session 21d): a broken checkpoint must not hide an earlier break, and prune
must never launder tampered history into an anchor because a later checkpoint failed first."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from agent import audit
from agent.store import session_scope
from policies.packs import PackRegistry
from tests.audit.test_tamper_session15 import _export_zip

Veuctl = Callable[..., tuple[int, str, str]]


def _append(url: str, n: int, *, checkpoint_at: tuple[int, ...] = ()) -> None:
    for i in range(1, n + 1):
        with session_scope(url) as s:
            audit.record(s, actor="test:alice", action="party.update", subject=f"party:p{i}", payload={"i": i})
            if i in checkpoint_at:
                audit.checkpoint(s)


def _verify(url: str, **kw: Any) -> audit.VerifyResult:
    with session_scope(url) as s:
        return audit.verify_chain(s, **kw)


def _sql(url: str, stmt: str, **params: object) -> None:
    with session_scope(url) as s:
        s.execute(text(stmt), params)


_FORGED_SIGNATURE = "QUFB" * 21 + "QQ=="  # well-formed base64 of 64 bytes, not the key's signature


def test_a_broken_later_checkpoint_does_not_hide_an_earlier_edited_entry(store: str) -> None:
    # The checkpoint at seq 6 is checked first; the edit at seq 2 is the first break and must be the one named.
    _append(store, 6, checkpoint_at=(6,))
    _sql(store, "UPDATE audit_entry SET actor = 'test:mallory' WHERE seq = 2")
    _sql(store, "UPDATE audit_checkpoint SET signature = :s", s=_FORGED_SIGNATURE)
    res = _verify(store)
    assert not res.ok
    assert res.break_seq == 2, res.reason
    assert res.reason == "entry 2: contents do not match its hash (entry edited)"
    # The checkpoint's failure is not lost: it is said after the first break.
    assert res.warnings == ["also broken at seq 6: checkpoint at seq 6: signature does not verify "
                            "(checkpoint altered)"]


def test_an_earlier_broken_checkpoint_is_still_the_first_break(db_url: str) -> None:
    # The reverse order: the signature failure at seq 2 comes before an edit at seq 5.
    _append(db_url, 6, checkpoint_at=(2,))
    _sql(db_url, "UPDATE audit_checkpoint SET signature = :s", s=_FORGED_SIGNATURE)
    _sql(db_url, "UPDATE audit_entry SET actor = 'test:mallory' WHERE seq = 5")
    res = _verify(db_url)
    assert not res.ok and res.break_seq == 2
    assert res.reason == "checkpoint at seq 2: signature does not verify (checkpoint altered)"
    assert res.warnings == []


def _old_entries(url: str, monkeypatch: pytest.MonkeyPatch, when: list[datetime]) -> None:
    for t in when:
        monkeypatch.setattr(audit, "utcnow", lambda t=t: t)
        _append(url, 1)
    monkeypatch.undo()


def test_prune_refuses_an_edited_old_entry_even_when_a_later_checkpoint_is_broken(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    # Three entries old enough to prune, then two recent ones and a checkpoint over them whose signature was
    # replaced: prune used to see only "broken at seq 5" (past what it removes) and anchor the edited seq 2.
    _old_entries(store, monkeypatch, [datetime(2018, 1, 1, tzinfo=UTC)] * 3)
    _append(store, 2, checkpoint_at=(2,))
    _sql(store, "UPDATE audit_entry SET subject = 'party:forged' WHERE seq = 2")
    _sql(store, "UPDATE audit_checkpoint SET signature = :s", s=_FORGED_SIGNATURE)
    with pytest.raises(audit.AuditError, match=r"broken at seq 2 .*entry edited"), session_scope(store) as s:
        audit.prune(s, packs, as_of=date(2026, 1, 1), actor="test:ops")
    with session_scope(store) as s:
        assert s.execute(text("SELECT COUNT(*) FROM audit_entry")).scalar() == 5
        assert s.execute(text("SELECT COUNT(*) FROM audit_checkpoint WHERE kind = 'anchor'")).scalar() == 0


# --------------------------------------------------------------------------- export ZIPs


def _zip_with_a_second_copy(archive: Path, pick: Callable[[str], bool], data: bytes) -> str:
    """Rewrite ``archive`` with a forged member under the same name as a signed one, placed first."""
    with zipfile.ZipFile(archive) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    victim = next(n for n, _ in members if pick(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns "Duplicate name": the point of the test
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr(victim, data)
            for name, body in members:
                z.writestr(name, body)
    return victim


def test_an_export_zip_with_a_forged_second_copy_of_a_signed_file_fails(
        db_url: str, packs: PackRegistry, tmp_path: Path, veuctl: Veuctl) -> None:
    # Only the last of two same-named members was hashed, so the forged one passed as verified; which of the two a
    # reader sees (or an unzip keeps) depends on the tool.
    archive = _export_zip(db_url, packs, tmp_path)
    victim = _zip_with_a_second_copy(archive, lambda n: n.endswith(".csv"), b"forged,data\r\n")
    rc, out, _ = veuctl("audit", "verify-export", str(archive))
    assert rc == 1
    assert out.splitlines() == [f"FAILED: {victim}: in the ZIP 2 times (a member added under the name of a "
                                "signed file)"]


def test_an_export_zip_with_two_manifests_of_the_same_name_fails(
        db_url: str, packs: PackRegistry, tmp_path: Path, veuctl: Veuctl) -> None:
    archive = _export_zip(db_url, packs, tmp_path)
    victim = _zip_with_a_second_copy(archive, lambda n: n.endswith(".manifest.json"), b"{}")
    rc, out, _ = veuctl("audit", "verify-export", str(archive))
    assert rc == 1
    assert f"FAILED: {victim}: in the ZIP 2 times (a member added under the name of a signed file)" in out


# --------------------------------------------------------------------------- after a prune


def test_deleting_every_entry_after_a_prune_names_the_first_entry_after_the_anchor(
        store: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    # Entries 1..4 were pruned on purpose; the deleted ones start at 5 (the prune's own record), not at 4.
    _old_entries(store, monkeypatch, [datetime(2018, 1, 1, tzinfo=UTC)] * 4)
    _append(store, 3, checkpoint_at=(3,))
    with session_scope(store) as s:
        assert audit.prune(s, packs, as_of=date(2026, 1, 1), actor="test:ops").through_seq == 4
    _sql(store, "DELETE FROM audit_entry")
    res = _verify(store)
    assert not res.ok and res.break_seq == 5
    assert res.reason == "the log is empty but signed checkpoints reach seq 7 (entries 5..7 deleted)"


def test_deleting_every_entry_after_a_prune_with_only_its_anchor_is_reported(
        db_url: str, packs: PackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_entries(db_url, monkeypatch, [datetime(2018, 1, 1, tzinfo=UTC)] * 4)
    with session_scope(db_url) as s:
        assert audit.prune(s, packs, as_of=date(2026, 1, 1), actor="test:ops").through_seq == 4
    _sql(db_url, "DELETE FROM audit_entry")
    res = _verify(db_url)
    assert not res.ok and res.break_seq == 5
    assert res.reason == ("the log is empty after the pruning anchor at seq 4: entries from seq 5 were deleted "
                          "(a prune records itself in the log)")


def test_deleting_every_entry_without_a_prune_names_seq_1(db_url: str) -> None:
    _append(db_url, 3, checkpoint_at=(2,))
    _sql(db_url, "DELETE FROM audit_entry")
    res = _verify(db_url)
    assert not res.ok and res.break_seq == 1
    assert res.reason == "the log is empty but signed checkpoints reach seq 2 (entries 1..2 deleted)"


def test_one_uncovered_entry_is_said_in_the_singular(db_url: str) -> None:
    _append(db_url, 3, checkpoint_at=(2,))
    assert _verify(db_url).warnings == [
        "1 entry after the latest signed checkpoint (seq 2) is not yet covered by a signature: an entry there "
        "rewritten with recomputed hashes, or deleted from the tail, cannot be detected"]


def test_an_anchor_signed_by_an_untrusted_key_is_the_break_not_deleted_entries(
        db_url: str, packs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a prune, verifying with another key named 'entries 1..4 missing' and buried the checkpoint's own
    message (give the signer's --public-key) as a warning."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _old_entries(db_url, monkeypatch, [datetime(2018, 1, 1, tzinfo=UTC)] * 4)
    with session_scope(db_url) as s:
        assert audit.prune(s, packs, as_of=date(2026, 1, 1), actor="test:ops").through_seq == 4
    res = _verify(db_url, keys=[Ed25519PrivateKey.generate().public_key()])
    assert not res.ok and res.break_seq == 4 and "untrusted key" in res.reason, (res.reason, res.warnings)
    _sql(db_url, "UPDATE audit_checkpoint SET signature = :s", s=_FORGED_SIGNATURE)
    res = _verify(db_url)
    assert not res.ok and res.break_seq == 4 and "does not verify" in res.reason, (res.reason, res.warnings)
