"""`veuctl audit` given bad input: one line naming the option or argument, exit 2, nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from agent import audit
from agent.store import session_scope


def _append(url: str, n: int) -> None:
    with session_scope(url) as s:
        for i in range(n):
            audit.record(s, actor="test:alice", action="party.update", subject=f"party:p{i}", payload={"i": i})


def _count(url: str, table: str) -> int:
    with session_scope(url) as s:
        return int(s.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def _one_line_error(rc: int, err: str, name: str) -> None:
    assert rc == 2, err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert name in err and "Traceback" not in err


# --------------------------------------------------------------------------- audit checkpoint --out


def test_a_checkpoint_whose_output_file_cannot_be_written_is_not_recorded(
        db_url: str, veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 3)
    out = tmp_path / "no-such-dir" / "cp.json"
    rc, stdout, err = veuctl("audit", "checkpoint", "--out", str(out))
    _one_line_error(rc, err, "--out")
    assert stdout == "" and not out.exists()
    # The user was told it failed, so no checkpoint may have been stored either.
    assert _count(db_url, "audit_checkpoint") == 0


def test_a_checkpoint_out_that_is_a_directory_is_refused_before_anything_is_signed(
        db_url: str, veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 3)
    rc, _, err = veuctl("audit", "checkpoint", "--out", str(tmp_path))
    _one_line_error(rc, err, "--out")
    assert _count(db_url, "audit_checkpoint") == 0


def test_a_checkpoint_written_to_out_is_recorded_and_verifies_as_an_external_checkpoint(
        db_url: str, veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 3)
    out = tmp_path / "cp.json"
    rc, _, err = veuctl("audit", "checkpoint", "--out", str(out), "--json")
    assert rc == 0, err
    assert json.loads(out.read_text())["seq"] == 3 and _count(db_url, "audit_checkpoint") == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no staging file left
    rc, _, err = veuctl("audit", "verify", "--checkpoint", str(out))
    assert rc == 0, err


# --------------------------------------------------------------------------- audit verify --checkpoint


@pytest.mark.parametrize(("content", "says"), [
    *[(c, "checkpoint JSON object") for c in ("[]", '["seq", 1]', '"a string"', "42", "null")],
    # JSON that is not a checkpoint: not JSON at all, fields missing, a field of the wrong type.
    *[(c, "") for c in ("{not json", '{"seq": 1}',
                        '{"seq": "x", "hash": "h", "ts": "t", "key_id": "k", "signature": "s"}')],
])
def test_a_checkpoint_file_that_is_not_a_checkpoint_is_refused_naming_checkpoint(
        db_url: str, veuctl, tmp_path: Path, content: str, says: str) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 2)
    f = tmp_path / "c.json"
    f.write_text(content)
    rc, _, err = veuctl("audit", "verify", "--checkpoint", str(f))
    _one_line_error(rc, err, "--checkpoint")
    assert says in err and (not says or str(f) in err)


def test_a_missing_checkpoint_file_is_refused_naming_checkpoint(
        db_url: str, veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 2)
    rc, _, err = veuctl("audit", "verify", "--checkpoint", str(tmp_path / "absent.json"))
    _one_line_error(rc, err, "--checkpoint")


# --------------------------------------------------------------------------- audit verify --from


def test_verify_from_past_the_chain_head_is_refused_naming_where_the_chain_ends(
        db_url: str, veuctl) -> None:  # type: ignore[no-untyped-def]
    _append(db_url, 5)
    for past in ("6", "99999"):
        rc, out, err = veuctl("audit", "verify", "--from", past)
        _one_line_error(rc, err, "--from")
        assert "ends at seq 5" in err and "OK" not in out
    rc, _, err = veuctl("audit", "verify", "--from", "5")
    assert rc == 0, err


def test_verify_from_on_an_empty_log_past_seq_1_says_the_chain_is_empty(
        db_url: str, veuctl) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url):
        pass  # creates the schema
    rc, _, err = veuctl("audit", "verify", "--from", "3")
    _one_line_error(rc, err, "--from")
    assert "empty" in err


def test_verify_from_below_a_signed_checkpoint_of_a_truncated_log_still_reports_the_truncation(
        db_url: str, veuctl) -> None:  # type: ignore[no-untyped-def]
    # The signed checkpoint says the chain reaches seq 5: --from 5 is inside it, and the deleted tail is
    # tampering (exit 1), not bad input.
    _append(db_url, 5)
    with session_scope(db_url) as s:
        audit.checkpoint(s)
        s.execute(text("DELETE FROM audit_entry WHERE seq >= 4"))
    rc, out, err = veuctl("audit", "verify", "--from", "5")
    assert rc == 1, err
    assert "BROKEN" in out and "truncated" in out


# --------------------------------------------------------------------------- audit verify-export


@pytest.mark.parametrize("content", ["[]", '"manifest"', "3", "null"])
def test_a_manifest_that_is_not_a_json_object_is_refused_with_exit_2(
        veuctl, tmp_path: Path, content: str) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "l.json"
    f.write_text(content)
    rc, out, err = veuctl("audit", "verify-export", str(f))
    _one_line_error(rc, err, "MANIFEST")
    assert "must be a JSON object" in err and out == ""


def test_a_missing_or_malformed_manifest_is_refused_with_exit_2_not_reported_as_failed(
        veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.manifest.json"
    bad.write_text("{not json")
    for path in (bad, tmp_path / "absent.manifest.json"):
        rc, out, err = veuctl("audit", "verify-export", str(path))
        _one_line_error(rc, err, "MANIFEST")
        assert "FAILED" not in out


FORMAT = "veu-governor export manifest v1"
SIG = {"alg": "Ed25519", "key_id": "ab" * 32, "public_key": "", "value": "AAAA"}
GOOD_FILE = {"name": "gone.csv", "sha256": "0" * 64}


# (manifest, the field the one-line error names): a JSON object that is not an export manifest is bad input
# (exit 2), never "FAILED: signed by an untrusted key" (exit 1, kept for a manifest that does not verify).
@pytest.mark.parametrize(("content", "field"), [
    ({}, "format: missing"),
    ({"format": "something else", "files": [], "signature": SIG}, "format: 'something else' is not"),
    ({"format": FORMAT, "signature": SIG}, "files: missing"),
    ({"format": FORMAT, "signature": "x", "files": 3}, "files: a number, not a list"),
    ({"format": FORMAT, "files": [1, GOOD_FILE], "signature": SIG}, "files[0]: a number"),
    ({"format": FORMAT, "files": [{"name": ["x"], "sha256": "0"}], "signature": SIG}, "files[0].name: a list"),
    ({"format": FORMAT, "files": [{"name": "gone.csv"}], "signature": SIG}, "files[0].sha256: missing"),
    ({"format": FORMAT, "files": [GOOD_FILE]}, "signature: missing"),
    ({"format": FORMAT, "files": [GOOD_FILE], "signature": "x"}, "signature: a string, not an object"),
    ({"format": FORMAT, "files": [GOOD_FILE], "signature": {**SIG, "key_id": 5}}, "signature.key_id: a number"),
    ({"format": FORMAT, "files": [GOOD_FILE], "signature": {"alg": "Ed25519", "key_id": "ab"}},
     "signature.value: missing"),
    ({"format": FORMAT, "files": [GOOD_FILE], "signature": {**SIG, "alg": "RSA"}}, "signature.alg: 'RSA'"),
])
def test_a_json_object_without_a_manifests_fields_is_malformed_and_exits_2(
        veuctl, tmp_path: Path, content: dict, field: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    f = tmp_path / "m.json"
    f.write_text(json.dumps(content))
    rc, out, err = veuctl("audit", "verify-export", str(f))
    _one_line_error(rc, err, "MANIFEST")
    assert f"{f}: malformed manifest: {field}" in err and out == "", err
    assert "untrusted key" not in err + out


def test_a_well_formed_manifest_that_does_not_verify_still_exits_1(
        veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "x.manifest.json"
    f.write_text(json.dumps({"format": FORMAT, "files": [GOOD_FILE], "signature": SIG}))
    rc, out, err = veuctl("audit", "verify-export", str(f))
    assert rc == 1 and err == "", err
    assert "FAILED: x.manifest.json: signed by an untrusted key" in out and "FAILED: gone.csv: missing" in out


@pytest.mark.parametrize("name", ["../secret.txt", "/etc/hostname", "a/../../b", ""])
def test_a_manifest_naming_a_file_outside_its_export_does_not_verify_and_reads_nothing_there(
        veuctl, tmp_path: Path, name: str) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export"
    export.mkdir()
    (tmp_path / "secret.txt").write_text("not part of the export")
    f = export / "x.manifest.json"
    f.write_text(json.dumps({"format": FORMAT, "files": [{"name": name, "sha256": "0" * 64}], "signature": SIG}))
    rc, out, _err = veuctl("audit", "verify-export", str(f))
    assert rc == 1 and "not a file of this export" in out


def test_verifying_on_a_host_without_a_signing_key_creates_none_and_trusts_nothing(
        db_url: str, veuctl, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_url) as s:
        audit.record(s, actor="t", action="party.create", subject="party:x", payload={})
        audit.checkpoint(s)
    rc, _, err = veuctl("export", "audit-log", "--from", "2020-01-01", "--to", "2030-01-01", "--format", "csv",
                        "--out", str(tmp_path / "out"))
    assert rc == 0, err
    manifest = next((tmp_path / "out").glob("*.manifest.json"))
    auditor_key = tmp_path / "auditor" / "signing.key"
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(auditor_key))
    rc, out, _ = veuctl("audit", "verify-export", str(manifest))
    assert rc == 1 and "untrusted key" in out and "--public-key" in out
    rc, out, _ = veuctl("audit", "verify")
    assert rc == 1 and "untrusted key" in out
    assert not auditor_key.exists()  # a verifier never mints a private key


# --------------------------------------------------------------------------- audit keygen


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_one(
        veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from agent.signing import load

    out = tmp_path / "signing.key"
    rc, stdout, err = veuctl("audit", "keygen", "--out", str(out), "--json")
    assert rc == 0, err
    made = json.loads(stdout)
    assert made["key_id"] == load(out).key_id and "BEGIN PUBLIC KEY" in made["public_key"]
    assert out.stat().st_mode & 0o777 == 0o600
    before = out.read_bytes()
    rc, _, err = veuctl("audit", "keygen", "--out", str(out))
    _one_line_error(rc, err, "already exists")
    assert out.read_bytes() == before


def test_an_empty_format_is_refused_not_read_as_all_three(db_url: str, veuctl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for empty in (",", ""):
        rc, _, err = veuctl("export", "decisions", "--from", "2026-01-01", "--to", "2026-01-31", "--format", empty,
                            "--out", str(tmp_path / "out"))
        assert rc == 2 and "--format: empty" in err, err
    assert not (tmp_path / "out").exists()
