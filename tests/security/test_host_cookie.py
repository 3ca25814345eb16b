"""The dashboard session cookie: ``__Host-veu_session`` over HTTPS (Secure, Path=/, no Domain), so a sibling
subdomain or a plain-HTTP man in the middle cannot plant or overwrite it; ``veu_session`` over plain HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope

pytestmark = pytest.mark.auth

HTTPS, HTTP = "https://testserver", "http://testserver"


def _token(url: str, role: str = "viewer") -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role=role, name=f"test-{role}")
    return secret


def _client(url: str, base: str) -> TestClient:
    return TestClient(create_app(url), base_url=base, follow_redirects=False)


def _attributes(set_cookie: str) -> tuple[str, dict[str, str]]:
    """The cookie's name and its attributes (lower-cased names) from one Set-Cookie header."""
    first, *rest = [p.strip() for p in set_cookie.split(";")]
    attrs: dict[str, Any] = {}
    for part in rest:
        k, _, v = part.partition("=")
        attrs[k.lower()] = v
    return first.partition("=")[0], attrs


def test_over_https_the_session_cookie_is_host_prefixed_secure_path_root_and_without_domain(db_url: str) -> None:
    c = _client(db_url, HTTPS)
    r = c.post("/login", data={"token": _token(db_url), "next": "/"})
    assert r.status_code == 303
    name, attrs = _attributes(r.headers["set-cookie"])
    assert name == "__Host-veu_session"
    assert "secure" in attrs and attrs["path"] == "/" and "domain" not in attrs
    assert "httponly" in attrs and attrs["samesite"].lower() == "strict"
    assert c.get("/").status_code == 200  # and the browser's next request is signed in with it


def test_over_http_the_session_cookie_keeps_its_plain_name_without_secure(db_url: str) -> None:
    c = _client(db_url, HTTP)
    r = c.post("/login", data={"token": _token(db_url), "next": "/"})
    assert r.status_code == 303
    name, attrs = _attributes(r.headers["set-cookie"])
    assert name == "veu_session"  # browsers refuse a __Host- cookie that is not Secure
    assert "secure" not in attrs and attrs["path"] == "/" and "domain" not in attrs
    assert c.get("/").status_code == 200


def test_over_https_a_session_planted_under_the_plain_name_is_not_accepted(db_url: str) -> None:
    # A valid session value (signed by this server) under the name anyone on the path or a sibling subdomain can
    # set: over HTTPS it must not sign the browser in.
    plain = _client(db_url, HTTP)
    assert plain.post("/login", data={"token": _token(db_url), "next": "/"}).status_code == 303
    value = plain.cookies["veu_session"]
    secure = TestClient(plain.app, base_url=HTTPS, follow_redirects=False)
    r = secure.get("/", headers={"Cookie": f"veu_session={value}"})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert secure.get("/", headers={"Cookie": f"__Host-veu_session={value}"}).status_code == 200


def test_over_http_a_host_prefixed_cookie_is_not_read(db_url: str) -> None:
    c = _client(db_url, HTTPS)
    assert c.post("/login", data={"token": _token(db_url), "next": "/"}).status_code == 303
    value = c.cookies["__Host-veu_session"]
    plain = TestClient(c.app, base_url=HTTP, follow_redirects=False)
    assert plain.get("/", headers={"Cookie": f"__Host-veu_session={value}"}).status_code == 303


@pytest.mark.parametrize(("base", "cookie"), [(HTTPS, "__Host-veu_session"), (HTTP, "veu_session")])
def test_signing_out_clears_the_cookie_of_the_current_mode(db_url: str, base: str, cookie: str) -> None:
    c = _client(db_url, base)
    assert c.post("/login", data={"token": _token(db_url), "next": "/"}).status_code == 303
    r = c.post("/logout", headers={"Origin": base})
    assert r.status_code == 303
    name, attrs = _attributes(r.headers["set-cookie"])
    assert name == cookie and attrs["max-age"] == "0" and attrs["path"] == "/" and "domain" not in attrs
    assert ("secure" in attrs) is (base == HTTPS)
    assert c.get("/").status_code == 303  # signed out
