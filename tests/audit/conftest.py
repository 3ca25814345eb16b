"""Audit fixtures: a per-test Ed25519 key, and a store on SQLite or the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def signing_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "signing.key"
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(path))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    """The same test on the embedded SQLite store and on PostgreSQL."""
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture()
def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `veuctl ARGS` in-process (same entry point and error mapping as the binary): (rc, stdout, stderr)."""
    from agent.cli import app
    from agent.cli._common import run_app

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.argv", ["veuctl", *args])
        rc = run_app(app)
        out, err = capsys.readouterr()
        return rc, out, err

    return run
