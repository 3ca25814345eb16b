"""Access control: hashed, scoped, expiring, revocable API tokens; OIDC bearer JWTs; the role matrix."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.auth import PERMISSIONS, ROLES, create_token, required_permission
from agent.store import session_scope
from agent.store.tables.auth import ApiToken
from agent.store.tables.core import utcnow

pytestmark = pytest.mark.auth


def _token(db_url: str, role: str, **kw: Any) -> str:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"test-{role}", **kw)
    return secret


@pytest.fixture()
def client(db_url: str) -> TestClient:
    return TestClient(create_app(db_url), base_url="https://testserver")


def test_api_refuses_requests_without_credentials(client: TestClient) -> None:
    r = client.get("/api/v1/whoami")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_token_is_stored_hashed_and_identifies_its_role(client: TestClient, db_url: str) -> None:
    secret = _token(db_url, "planner")
    with session_scope(db_url) as s:
        row = s.exec(select(ApiToken)).one()
        assert secret not in (row.token_hash, row.prefix, row.name) and len(row.token_hash) == 64
    r = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert r.json() == {"name": "test-planner", "role": "planner", "via": "token"}


def test_revoked_and_expired_tokens_are_refused(client: TestClient, db_url: str) -> None:
    revoked, expired = _token(db_url, "admin"), _token(db_url, "admin", expires_days=1)
    admin = _token(db_url, "admin")
    prefix = revoked.split("_")[1]
    assert client.delete(f"/api/v1/tokens/{prefix}", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    with session_scope(db_url) as s:
        row = s.exec(select(ApiToken).where(ApiToken.prefix == expired.split("_")[1])).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
    for secret, why in ((revoked, "revoked"), (expired, "expired")):
        r = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 401 and why in r.json()["detail"]


def test_tampered_token_is_refused(client: TestClient, db_url: str) -> None:
    secret = _token(db_url, "admin")
    r = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret[:-2]}xx"})
    assert r.status_code == 401


def test_viewer_cannot_create_tokens(client: TestClient, db_url: str) -> None:
    viewer = _token(db_url, "viewer")
    r = client.post("/api/v1/tokens", json={"role": "admin"}, headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403 and "needs 'admin'" in r.json()["detail"]


def _routes(app: Any) -> list[tuple[str, str]]:
    spec = app.openapi()
    return [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if p.startswith("/api/v1/")]


def test_every_api_route_declares_a_permission(client: TestClient) -> None:
    routes = _routes(client.app)
    assert routes, "the OpenAPI document lists no /api/v1 routes"
    missing = [(m, p) for m, p in routes if required_permission(m, p) is None]
    assert missing == []


def test_role_matrix_holds_for_every_route_in_the_openapi_document(client: TestClient, db_url: str) -> None:
    tokens = {role: _token(db_url, role) for role in ROLES}
    failures = []
    for method, path in _routes(client.app):
        concrete = path.replace("{", "").replace("}", "")  # e.g. /api/v1/cases/id -> a missing id
        need = required_permission(method, path)
        for role, secret in tokens.items():
            r = client.request(method, concrete, headers={"Authorization": f"Bearer {secret}"},
                               json={} if method in {"POST", "PUT", "PATCH"} else None)
            allowed = need in PERMISSIONS[role]
            if allowed and r.status_code in (401, 403):
                failures.append(f"{role} refused {method} {path}: {r.status_code}")
            if not allowed and r.status_code != 403:
                failures.append(f"{role} not refused {method} {path}: {r.status_code}")
            if r.status_code >= 500:
                failures.append(f"{role} got {r.status_code} on {method} {path}")
    assert failures == []


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
                "exp": int(time.time()) + 300, "veu_role": "auditor"}
        return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": "k1"})

    return sign


def test_oidc_bearer_token_verified_against_the_issuers_keys(db_url: str, oidc: Any) -> None:
    c = TestClient(create_app(db_url))
    r = c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {oidc()}"})
    assert r.json() == {"name": "alice", "role": "auditor", "via": "oidc"}
    for bad in (oidc(iss="https://evil.example"), oidc(exp=int(time.time()) - 10), oidc(aud="other"),
                oidc(veu_role="root")):
        assert c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {bad}"}).status_code == 401


def test_oidc_token_signed_by_another_key_is_refused(db_url: str, oidc: Any) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iss": "https://issuer.example", "aud": "veu-governor", "sub": "mallory",
                         "exp": int(time.time()) + 300, "veu_role": "admin"}, other, algorithm="RS256",
                        headers={"kid": "k1"})
    c = TestClient(create_app(db_url))
    assert c.get("/api/v1/whoami", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_dashboard_requires_a_session_and_refuses_cross_site_posts(db_url: str) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    assert c.get("/").status_code == 303
    secret = _token(db_url, "compliance")
    r = c.post("/login", data={"token": secret, "next": "/"})
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Secure" in cookie
    r = c.post("/logout", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert c.post("/login", data={"token": "veu_nope", "next": "/"}).status_code == 401


def test_login_never_redirects_off_site(db_url: str) -> None:
    c = TestClient(create_app(db_url), follow_redirects=False)
    secret = _token(db_url, "viewer")
    r = c.post("/login", data={"token": secret, "next": "//evil.example/x"})
    assert r.headers["location"] == "/"


def _signed_in(db_url: str, role: str) -> tuple[TestClient, str, str]:
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    secret = _token(db_url, role)
    r = c.post("/login", data={"token": secret, "next": "/"})
    assert r.status_code == 303
    return c, secret, r.cookies["__Host-veu_session"]


def test_a_dashboard_session_ends_when_its_token_is_revoked_or_expires(db_url: str) -> None:
    for end in ("revoke", "expire"):
        c, secret, _cookie = _signed_in(db_url, "admin")
        assert c.get("/exports").status_code == 200
        with session_scope(db_url) as s:
            row = s.exec(select(ApiToken).where(ApiToken.prefix == secret.split("_")[1])).one()
            if end == "revoke":
                row.revoked_at = utcnow()
            else:
                row.expires_at = utcnow() - timedelta(seconds=1)
            s.add(row)
        assert c.get("/exports").status_code == 303, end  # back to the sign-in page


def test_signing_out_ends_the_session_server_side_for_every_role(db_url: str) -> None:
    for role in ROLES:
        c, _secret, cookie = _signed_in(db_url, role)
        assert c.get("/").status_code == 200, role
        assert c.post("/logout", headers={"Origin": "https://testserver"}).status_code == 303, role
        # A copy of the cookie taken before signing out is no longer a session.
        c.cookies.set("__Host-veu_session", cookie)
        assert c.get("/").status_code == 303, role


def test_another_site_cannot_sign_a_browser_in(db_url: str) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    r = c.post("/login", data={"token": _token(db_url, "viewer"), "next": "/"},
               headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "veu_session" not in r.headers.get("set-cookie", "")


def test_a_control_character_in_a_path_redirects_to_sign_in_with_it_encoded(db_url: str) -> None:
    c = TestClient(create_app(db_url), follow_redirects=False)
    r = c.get("/x%0ay")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/x%0Ay"


def test_registering_an_authorization_through_the_deadlines_route_still_needs_admin(db_url: str) -> None:
    from agent.parties import add_party

    with session_scope(db_url) as s:
        add_party(s, "Aurora", "US")
    body = {"name": "ROGUE-UVEU", "granted": "2025-01-01", "kind": "uveu", "holder": "Aurora"}
    c = TestClient(create_app(db_url), base_url="https://testserver")
    r = c.post("/api/v1/deadlines/authorizations", json=body,
               headers={"Authorization": f"Bearer {_token(db_url, 'compliance')}"})
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = c.post("/api/v1/deadlines/authorizations", json=body,
               headers={"Authorization": f"Bearer {_token(db_url, 'admin')}"})
    assert r.status_code == 201, r.text
    # Once registered, compliance records its dated terms as before.
    r = c.post("/api/v1/deadlines/authorizations", json={**body, "granted": "2025-02-01"},
               headers={"Authorization": f"Bearer {_token(db_url, 'compliance')}"})
    assert r.status_code == 201, r.text


def test_dashboard_and_api_responses_carry_security_headers(db_url: str) -> None:
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    for r in (c.get("/login"), c.get("/api/v1/whoami")):
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin" and "max-age" in r.headers["strict-transport-security"]


def test_repeated_failed_sign_ins_are_throttled_per_address_with_retry_after(db_url: str) -> None:
    from agent.api.routes.auth import LOGIN_FAILURES

    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    good = _token(db_url, "viewer")
    for _ in range(LOGIN_FAILURES):
        assert c.post("/login", data={"token": "veu_000000000000_" + "x" * 40, "next": "/"}).status_code == 401
    r = c.post("/login", data={"token": "veu_000000000000_" + "y" * 40, "next": "/"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "try again" in r.text
    # Throttled means throttled: even the right token waits (the guesser cannot tell a hit), and no cookie.
    r = c.post("/login", data={"token": good, "next": "/"})
    assert r.status_code == 429 and "veu_session" not in r.headers.get("set-cookie", "")
    assert good not in r.text


def test_the_sign_in_throttle_forgets_failures_once_they_leave_the_window() -> None:
    from agent.api.routes.auth import LoginThrottle

    now = [1000.0]
    t = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        assert t.wait("10.0.0.1") == 0
        t.failed("10.0.0.1")
    assert 0 < t.wait("10.0.0.1") <= 61 and t.wait("10.0.0.2") == 0  # per address
    now[0] += 61
    assert t.wait("10.0.0.1") == 0
    earlier = t.failed("10.0.0.1")
    t.succeeded("10.0.0.1", t.failed("10.0.0.1"))  # a successful sign-in forgives its own attempt, not the others
    assert t.wait("10.0.0.1") == 0 and t._failures == {"10.0.0.1": [earlier]}
    now[0] += 61
    assert t.wait("10.0.0.1") == 0 and t._failures == {}


def test_model_write_permissions_follow_the_route_for_names_with_slashes(client: TestClient, db_url: str) -> None:
    from agent.parties import add_party

    with session_scope(db_url) as s:
        add_party(s, "Lumen", "SG")
    admin = {"Authorization": f"Bearer {_token(db_url, 'admin')}"}
    compliance = {"Authorization": f"Bearer {_token(db_url, 'compliance')}"}
    for name in ("Lumen/determinations", "Lumen/frontier"):  # CUSTOMER/NAME lineages
        assert client.post("/api/v1/models", json={"name": name, "owner": "Lumen"}, headers=admin).status_code == 201
    # Adding training runs is an admin's write, whatever the model is called.
    r = client.post("/api/v1/models/Lumen/determinations/runs", json={"operations": 5e25}, headers=compliance)
    assert r.status_code == 403, r.text
    r = client.post("/api/v1/models/Lumen/determinations/synthetic", headers=compliance,
                    json={"generator": "g", "fraction": 0.1, "generation_operations": 1e20})
    assert r.status_code == 403, r.text
    # A determination is compliance's, also on a model whose name holds a "/".
    r = client.post("/api/v1/models/Lumen/frontier/determinations", headers=compliance,
                    json={"less_capable": True, "by": "alice", "basis": "evaluated against the best published model"})
    assert r.status_code == 201, r.text


def test_dashboard_pages_carry_a_content_security_policy_that_allows_only_own_scripts(db_url: str) -> None:
    c, _secret, _cookie = _signed_in(db_url, "viewer")
    for path in ("/login", "/", "/cases"):
        csp = c.get(path).headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp, path
        assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";")[0], path
    assert "content-security-policy" not in c.get("/docs").headers  # Swagger UI loads its scripts from a CDN


def test_the_case_queue_offers_the_resolve_form_only_to_roles_that_may_resolve(db_url: str) -> None:
    from agent.demo import seed

    seed(db_url)  # with open red-flag cases
    for role, form in (("viewer", False), ("planner", False), ("auditor", False), ("compliance", True),
                       ("admin", True)):
        c, _secret, _cookie = _signed_in(db_url, role)
        page = c.get("/cases").text
        assert ('class="resolve' in page) is form, role
        assert ("compliance officer records the answers" in page) is not form, role


def test_a_prefix_of_only_decimal_digits_revokes_that_token_not_the_token_with_that_id(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import secrets as secrets_module

    from agent.auth import revoke_token
    with session_scope(db_url) as s:
        first, _ = create_token(s, role="viewer", name="first")
        monkeypatch.setattr(secrets_module, "token_hex", lambda n: "000000000001")
        digits, _ = create_token(s, role="auditor", name="digits")
        assert first.id == 1 and digits.prefix == "000000000001"
        assert revoke_token(s, "000000000001").name == "digits"
        assert revoke_token(s, str(first.id)).name == "first"


def test_every_signed_in_page_offers_sign_out_naming_who_is_signed_in(db_url: str) -> None:
    c, _secret, _cookie = _signed_in(db_url, "viewer")
    page = c.get("/").text
    assert 'action="/logout"' in page and "(viewer)" in page
    assert c.post("/logout", headers={"Origin": "https://testserver"}).headers["location"] == "/login"


def test_without_authentication_there_is_no_session_to_end(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEU_AUTH", "none")
    anonymous = TestClient(create_app(db_url), base_url="https://testserver")
    page = anonymous.get("/")
    assert page.status_code == 200 and 'action="/logout"' not in page.text
