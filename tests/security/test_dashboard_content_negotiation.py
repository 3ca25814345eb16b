"""Refusals answer in the client's terms: a browser on a dashboard page gets a page in the dashboard's layout
(what was refused, what to do), the API and clients that do not ask for HTML keep ``{"detail": ...}``; and
errors shown on dashboard pages point to pages and form fields, never to an API request or parameter."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope
from tests.caps.conftest import seed_fleet

pytestmark = pytest.mark.auth

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
ORIGIN = {"Origin": "https://testserver"}
API_WORDS = re.compile(r"(GET|POST|PUT|PATCH|DELETE) /api/|\?\w+=|body\.|\"\w+\": true")


@pytest.fixture()
def seeded(db_url: str) -> Iterator[str]:
    seed_fleet(db_url)
    yield db_url


def _token(db_url: str, role: str) -> str:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"neg-{role}")
    return secret


def _signed_in(db_url: str, role: str) -> TestClient:
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    assert c.post("/login", data={"token": _token(db_url, role), "next": "/"}).status_code == 303
    return c


def _message(html: str) -> str:
    m = re.search(r'id="error(?:-message)?">([^<]*)<', html)
    assert m is not None, html[:800]
    return m.group(1)


def test_a_role_refused_a_dashboard_page_gets_a_page_while_the_api_and_scripts_keep_json(seeded: str) -> None:
    anonymous = TestClient(create_app(seeded), base_url="https://testserver", follow_redirects=False)
    r = anonymous.get("/exports", headers=BROWSER)  # no session: to the sign-in page, as before
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/exports"
    c = _signed_in(seeded, "viewer")
    r = c.get("/exports", headers=BROWSER)
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert "<nav>" in r.text and 'action="/logout"' in r.text  # the layout, with who is signed in
    message = _message(r.text)
    assert "viewer" in message and "exports" in message
    assert "auditor or admin" in r.text and "sign in" in r.text
    assert "content-security-policy" in r.headers  # the dashboard's own headers, as on every page
    # A client that does not ask for HTML on the same page, and the API even when a browser asks: JSON.
    for r in (c.get("/exports"), c.get("/exports", headers={"Accept": "application/json"})):
        assert r.status_code == 403 and r.headers["content-type"] == "application/json", r.text[:200]
        assert r.json()["detail"] == "role 'viewer' may not GET /exports (needs 'audit')"
    viewer = _token(seeded, "viewer")
    r = anonymous.get("/api/v1/exports/installed-base", headers={**BROWSER, "Authorization": f"Bearer {viewer}"})
    assert r.status_code == 403 and r.json()["detail"] == (
        "role 'viewer' may not GET /api/v1/exports/installed-base (needs 'audit')")
    r = anonymous.get("/api/v1/caps", headers=BROWSER)
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    assert r.headers["www-authenticate"] == "Bearer"


def test_a_role_refused_a_dashboard_form_gets_a_page_not_json(seeded: str) -> None:
    c = _signed_in(seeded, "viewer")
    r = c.post("/whatif", data={"n": "1"}, headers={**BROWSER, **ORIGIN})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert "viewer" in _message(r.text) and "planner or admin" in r.text
    r = c.post("/whatif", data={"n": "1"}, headers=ORIGIN)
    assert r.status_code == 403 and "needs 'plan'" in r.json()["detail"]


def test_a_cross_site_form_post_from_a_browser_is_a_page_saying_nothing_changed(seeded: str) -> None:
    c = _signed_in(seeded, "admin")
    r = c.post("/audit/checkpoint", headers={**BROWSER, "Origin": "https://evil.example"})
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert "nothing was changed" in _message(r.text)
    r = c.post("/audit/checkpoint", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]


def test_dashboard_errors_name_pages_and_form_fields_while_the_api_keeps_its_words(seeded: str) -> None:
    c = _signed_in(seeded, "admin")
    form = {"authorization": "aurora", "op": "add", "n": "1", "chip": "h100-sxm", "site": "dxb",
            "as_of": "2025-06-01"}
    cases = (
        (c.post("/whatif", data={**form, "owner": "Nobody"}, headers=ORIGIN), 422, "Owner:", "veuctl parties add"),
        (c.post("/whatif", data={**form, "authorization": "nope"}, headers=ORIGIN), 422, "Authorization:",
         "veuctl authorizations add"),
        (c.post("/reservations/999/release", headers=ORIGIN), 404, "Reservation #999", "What-if page"),
        (c.post("/cases/999/resolve", data={"export_intent": "no"}, headers=ORIGIN), 404, "Case #999",
         "Cases page"),
        (c.post("/deadlines/filings", data={"key": "nope", "filed_on": "2025-01-01"}, headers=ORIGIN), 404,
         "Deadline nope", "Deadlines page"),
        (c.get("/explain/aurora/no-such-cap?as_of=2025-06-01"), 404, "cap:", "Caps page"),
        (c.get("/?as_of=1990-01-01"), 422, "as of (date):", "not in effect"),
        (c.get("/controls/galaxy/iad"), 422, "scope:", "site, authorization"),
    )
    for r, status, starts, words in cases:
        message = _message(r.text)
        assert r.status_code == status and r.headers["content-type"].startswith("text/html"), (starts, r.status_code)
        assert starts in message and words in message, message
        assert not API_WORDS.search(message) and "--" not in message and "as_of" not in message, message
    # The same errors over the API still name its requests (tests/security/test_api_error_fields.py pins more).
    api = TestClient(create_app(seeded), base_url="https://testserver")
    h = {"Authorization": f"Bearer {_token(seeded, 'admin')}"}
    r = api.post("/api/v1/whatif", json={"authorization": "nope", "n": 1, "chip": "h100", "site": "dxb"}, headers=h)
    assert r.status_code in (404, 422) and "POST /api/v1/authorizations" in r.json()["detail"], r.text
    r = api.post("/api/v1/reservations/999/release", headers=h)
    assert r.status_code == 404 and "GET /api/v1/reservations" in r.json()["detail"], r.text


def test_a_browser_at_an_address_the_dashboard_does_not_have_gets_pages_not_json(seeded: str) -> None:
    """No such page (404) and a form posted to an address whose id is not a number: each is a page in the
    layout for a browser; the API and scripts keep JSON."""
    c = _signed_in(seeded, "admin")
    r = c.get("/no-such-page", headers=BROWSER)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert "<nav>" in r.text and "/no-such-page" in _message(r.text)
    r = c.post("/reservations/abc/release", headers={**BROWSER, **ORIGIN})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    assert "<nav>" in r.text and "abc" in r.text and not API_WORDS.search(_message(r.text))
    # Not asking for HTML, or under /api/: JSON as before.
    assert c.get("/no-such-page").headers["content-type"] == "application/json"
    r = c.get("/api/v1/no-such-thing", headers={**BROWSER, "Authorization": f"Bearer {_token(seeded, 'admin')}"})
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
