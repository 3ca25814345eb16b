"""Shared fixtures: a fresh SQLite store per test, a fresh PostgreSQL database, the policy packs."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.packs import load_registry
from policies.packs import PackRegistry
from tests.silentserver import SilentServer

PG_ADMIN_URL = os.environ.get("VEU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _auth_off_unless_asked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Most tests exercise behaviour, not access control: the API runs with VEU_AUTH=none for them.

    Tests marked ``@pytest.mark.auth`` (tests/security) run with authentication on, as production does.
    """
    if request.node.get_closest_marker("auth") is None:
        monkeypatch.setenv("VEU_AUTH", "none")
    else:
        monkeypatch.setenv("VEU_AUTH", "token")


@pytest.fixture(autouse=True, scope="session")
def _own_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The test run's default data folder (the signing key, the embedded database) is its own: a command run without
    --db or a key file otherwise wrote ~/.local/share/veu-governor on the developer's machine."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
        yield


@pytest.fixture(scope="session")
def packs() -> PackRegistry:
    return load_registry()


@pytest.fixture()
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh embedded SQLite store; also exported as VEU_DATABASE_URL for CLI calls in-process."""
    url = f"sqlite:///{tmp_path / 'veu.db'}"
    monkeypatch.setenv("VEU_DATABASE_URL", url)
    yield url
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


@pytest.fixture()
def pg_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh database on the real PostgreSQL server at 127.0.0.1:5432, dropped afterwards."""
    name = f"veu_t_{uuid.uuid4().hex[:12]}"
    try:
        conn = _pg_admin()
    except Exception as exc:  # pragma: no cover - CI starts PostgreSQL; locally it must be running
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    monkeypatch.setenv("VEU_DATABASE_URL", url)
    yield url
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(url, None)
    if eng is not None:
        eng.dispose()
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def silent() -> Iterator[SilentServer]:
    """A server that accepts every connection and never answers (tests/silentserver.py)."""
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every collector and controller API call waits at most 1 s (VEU_COLLECTOR_TIMEOUT_SECONDS)."""
    monkeypatch.setenv("VEU_COLLECTOR_TIMEOUT_SECONDS", "1")
