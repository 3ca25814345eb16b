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
