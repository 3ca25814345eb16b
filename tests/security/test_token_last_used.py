"""`api_token.last_used_at`: recorded when a token authenticates a request, at most once per token per interval,
never failing the request, and shown where tokens are listed (API, `veuctl tokens list`)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlmodel import select

from agent.api.app import create_app
from agent.auth import LAST_USED_INTERVAL_SECONDS, create_token
from agent.store import get_engine, session_scope
from agent.store.tables.auth import ApiToken

pytestmark = pytest.mark.auth

HTTPS = "https://testserver"


def _token(url: str, role: str = "viewer") -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role=role, name=f"test-{role}")
    return secret


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _last_used(url: str, secret: str) -> datetime | None:
    with session_scope(url) as s:
        return s.exec(select(ApiToken).where(ApiToken.prefix == secret.split("_")[1])).one().last_used_at


def _backdate(url: str, secret: str, seconds: float) -> datetime:
    """Move the recorded last use ``seconds`` into the past (as if that much time had gone by)."""
    with session_scope(url) as s:
        row = s.exec(select(ApiToken).where(ApiToken.prefix == secret.split("_")[1])).one()
        assert row.last_used_at is not None
        row.last_used_at = row.last_used_at - timedelta(seconds=seconds)
        s.add(row)
        return row.last_used_at


class Updates:
    """Counts the UPDATE statements on api_token that reach the store."""

    def __init__(self, url: str) -> None:
        self.engine, self.count = get_engine(url), 0

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_TOKEN"):
            self.count += 1

    def __enter__(self) -> Updates:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")


def test_a_bearer_token_records_its_last_use_once_per_interval(store: str) -> None:
    secret = _token(store)
    c = TestClient(create_app(store), base_url=HTTPS)
    assert _last_used(store, secret) is None
    with Updates(store) as updates:
        assert c.get("/api/v1/whoami", headers=_bearer(secret)).status_code == 200
        first = _last_used(store, secret)
        assert first is not None and updates.count == 1
        # Within the interval: no write at all, and the recorded instant stays.
        for _ in range(3):
            assert c.get("/api/v1/whoami", headers=_bearer(secret)).status_code == 200
        assert updates.count == 1 and _last_used(store, secret) == first
        # Once the interval has gone by, the next request advances it.
        before = _backdate(store, secret, LAST_USED_INTERVAL_SECONDS + 1)
        updates.count = 0
        assert c.get("/api/v1/whoami", headers=_bearer(secret)).status_code == 200
        after = _last_used(store, secret)
        assert updates.count == 1 and after is not None and after > before


def test_a_dashboard_session_and_signing_in_record_the_tokens_last_use(db_url: str) -> None:
    secret = _token(db_url)
    c = TestClient(create_app(db_url), base_url=HTTPS, follow_redirects=False)
    assert c.post("/login", data={"token": secret, "next": "/"}).status_code == 303
    signed_in = _last_used(db_url, secret)
    assert signed_in is not None
    before = _backdate(db_url, secret, LAST_USED_INTERVAL_SECONDS + 1)
    assert c.get("/").status_code == 200
    after = _last_used(db_url, secret)
    assert after is not None and after > before


def test_a_refused_request_still_counts_as_a_use_of_the_token(db_url: str) -> None:
    secret = _token(db_url, "viewer")
    c = TestClient(create_app(db_url), base_url=HTTPS)
    assert c.post("/api/v1/tokens", json={"role": "admin"}, headers=_bearer(secret)).status_code == 403
    assert _last_used(db_url, secret) is not None


def test_a_store_failure_recording_the_use_is_logged_and_the_request_still_served(
    db_url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    secret = _token(db_url)
    engine = get_engine(db_url)

    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_TOKEN"):
            raise engine.dialect.dbapi.OperationalError("disk I/O error (simulated)")  # type: ignore[union-attr]

    # The driver's own error for the UPDATE, as a full disk or a lost connection raises it.
    event.listen(engine, "before_cursor_execute", refuse)
    try:
        with caplog.at_level(logging.WARNING, logger="agent.auth"):
            r = TestClient(create_app(db_url), base_url=HTTPS).get("/api/v1/whoami", headers=_bearer(secret))
    finally:
        event.remove(engine, "before_cursor_execute", refuse)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert _last_used(db_url, secret) is None
    assert any("last_used_at not recorded" in m for m in caplog.messages)
    assert secret not in caplog.text


def test_the_token_listings_show_last_use(db_url: str) -> None:
    admin, unused = _token(db_url, "admin"), _token(db_url, "viewer")
    c = TestClient(create_app(db_url), base_url=HTTPS)
    assert c.get("/api/v1/whoami", headers=_bearer(admin)).status_code == 200
    listed = {t["prefix"]: t for t in c.get("/api/v1/tokens", headers=_bearer(admin)).json()}
    assert listed[admin.split("_")[1]]["last_used_at"] is not None
    assert listed[unused.split("_")[1]]["last_used_at"] is None
    r = subprocess.run([sys.executable, "-m", "agent", "tokens", "list", "--json"], capture_output=True, text=True,
                       env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    cli = {t["prefix"]: t for t in json.loads(r.stdout)}
    assert cli[admin.split("_")[1]]["last_used_at"] == _last_used(db_url, admin).isoformat()  # type: ignore[union-attr]
    assert cli[unused.split("_")[1]]["last_used_at"] is None
    human = subprocess.run([sys.executable, "-m", "agent", "tokens", "list"], capture_output=True, text=True,
                           env=dict(os.environ), timeout=120)
    assert "last_used_at" in human.stdout
