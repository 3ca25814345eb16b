"""A JSON number longer than Python reads (more than 4,300 digits) is a 400 that says what to write, not
"cannot be parsed (ValueError)"."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope


@pytest.fixture()
def admin_client(db_url: str) -> TestClient:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role="admin", name="qa-s20-admin")
    c = TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {secret}"
    return c


def test_a_number_of_5000_digits_is_refused_saying_to_write_e_notation(admin_client: TestClient) -> None:
    body = '{"parameters": 1' + "0" * 5000 + ', "tokens": 1e12}'
    r = admin_client.post("/api/v1/estimate", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == "body: a number has too many digits to read; write it in e-notation (e.g. 1e26)"
