"""A token's name is shown to whoever lists tokens (``veuctl tokens list`` in a terminal, ``GET /api/v1/tokens``)
and names the signed-in user on every dashboard page: like every other name staff type, it must be one line of
printable text, so an escape sequence is not replayed to an admin's terminal and a bidi override does not make
one token read as another."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope
from agent.store.tables.auth import ApiToken

pytestmark = pytest.mark.auth

BAD_NAMES = ["ci\x1b[2J", "ci\u202etxt.exe", "ci\nadmin", "ci\x00"]


def _admin(url: str) -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role="admin", name="root")
    return secret


def _names(url: str) -> list[str]:
    with session_scope(url) as s:
        return [t.name for t in s.exec(select(ApiToken).order_by(ApiToken.id)).all()]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_api_refuses_a_token_name_with_control_or_bidi_characters_naming_the_field(db_url: str, name: str) -> None:
    c = TestClient(create_app(db_url))
    r = c.post("/api/v1/tokens", json={"role": "viewer", "name": name},
               headers={"Authorization": f"Bearer {_admin(db_url)}"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("name: contains U+") and "--" not in detail
    assert _names(db_url) == ["root"]  # nothing stored


def test_veuctl_refuses_a_token_name_with_an_escape_sequence(db_url: str) -> None:
    r = subprocess.run([sys.executable, "-m", "agent", "tokens", "create", "--role", "viewer", "--name", "ci\x1b[2J"],
                       capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode != 0
    assert "--name: contains U+001B" in r.stderr
    assert "veu_" not in r.stdout
    assert _names(db_url) == []


def test_a_printable_token_name_in_any_script_is_kept(db_url: str) -> None:
    c = TestClient(create_app(db_url))
    r = c.post("/api/v1/tokens", json={"role": "viewer", "name": "Prüfung – 監査 CI"},
               headers={"Authorization": f"Bearer {_admin(db_url)}"})
    assert r.status_code == 201
    listing = c.get("/api/v1/tokens", headers={"Authorization": f"Bearer {_admin(db_url)}"}).json()
    assert "Prüfung – 監査 CI" in json.dumps([t["name"] for t in listing], ensure_ascii=False)
