"""An OIDC token's subject is held to what a token name is held to (session 23).

The JWT's ``sub`` becomes the principal's name: the audit trail's actor (``oidc:<sub>``), ``created_by`` of the
tokens it creates, what ``whoami`` answers and a terminal or page shows. A token name with a control or
bidirectional character is refused (``agent.text.unprintable``); a ``sub`` was taken as it came, so a subject
``alice\\u202egnp.exe`` read on a page as another name, and an escape was replayed to whoever listed the tokens.
Now such a token is refused with 401, the detail naming the claim.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.store import session_scope
from agent.store.tables.auth import ApiToken

pytestmark = pytest.mark.auth


@pytest.fixture()
def oidc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    monkeypatch.setenv("VEU_OIDC_ISSUER", "https://issuer.example")
    monkeypatch.setenv("VEU_OIDC_AUDIENCE", "veu-governor")
    monkeypatch.setenv("VEU_OIDC_JWKS_FILE", str(tmp_path / "jwks.json"))

    def sign(**claims: Any) -> str:
        base = {"iss": "https://issuer.example", "aud": "veu-governor", "sub": "alice",
                "exp": int(time.time()) + 300, "veu_role": "admin"}
        return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "k1"})

    return sign


@pytest.mark.parametrize(("sub", "code_point"), [
    ("alice\u202egnp.exe", "U+202E"), ("alice\x1b[2Jroot", "U+001B"), ("alice\nbob", "U+000A"),
    ("al\u200bice", "U+200B"), ("alice\x00", "U+0000"), ("alice\u2028bob", "U+2028")],
    ids=["bidi-override", "escape", "newline", "zero-width-space", "nul", "line-separator"])
def test_a_token_whose_subject_has_control_or_bidi_characters_is_refused_naming_the_claim(
        db_url: str, oidc: Any, sub: str, code_point: str) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver")
    r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {oidc(sub=sub)}"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    detail = r.json()["detail"]
    assert "'sub'" in detail and code_point in detail, detail


def test_such_a_subject_writes_nothing_under_its_name(db_url: str, oidc: Any) -> None:
    """An admin's token from the issuer: the token it would have created is not created, so no ``created_by`` and
    no audit entry carries the override."""
    c = TestClient(create_app(db_url), base_url="https://testserver")
    token = oidc(sub="admin\u202e")
    r = c.post("/api/v1/tokens", json={"role": "viewer", "name": "ci"}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text
    with session_scope(db_url) as s:
        assert s.exec(select(ApiToken)).all() == []


@pytest.mark.parametrize("sub", ["alice", "José Núñez", "山田太郎", "248289761001", "auth0|5f7c8ec7c33c6c004bbafe82"])
def test_subjects_in_any_script_are_accepted(db_url: str, oidc: Any, sub: str) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver")
    r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {oidc(sub=sub)}"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": sub, "role": "admin", "via": "oidc"}
