"""Authentication edge cases found by the session-15 review: token revocation by id, caching, sign-out, headers.

Each test fails without its fix (noted in the docstring); the rest hold behaviour the review probed and found right
(bearer scheme case, garbage credentials, expiry to the second) so that it stays right.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.auth import AuthError, OidcConfig, create_token, revoke_token, verify_jwt, verify_token
from agent.store import session_scope
from agent.store.tables.auth import ApiToken

pytestmark = pytest.mark.auth

HTTPS = "https://testserver"


def _token(url: str, role: str, **kw: Any) -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role=role, name=f"test-{role}", **kw)
    return secret


def _client(url: str) -> TestClient:
    return TestClient(create_app(url), base_url=HTTPS, follow_redirects=False, raise_server_exceptions=False)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _revoked(url: str, secret: str) -> bool:
    with session_scope(url) as s:
        row = s.exec(select(ApiToken).where(ApiToken.prefix == secret.split("_")[1])).one()
        return row.revoked_at is not None


# --- revoking by id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ident", ["²", "1" * 5000])
def test_revoking_a_token_by_a_digit_string_int_cannot_read_is_not_found_not_a_500(db_url: str, ident: str) -> None:
    """Was a 500: str.isdigit() accepts "²" (and any length), and int() then raised ValueError."""
    admin = _token(db_url, "admin")
    r = _client(db_url).delete(f"/api/v1/tokens/{ident}", headers=_bearer(admin))
    assert r.status_code == 404, r.text


@pytest.mark.parametrize("ident", ["１", "٣", "१"])  # full-width one, Arabic-Indic three, Devanagari one
def test_digits_of_other_scripts_do_not_name_a_token_id(db_url: str, ident: str) -> None:
    """Was a revocation: int("１") is 1, so DELETE /api/v1/tokens/１ revoked token 1 (here the caller's own)."""
    admin = _token(db_url, "admin")
    for _ in range(2):  # ids 1..3 exist, whichever digit the ident reads as
        _token(db_url, "viewer")
    c = _client(db_url)
    r = c.delete(f"/api/v1/tokens/{ident}", headers=_bearer(admin))
    assert r.status_code == 404, r.text
    with session_scope(db_url) as s:
        assert all(t.revoked_at is None for t in s.exec(select(ApiToken)).all())
        with pytest.raises(AuthError, match="not found"):  # the CLI's `veuctl tokens revoke` path
            revoke_token(s, ident)


def test_an_id_beyond_the_stores_integer_range_names_no_token_on_postgresql(pg_url: str) -> None:
    """Was a 422 "integer out of range" from the store: a number that cannot be an id is simply not found."""
    admin = _token(pg_url, "admin")
    r = _client(pg_url).delete("/api/v1/tokens/99999999999", headers=_bearer(admin))
    assert r.status_code == 404, r.text
    assert "not found" in r.json()["detail"]


def test_a_token_is_still_revoked_by_its_decimal_id(db_url: str) -> None:
    admin, viewer = _token(db_url, "admin"), _token(db_url, "viewer")
    r = _client(db_url).delete("/api/v1/tokens/2", headers=_bearer(admin))
    assert r.status_code == 200 and _revoked(db_url, viewer) and not _revoked(db_url, admin)


# --- caching ----------------------------------------------------------------------------------------


def test_the_token_secret_and_signed_in_answers_are_never_stored_by_a_cache(db_url: str) -> None:
    """Was cacheable: no response carried Cache-Control, so a token's secret (shown once) and signed-in pages
    could stay in a shared machine's browser or proxy cache after sign-out."""
    admin = _token(db_url, "admin")
    c = _client(db_url)
    created = c.post("/api/v1/tokens", json={"role": "viewer"}, headers=_bearer(admin))
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    assert c.get("/api/v1/whoami", headers=_bearer(admin)).headers["cache-control"] == "no-store"
    assert c.get("/api/v1/whoami").headers["cache-control"] == "no-store"  # a 401 too
    assert c.post("/login", data={"token": admin, "next": "/"}).status_code == 303
    for path in ("/", "/exports", "/login"):
        r = c.get(path)
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store", path
    # The product's own static files stay cacheable.
    assert "no-store" not in c.get("/static/app.css").headers.get("cache-control", "")


# --- sign-out ---------------------------------------------------------------------------------------


def test_signing_out_clears_the_cookie_with_the_attributes_it_was_set_with(db_url: str) -> None:
    """Was a bare deletion: ``Set-Cookie: veu_session=""; SameSite=lax`` without Secure or HttpOnly."""
    c = _client(db_url)
    assert c.post("/login", data={"token": _token(db_url, "viewer"), "next": "/"}).status_code == 303
    r = c.post("/logout", headers={"Origin": HTTPS})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"].lower()
    assert cookie.startswith("__host-veu_session=") and "max-age=0" in cookie
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie


# --- behaviour probed and found right ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_name_is_case_insensitive(db_url: str, scheme: str) -> None:
    viewer = _token(db_url, "viewer")
    r = _client(db_url).get("/api/v1/whoami", headers={"Authorization": f"{scheme} {viewer}"})
    assert r.status_code == 200 and r.json()["role"] == "viewer"


@pytest.mark.parametrize("header", [
    "Bearer " + "x" * 100_000,
    "Bearer veu_" + "a" * 12 + "_" + "b" * 5000,
    "Bearer veu_zzzzzzzzzzzz_" + "b" * 43,
    "Bearer veu__",
    "Bearer ",
    "Bearer",
    "Basic dXNlcjpwYXNz",
    "Bearer \x00\x01",
    "Bearer é" * 50,
    "Bearer a.b.c",
])
def test_garbage_authorization_headers_are_a_401_never_a_500(db_url: str, header: str) -> None:
    r = _client(db_url).get("/api/v1/whoami", headers={"Authorization": header.encode("latin-1")})  # type: ignore[dict-item]
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_a_token_in_the_query_string_or_a_cookie_is_not_a_credential(db_url: str) -> None:
    viewer = _token(db_url, "viewer")
    c = _client(db_url)
    for name in ("token", "access_token"):
        assert c.get(f"/api/v1/whoami?{name}={viewer}").status_code == 401
    c.cookies.set("veu_session", viewer)
    assert c.get("/api/v1/whoami").status_code == 401


def test_a_token_expires_at_its_expiry_instant_to_the_second(db_url: str) -> None:
    secret = _token(db_url, "viewer", expires_days=1)
    with session_scope(db_url) as s:
        row = s.exec(select(ApiToken).where(ApiToken.prefix == secret.split("_")[1])).one()
        expires = row.expires_at
        assert expires is not None and expires.utcoffset() == timedelta(0)
        assert verify_token(s, secret, now=expires - timedelta(seconds=1)).role == "viewer"
        for after in (timedelta(0), timedelta(seconds=1)):
            with pytest.raises(AuthError, match="expired"):
                verify_token(s, secret, now=expires + after)


def test_a_revoked_token_ends_its_dashboard_session_at_the_next_request(db_url: str) -> None:
    c = _client(db_url)
    secret = _token(db_url, "auditor")
    assert c.post("/login", data={"token": secret, "next": "/"}).status_code == 303
    assert c.get("/exports").status_code == 200
    admin = _token(db_url, "admin")
    assert c.delete(f"/api/v1/tokens/{secret.split('_')[1]}", headers=_bearer(admin)).status_code == 200
    assert c.get("/exports").status_code == 303
    assert c.get("/api/v1/whoami", headers=_bearer(secret)).status_code == 401


# --- OIDC audience ----------------------------------------------------------------------------------


def _oidc_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audience: str | None) -> Callable[..., str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    monkeypatch.setenv("VEU_OIDC_ISSUER", "https://issuer.example")
    monkeypatch.setenv("VEU_OIDC_JWKS_FILE", str(tmp_path / "jwks.json"))
    if audience is None:
        monkeypatch.delenv("VEU_OIDC_AUDIENCE", raising=False)
    else:
        monkeypatch.setenv("VEU_OIDC_AUDIENCE", audience)

    def sign(**claims: Any) -> str:
        base = {"iss": "https://issuer.example", "sub": "alice", "exp": int(time.time()) + 300, "veu_role": "admin"}
        return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "k1"})

    return sign


def test_oidc_without_a_configured_audience_refuses_to_start(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was accepted: with VEU_OIDC_AUDIENCE unset the audience was not checked, so a JWT the issuer minted for
    another application (``aud: payroll``) signed in as its role claim said."""
    sign = _oidc_env(tmp_path, monkeypatch, audience=None)
    try:
        app = create_app(db_url)
    except AuthError as exc:
        assert "VEU_OIDC_AUDIENCE" in str(exc)
        return
    r = TestClient(app, base_url=HTTPS).get("/api/v1/whoami", headers=_bearer(sign(aud="payroll")))
    pytest.fail(f"started without an audience; another application's JWT got {r.status_code}")


def test_a_jwt_without_an_audience_or_for_another_one_is_refused(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign = _oidc_env(tmp_path, monkeypatch, audience="veu-governor")
    c = _client(db_url)
    assert c.get("/api/v1/whoami", headers=_bearer(sign(aud="veu-governor"))).json()["via"] == "oidc"
    assert c.get("/api/v1/whoami", headers=_bearer(sign(aud=["other", "veu-governor"]))).status_code == 200
    for claims in ({}, {"aud": "payroll"}, {"aud": ""}, {"aud": []}):
        r = c.get("/api/v1/whoami", headers=_bearer(sign(**claims)))
        assert r.status_code == 401, claims


def test_an_oidc_configuration_built_without_an_audience_accepts_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was accepted: ``verify_jwt`` skipped the audience check when the configuration had none."""
    sign = _oidc_env(tmp_path, monkeypatch, audience=None)
    cfg = OidcConfig(issuer="https://issuer.example", audience="",
                     jwks=json.loads((tmp_path / "jwks.json").read_text()))
    for claims in ({"aud": "payroll"}, {}):
        with pytest.raises(AuthError):
            verify_jwt(sign(**claims), cfg)
