"""A key file rewritten in place to the same size within one tick of the file system's clock is noticed: the stamp
the service compared (inode, device, size, mtime) was the same before and after, so a rotated signing key (an
Ed25519 PEM is always 119 bytes) went unnoticed and the old key kept signing checkpoints and export manifests. The
same happens when a tool keeps the old modification time (``cp -p``, ``rsync -t``, ``tar x``). ``file_stamp``, the
one check shared by the signing key, the TLS reloader and the OIDC key set, now covers the content too."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent import files
from agent.files import file_stamp
from agent.signing import generate, load, signing_key

pytestmark = pytest.mark.auth


@pytest.fixture()
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "signing.key"
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(path))
    return path


def _rewrite_in_place_keeping_mtime(path: Path, data: bytes) -> None:
    before = os.stat(path)
    with open(path, "r+b") as fh:  # same inode, as an in-place editor or `cp` over the file writes it
        fh.write(data)
        fh.truncate()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_signing_key_rewritten_in_place_to_the_same_size_and_time_signs_from_then_on(key_file: Path) -> None:
    first = signing_key()
    fresh = generate(key_file.with_name("fresh.key"))
    pem = fresh.path.read_bytes()
    assert len(pem) == key_file.stat().st_size  # Ed25519 PKCS#8 PEM: always the same size
    _rewrite_in_place_keeping_mtime(key_file, pem)
    now = signing_key()
    assert now.key_id == fresh.key_id != first.key_id
    assert now.key_id == load(key_file).key_id


def test_the_stamp_differs_for_a_new_content_on_a_file_system_whose_clock_did_not_move(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "tls.key"
    f.write_bytes(b"A" * 64)
    frozen = os.stat(f)
    real_stat = os.stat

    def coarse_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        # Every time the file system reports is the one it had before the rewrite (a clock that ticks coarsely).
        st = real_stat(path, *args, **kwargs)
        fields = {name: getattr(st, name) for name in dir(st) if name.startswith("st_")}
        fields.update(st_mtime_ns=frozen.st_mtime_ns, st_ctime_ns=frozen.st_ctime_ns,
                      st_mtime=frozen.st_mtime, st_ctime=frozen.st_ctime)
        return SimpleNamespace(**fields)

    monkeypatch.setattr(files.os, "stat", coarse_stat)
    before = file_stamp(f)
    with open(f, "r+b") as fh:
        fh.write(b"B" * 64)
    assert file_stamp(f) != before
    with open(f, "r+b") as fh:
        fh.write(b"A" * 64)
    assert file_stamp(f) == before  # the same content is the same stamp: nothing is reloaded for nothing


def test_an_unchanged_file_keeps_its_stamp_and_a_missing_one_has_none(tmp_path: Path) -> None:
    f = tmp_path / "ca.crt"
    f.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    assert file_stamp(f) == file_stamp(f) is not None
    assert file_stamp(tmp_path / "absent") is None
    assert file_stamp(tmp_path) is None or file_stamp(tmp_path) == file_stamp(tmp_path)  # a directory: no error


def test_a_settled_file_rewritten_later_with_its_old_mtime_put_back_gets_a_new_stamp(tmp_path: Path) -> None:
    f = tmp_path / "signing.key"
    f.write_bytes(b"A" * 119)
    old = os.stat(f).st_mtime - 3600  # settled an hour ago: its digest is remembered
    os.utime(f, (old, old))
    before = file_stamp(f)
    assert file_stamp(f) == before
    _rewrite_in_place_keeping_mtime(f, b"B" * 119)  # as `rsync -t` or `cp -p` over it
    assert file_stamp(f) != before


def test_a_settled_unchanged_file_is_only_statted_not_read_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The OIDC key set is stamped on every API request: a file that has not changed costs a stat, not a read.
    f = tmp_path / "jwks.json"
    f.write_text('{"keys": []}')
    old = os.stat(f).st_mtime - 3600
    os.utime(f, (old, old))
    first = file_stamp(f)  # hashed once the file has settled
    reads: list[str] = []
    monkeypatch.setattr(files, "_digest", lambda p: reads.append(str(p)) or "")
    assert [file_stamp(f) for _ in range(20)] == [first] * 20
    assert reads == []


def test_a_file_changed_just_now_is_hashed_on_every_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Within the file system's clock tick its stat may not show the next rewrite: the content is what is compared.
    f = tmp_path / "tls.crt"
    f.write_bytes(b"C" * 32)
    file_stamp(f)
    reads: list[str] = []
    real = files._digest
    monkeypatch.setattr(files, "_digest", lambda p: reads.append(str(p)) or real(p))
    file_stamp(f)
    file_stamp(f)
    assert len(reads) == 2
