"""Adversarial QA of the audit trail and its signing: what verify says about forgeries, key rotation, key files
and export ZIPs (each test failed before the fix it covers)."""

from __future__ import annotations

import errno
import json
import os
import stat
import zipfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from agent import audit, exports, signing
from agent.store import session_scope
from policies.packs import PackRegistry
from tests.audit.seed import seed

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


def _rewrite_with_recomputed_hashes(url: str, seq: int, payload: str) -> None:
    """What an attacker with write access does: edit one entry and recompute every hash after it."""
    with session_scope(url) as s:
        rows = s.execute(text("SELECT seq, actor, action, subject, payload FROM audit_entry ORDER BY seq")).all()
        prev = audit.GENESIS
        for n, actor, action, subject, body in rows:
            entry = s.get(audit.AuditEntry, n)
            assert entry is not None
            body = payload if n == seq else body
            h = audit.entry_hash(n, audit.ts_text(entry.ts), actor, action, subject, body, prev)
            s.execute(text("UPDATE audit_entry SET payload = :p, prev_hash = :v, hash = :h WHERE seq = :s"),
                      {"p": body, "v": prev, "h": h, "s": n})
            prev = h


# --------------------------------------------------------------------------- what verify says


def test_a_rehashed_forgery_without_a_checkpoint_verifies_but_the_warning_says_it_cannot_be_detected(
        db_url: str) -> None:
    # Without a signature nothing can catch it; the operator must be told that, not only about truncation.
    _append(db_url, 5)
    _rewrite_with_recomputed_hashes(db_url, 2, '{"i":999}')
    res = _verify(db_url)
    assert res.ok
    assert len(res.warnings) == 1
    assert "rewritten with recomputed hashes" in res.warnings[0] and "veuctl audit checkpoint" in res.warnings[0]


def test_the_uncovered_tail_warning_says_a_rehashed_forgery_there_cannot_be_detected(db_url: str) -> None:
    _append(db_url, 6, checkpoint_at=(4,))
    _rewrite_with_recomputed_hashes(db_url, 6, '{"i":999}')
    res = _verify(db_url)
    assert res.ok and res.unanchored_tail == 2
    assert res.warnings == ["2 entries after the latest signed checkpoint (seq 4) are not yet covered by a "
                            "signature: an entry there rewritten with recomputed hashes, or deleted from the "
                            "tail, cannot be detected"]


def test_a_rehashed_forgery_before_a_signed_checkpoint_is_reported_as_rewritten(db_url: str) -> None:
    _append(db_url, 6, checkpoint_at=(6,))
    _rewrite_with_recomputed_hashes(db_url, 2, '{"i":999}')
    res = _verify(db_url)
    assert not res.ok and res.break_seq == 1 and "rewritten" in res.reason and "signed checkpoint" in res.reason


@pytest.mark.parametrize("seq", [0, -5])
def test_a_row_numbered_below_one_is_reported_as_inserted_at_its_own_number(db_url: str, seq: int) -> None:
    # Used to read "entries 1..-1 are missing", naming neither the forged row nor what happened.
    _append(db_url, 3)
    _sql(db_url, "INSERT INTO audit_entry (seq, ts, actor, action, subject, payload, prev_hash, hash) "
                 "SELECT :n, ts, actor, action, subject, payload, prev_hash, hash FROM audit_entry WHERE seq = 1",
         n=seq)
    res = _verify(db_url)
    assert not res.ok and res.break_seq == seq
    assert res.reason == f"entry {seq}: sequence numbers start at 1 (a row inserted before the start of the log)"


def test_a_checkpoint_with_a_replaced_signature_is_broken_without_advice_to_sign_a_new_one(
        db_url: str, veuctl: Veuctl) -> None:
    _append(db_url, 4, checkpoint_at=(4,))
    _sql(db_url, "UPDATE audit_checkpoint SET signature = :s",
         s="QUFB" * 21 + "QQ==")  # well-formed base64 of 64 bytes, not the key's signature
    rc, out, _ = veuctl("audit", "verify")
    assert rc == 1
    # One line, the break: no "no signed checkpoint ... run `veuctl audit checkpoint`" after it.
    assert out.splitlines() == ["BROKEN at seq 4: checkpoint at seq 4: signature does not verify "
                                "(checkpoint altered)"]


def test_verify_json_has_the_documented_shape_and_exit_1_when_broken(db_url: str, veuctl: Veuctl) -> None:
    _append(db_url, 3, checkpoint_at=(3,))
    _sql(db_url, "UPDATE audit_entry SET actor = 'test:mallory' WHERE seq = 2")
    rc, out, _ = veuctl("audit", "verify", "--json")
    data = json.loads(out)
    assert rc == 1
    assert set(data) == {"ok", "checked", "first_seq", "last_seq", "start_from", "break_seq", "reason",
                         "checkpoints_verified", "latest_checkpoint_seq", "unanchored_tail", "warnings"}
    assert data["ok"] is False and data["break_seq"] == 2 and "edited" in data["reason"]


# --------------------------------------------------------------------------- key rotation


def test_checkpoints_signed_before_a_key_rotation_still_verify(
        db_url: str, veuctl: Veuctl, signing_key_file: Path) -> None:
    _append(db_url, 3, checkpoint_at=(3,))
    old_id = signing.load(signing_key_file).key_id
    rc, out, err = veuctl("audit", "keygen", "--rotate", "--json")
    assert rc == 0, err
    data = json.loads(out)
    assert data["retired_key_id"] == old_id and data["key_id"] != old_id
    assert "PRIVATE" not in out  # only the public halves are ever printed
    retired = signing.retired_path(signing_key_file)
    assert [signing.key_id(k) for k in signing.load_retired(retired)] == [old_id]
    assert stat.S_IMODE(signing_key_file.stat().st_mode) == 0o600
    # New checkpoints are signed with the new key; both the old and the new ones verify by default.
    _append(db_url, 2, checkpoint_at=(2,))
    with session_scope(db_url) as s:
        ids = s.execute(text("SELECT key_id FROM audit_checkpoint ORDER BY seq")).scalars().all()
    assert ids == [old_id, data["key_id"]]
    res = _verify(db_url)
    assert res.ok and res.checkpoints_verified == 2, res.reason


def test_rotating_twice_keeps_every_earlier_public_key(db_url: str, veuctl: Veuctl,
                                                       signing_key_file: Path) -> None:
    _append(db_url, 1, checkpoint_at=(1,))
    first = signing.load(signing_key_file).key_id
    assert veuctl("audit", "keygen", "--rotate")[0] == 0
    _append(db_url, 1, checkpoint_at=(1,))
    second = signing.load(signing_key_file).key_id
    assert veuctl("audit", "keygen", "--rotate")[0] == 0
    retired = signing.load_retired(signing.retired_path(signing_key_file))
    assert [signing.key_id(k) for k in retired] == [first, second]
    assert _verify(db_url).ok


def test_keygen_still_refuses_to_overwrite_a_key_and_names_rotate(veuctl: Veuctl, signing_key_file: Path) -> None:
    assert veuctl("audit", "keygen")[0] == 0
    before = signing_key_file.read_bytes()
    rc, _, err = veuctl("audit", "keygen")
    assert rc == 2 and "already exists" in err and "--rotate" in err
    assert signing_key_file.read_bytes() == before


def test_rotate_without_a_key_is_a_usage_error(veuctl: Veuctl, signing_key_file: Path) -> None:
    rc, _, err = veuctl("audit", "keygen", "--rotate")
    assert rc == 2 and "no key to rotate" in err and not signing_key_file.exists()


def test_an_untrusted_checkpoint_says_how_to_trust_the_signer(db_url: str, signing_key_file: Path) -> None:
    # A key replaced by hand (not rotated): the message must point at --public-key / rotation.
    _append(db_url, 2, checkpoint_at=(2,))
    signing_key_file.unlink()
    signing._cache.clear()
    signing.generate(signing_key_file)
    res = _verify(db_url)
    assert not res.ok and "untrusted key" in res.reason and "--public-key" in res.reason


def test_a_damaged_retired_keys_file_is_an_error_not_silently_less_trust(
        db_url: str, signing_key_file: Path) -> None:
    _append(db_url, 1, checkpoint_at=(1,))
    signing.retired_path(signing_key_file).write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n"
                                                      "-----END PUBLIC KEY-----\n")
    with pytest.raises(signing.SigningKeyError, match="retired signing keys"):
        _verify(db_url)


# --------------------------------------------------------------------------- key files


def test_a_directory_made_for_the_key_is_private(tmp_path: Path) -> None:
    path = tmp_path / "xdg" / "veu-governor" / "signing.key"
    old = os.umask(0o022)
    try:
        signing.generate(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_key_that_cannot_be_written_whole_leaves_no_file_behind(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A half-written (empty) key file would afterwards be reported as a corrupt key on every start.
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd: int) -> None:
            self.fh = real_fdopen(fd, "wb")

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(fd))
    path = tmp_path / "signing.key"
    with pytest.raises(OSError):
        signing.generate(path)
    assert not path.exists()


# --------------------------------------------------------------------------- export ZIPs


def _export_zip(url: str, packs: PackRegistry, tmp_path: Path) -> Path:
    """An export zipped the way ``GET /api/v1/exports/KIND`` zips it."""
    with session_scope(url) as s:
        seed(s, packs)
    out = tmp_path / "files"
    with session_scope(url) as s:
        m = exports.run_export(s, packs, "shipments", date(2026, 1, 1), date(2026, 6, 30), ["csv", "json"],
                               out, actor="test:auditor")
    archive = tmp_path / (Path(m["manifest"]).name.removesuffix(".manifest.json") + ".zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(out.iterdir()):
            z.write(f, arcname=f.name)
    return archive


def _rezip(archive: Path, change: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(archive) as z:
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(archive, "w") as z:
        for name, data in members:
            new = change(name, data)
            if new is not None:
                z.writestr(name, new)
        for name, data in (extra or {}).items():
            z.writestr(name, data)


def test_verify_export_checks_the_zip_the_api_serves(db_url: str, packs: PackRegistry, tmp_path: Path,
                                                     veuctl: Veuctl) -> None:
    archive = _export_zip(db_url, packs, tmp_path)
    rc, out, err = veuctl("audit", "verify-export", str(archive), "--json")
    assert rc == 0, err + out
    assert json.loads(out)["ok"] is True


def test_a_file_changed_inside_the_export_zip_fails_verify_export(db_url: str, packs: PackRegistry,
                                                                  tmp_path: Path, veuctl: Veuctl) -> None:
    archive = _export_zip(db_url, packs, tmp_path)
    victim = next(n for n in zipfile.ZipFile(archive).namelist() if n.endswith(".csv"))
    _rezip(archive, lambda n, d: d.replace(b"AE", b"DE") + b"\r\n" if n == victim else d,
           extra={"notes.txt": b"added"})
    rc, out, _ = veuctl("audit", "verify-export", str(archive))
    assert rc == 1
    assert out.splitlines() == [f"FAILED: {victim}: SHA-256 differs from the manifest (file changed)",
                                "FAILED: notes.txt: not listed in the signed manifest (file added to the export)"]


def test_an_export_zip_resigned_with_another_key_is_untrusted(db_url: str, packs: PackRegistry, tmp_path: Path,
                                                              veuctl: Veuctl, monkeypatch: pytest.MonkeyPatch,
                                                              signing_key_file: Path) -> None:
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "mallory.key"))
    archive = _export_zip(db_url, packs, tmp_path)
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(signing_key_file))
    signing.generate(signing_key_file)
    rc, out, _ = veuctl("audit", "verify-export", str(archive))
    assert rc == 1 and "untrusted key" in out and "embedded key not trusted" in out


def test_an_export_zip_without_one_manifest_is_bad_input(db_url: str, packs: PackRegistry, tmp_path: Path,
                                                         veuctl: Veuctl) -> None:
    archive = _export_zip(db_url, packs, tmp_path)
    _rezip(archive, lambda n, d: None if n.endswith(".manifest.json") else d)
    rc, _, err = veuctl("audit", "verify-export", str(archive))
    assert rc == 2 and "exactly one" in err
