"""Dashboard forms over HTTPS accept only this site's HTTPS origin: a page served on the same host over plain HTTP
(what a man in the middle can inject before HSTS is known) is another origin, and browsers without schemeful
SameSite still send the ``__Host-`` session cookie with its form posts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope

pytestmark = pytest.mark.auth

HTTPS, HTTP = "https://testserver", "http://testserver"


def _token(url: str, role: str = "admin") -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role=role, name=f"test-{role}")
    return secret


def _signed_in(url: str, base: str) -> TestClient:
    c = TestClient(create_app(url), base_url=base, follow_redirects=False)
    r = c.post("/login", data={"token": _token(url), "next": "/"}, headers={"Origin": base})
    assert r.status_code == 303
    return c


@pytest.mark.parametrize("header", ["Origin", "Referer"])
def test_over_https_a_form_from_the_same_host_over_plain_http_is_refused(db_url: str, header: str) -> None:
    c = _signed_in(db_url, HTTPS)
    value = "http://testserver" if header == "Origin" else "http://testserver/cases"
    r = c.post("/logout", headers={header: value, "Accept": "application/json"})
    assert r.status_code == 403, r.text
    assert "Origin" in r.json()["detail"]
    assert c.get("/").status_code == 200  # the session was not ended by the forged sign-out


def test_over_https_a_sign_in_from_the_same_host_over_plain_http_is_refused(db_url: str) -> None:
    # Login CSRF: the attacker's page signs the victim's browser in with the attacker's token.
    c = TestClient(create_app(db_url), base_url=HTTPS, follow_redirects=False)
    r = c.post("/login", data={"token": _token(db_url), "next": "/"}, headers={"Origin": "http://testserver"})
    assert r.status_code == 403
    assert "set-cookie" not in r.headers


def test_over_https_a_form_from_this_https_page_is_served(db_url: str) -> None:
    c = _signed_in(db_url, HTTPS)
    r = c.post("/logout", headers={"Origin": "https://testserver"})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert c.get("/").status_code == 303  # signed out


def test_plain_http_behind_a_tls_terminating_proxy_accepts_the_https_page_origin(db_url: str) -> None:
    # The browser is on https://testserver; the proxy forwards plain HTTP without X-Forwarded-Proto trusted.
    c = _signed_in(db_url, HTTP)
    r = c.post("/logout", headers={"Origin": "https://testserver"})
    assert r.status_code == 303 and r.headers["location"] == "/login"
