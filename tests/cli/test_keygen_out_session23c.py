"""`veuctl audit keygen --out PATH` in a directory that does not exist is refused, as `--db` is for an SQLite file:
the directory was made (a typo in the path, `--out /etc/veu/sigining/key.pem`, became a new directory holding the
private key where no one would look for it). The default key's directory (the data dir, or VEU_SIGNING_KEY_FILE's)
is still made."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli_error_naming import refused, veuctl


def test_keygen_out_in_a_missing_directory_is_refused_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "no-such-dir" / "signing-key.pem"
    refused(monkeypatch, capsys, ["audit", "keygen", "--out", str(out)],
            f"--out: the directory {out.parent} does not exist; create it first, or give a path in an existing one")
    assert not out.parent.exists()


def test_keygen_to_the_configured_key_file_still_makes_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    configured = tmp_path / "keys" / "signing.key"
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(configured))
    rc, _, err = veuctl(monkeypatch, capsys, "audit", "keygen")
    assert rc == 0 and configured.is_file(), err
