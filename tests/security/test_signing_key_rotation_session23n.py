"""A signing key rotated under a running service (`veuctl audit keygen --rotate` on the host, or a Secret updated
under the pod) is what the service signs with from then on: the key was read once per process and kept, so after a
rotation made because the key leaked, the running service went on signing checkpoints and export manifests with the
leaked key until restarted. A key file that does not load yet (half-written) keeps the previous key signing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.audit import checkpoint, record, verify_chain
from agent.signing import key_id, load, load_public_pem, signing_key
from agent.store import session_scope

pytestmark = pytest.mark.auth


@pytest.fixture()
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "signing.key"
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(path))
    return path


def _checkpoint_key(url: str, action: str) -> str:
    with session_scope(url) as s:
        record(s, actor="test", action=action, subject="x", payload={})
        cp = checkpoint(s)
        assert cp is not None
        return cp.key_id


def test_a_key_rotated_by_another_process_signs_the_next_checkpoint(db_url: str, key_file: Path) -> None:
    first = _checkpoint_key(db_url, "before")
    assert first == signing_key().key_id
    r = subprocess.run([sys.executable, "-m", "agent", "audit", "keygen", "--rotate", "--json"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    new = load(key_file).key_id
    assert new != first
    assert _checkpoint_key(db_url, "after") == new  # not the retired key
    with session_scope(db_url) as s:
        result = verify_chain(s)  # the current key and the retired one beside it
    assert result.ok and result.checkpoints_verified == 2, result


def test_a_key_replaced_in_place_like_a_kubernetes_secret_is_used(db_url: str, key_file: Path) -> None:
    _checkpoint_key(db_url, "before")
    # The kubelet swaps a mounted Secret's files by renaming a new directory over the old.
    replacement = key_file.with_name("new.key")
    from agent.signing import generate

    fresh = generate(replacement)
    os.replace(replacement, key_file)
    assert _checkpoint_key(db_url, "after") == fresh.key_id


def test_a_half_written_key_keeps_the_previous_key_signing_and_is_logged(
        db_url: str, key_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _checkpoint_key(db_url, "before")
    pem = key_file.read_bytes()
    tmp = key_file.with_name("partial")
    tmp.write_bytes(pem[: len(pem) // 2])
    os.replace(tmp, key_file)
    with caplog.at_level(logging.WARNING):
        assert _checkpoint_key(db_url, "during") == first  # the write is not failed for a key being rotated
    assert str(key_file) in caplog.text
    tmp.write_bytes(pem)
    os.replace(tmp, key_file)
    assert _checkpoint_key(db_url, "after") == first
    assert key_id(load_public_pem(signing_key().public_pem())) == first
