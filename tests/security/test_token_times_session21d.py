"""GET /api/v1/tokens writes its times as every other answer does (+00:00), not pydantic's 'Z'."""

from __future__ import annotations

from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope


def test_token_times_are_written_like_every_other_answer(db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VEU_AUTH", "none")
    with session_scope(db_url) as s:
        create_token(s, role="viewer", name="v", expires_days=3)
    c = TestClient(create_app(db_url))
    (row,) = c.get("/api/v1/tokens").json()
    assert row["created_at"].endswith("+00:00") and row["expires_at"].endswith("+00:00"), row
    made = c.post("/api/v1/tokens", json={"role": "viewer", "name": "w", "expires_days": 2}).json()
    assert made["expires_at"].endswith("+00:00"), made
