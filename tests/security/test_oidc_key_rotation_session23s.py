"""The OIDC issuer's key set (``VEU_OIDC_JWKS_FILE``) is read again when the file changes (session 23).

It was read once, when the app was set up (an ``lru_cache``): after the identity provider rotated its signing key
and the operator updated the Secret, every token signed by the new key was refused, and a key taken out of the set
(perhaps because it leaked) stayed trusted until the API was restarted. Now the file is checked by a ``stat`` on
each OIDC request and read again when it changed, the way the audit signing key is; a changed file that does not
load (half-written, not a key set) keeps the previous set, with one warning naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import AuthError

pytestmark = pytest.mark.auth

ISSUER = "https://issuer.example"
AUDIENCE = "veu-governor"


class Issuer:
    """An identity provider's signing keys, and the key set file the operator mounts for the API."""

    def __init__(self, jwks_file: Path) -> None:
        self.file = jwks_file
        self.keys: dict[str, rsa.RSAPrivateKey] = {}

    def new_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def key_set(self, *kids: str) -> str:
        jwks = []
        for kid in kids:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            jwk.update(kid=kid, use="sig", alg="RS256")
            jwks.append(jwk)
        return json.dumps({"keys": jwks})

    def publish(self, *kids: str) -> None:
        """Replace the file as the kubelet updates a mounted Secret: a new file renamed over the old one."""
        tmp = self.file.with_name(".jwks.new")
        tmp.write_text(self.key_set(*kids))
        os.replace(tmp, self.file)

    def token(self, kid: str, **claims: Any) -> str:
        base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 300, "veu_role": "auditor"}
        return jwt.encode({**base, **claims}, self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture()
def issuer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Issuer:
    idp = Issuer(tmp_path / "jwks.json")
    idp.new_key("k1")
    idp.publish("k1")
    monkeypatch.setenv("VEU_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("VEU_OIDC_AUDIENCE", AUDIENCE)
    monkeypatch.setenv("VEU_OIDC_JWKS_FILE", str(idp.file))
    return idp


def _status(c: TestClient, token: str) -> int:
    return c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}).status_code


def test_after_the_issuer_rotates_its_key_tokens_of_the_new_key_are_accepted_without_a_restart(
        db_url: str, issuer: Issuer) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver")
    assert _status(c, issuer.token("k1")) == 200
    issuer.new_key("k2")
    issuer.publish("k1", "k2")  # the IdP publishes the next key before it signs with it
    assert _status(c, issuer.token("k2")) == 200
    assert _status(c, issuer.token("k1")) == 200


def test_a_key_removed_from_the_set_is_no_longer_trusted_without_a_restart(db_url: str, issuer: Issuer) -> None:
    """A leaked key taken out of the set: a token it signs (any role the holder writes into it) is refused."""
    c = TestClient(create_app(db_url), base_url="https://testserver")
    leaked = issuer.token("k1", veu_role="admin")
    assert _status(c, leaked) == 200
    issuer.new_key("k2")
    issuer.publish("k2")
    r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {leaked}"})
    assert r.status_code == 401, r.text
    assert _status(c, issuer.token("k2")) == 200


def test_a_key_set_rewritten_in_place_with_the_same_size_is_read_again(db_url: str, issuer: Issuer) -> None:
    """An editor or ``cp`` rewrites the file in place, within the file system's timestamp tick and to the same size
    (two RSA-2048 key sets under one kid are): the stat alone cannot tell, so a file changed only just before it was
    read is read again."""
    c = TestClient(create_app(db_url), base_url="https://testserver")
    assert _status(c, issuer.token("k1")) == 200
    before = issuer.file.stat()
    issuer.keys["k1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # same kid, new key
    text = issuer.key_set("k1")
    while len(text) != before.st_size:  # a key whose modulus encodes to the same length
        issuer.keys["k1"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        text = issuer.key_set("k1")
    with open(issuer.file, "r+") as fh:
        fh.write(text)
    os.utime(issuer.file, ns=(before.st_atime_ns, before.st_mtime_ns))  # the same stamp the first read saw
    assert issuer.file.stat().st_ino == before.st_ino and issuer.file.stat().st_size == before.st_size
    assert _status(c, issuer.token("k1")) == 200


@pytest.mark.parametrize("content", ["", '{"keys": [', "not json", '{"kid": "k2"}', '{"keys": "k2"}', "[]"],
                         ids=["empty", "half-written", "garbage", "no-keys", "keys-not-a-list", "not-an-object"])
def test_a_changed_file_that_does_not_load_keeps_the_previous_set_and_is_logged_once_naming_the_file(
        db_url: str, issuer: Issuer, content: str, caplog: pytest.LogCaptureFixture) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver")
    assert _status(c, issuer.token("k1")) == 200
    issuer.file.write_text(content)
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert _status(c, issuer.token("k1")) == 200
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and str(issuer.file) in
              r.getMessage()]
    assert len(warned) == 1, warned
    assert "VEU_OIDC_JWKS_FILE" in warned[0] and "previous" in warned[0], warned
    issuer.new_key("k2")
    issuer.publish("k2")  # the write completes: the new set is read
    assert _status(c, issuer.token("k2")) == 200
    assert _status(c, issuer.token("k1")) == 401


def test_a_deleted_key_set_file_keeps_the_previous_set_and_is_logged(
        db_url: str, issuer: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver")
    assert _status(c, issuer.token("k1")) == 200
    issuer.file.unlink()
    with caplog.at_level(logging.WARNING):
        assert _status(c, issuer.token("k1")) == 200
        assert _status(c, issuer.token("k1")) == 200
    warned = [r.getMessage() for r in caplog.records if str(issuer.file) in r.getMessage()]
    assert len(warned) == 1, warned


def test_a_key_set_that_does_not_load_at_start_refuses_to_start_naming_the_setting(
        db_url: str, issuer: Issuer) -> None:
    issuer.file.write_text('{"keys": [')
    with pytest.raises(AuthError, match="VEU_OIDC_JWKS_FILE") as exc:
        create_app(db_url)
    assert str(issuer.file) in str(exc.value)
    issuer.file.unlink()
    with pytest.raises(AuthError, match="VEU_OIDC_JWKS_FILE"):
        create_app(db_url)


_opened: list[str] = []
_watching: list[str] = []
_hooked: list[bool] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _watching and args and str(args[0]) == _watching[0]:
        _opened.append(event)


def test_an_unchanged_key_set_is_not_read_again_on_every_request(db_url: str, issuer: Issuer) -> None:
    """The per-request cost is a stat: the file is opened again only when it changed (or only just had)."""
    old = time.time() - 60  # a file that settled a minute ago
    os.utime(issuer.file, (old, old))
    c = TestClient(create_app(db_url), base_url="https://testserver")
    token = issuer.token("k1")
    assert _status(c, token) == 200
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked.append(True)  # an audit hook cannot be removed: it watches only while _watching names a file
    _opened.clear()
    _watching[:] = [str(issuer.file)]
    try:
        for _ in range(30):
            assert _status(c, token) == 200
    finally:
        _watching.clear()
    assert _opened == []
