"""The dashboard as each role: every page in the nav renders, and no page offers a form the role cannot submit.

A form is offered only when the role has the permission its post needs (the matrix the authentication
middleware enforces, ``agent.auth.required_permission``); a viewer or auditor sees the what-if page read-only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from agent import caps as capsvc
from agent import obligations as ob
from agent.api.app import create_app
from agent.api.routes.auth import _dashboard_permission
from agent.auth import PERMISSIONS, ROLES, create_token
from agent.packs import registry
from agent.store import session_scope
from tests.caps.conftest import seed_fleet

pytestmark = pytest.mark.auth

NAV = ("/", "/countries", "/sites", "/sites/iad", "/whatif", "/cases", "/models", "/shipments", "/deadlines",
       "/controls", "/controls/site/iad", "/controls/authorization/aurora", "/exports",
       "/explain/aurora/uveu.single_country.AE.owned")
ORIGIN = {"Origin": "https://testserver"}


@pytest.fixture()
def seeded(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("VEU_AUTH", "token")
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        capsvc.reserve(s, packs, "aurora", n=1, chip_name="h100", site="dxb", planned_for=date(2025, 6, 1))
        ob.add_authorization(s, packs, "aurora", date(2025, 1, 1))
    yield db_url


def _signed_in(db_url: str, role: str) -> TestClient:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"qa-{role}")
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False,
                   raise_server_exceptions=False)
    assert c.post("/login", data={"token": secret, "next": "/"}).status_code == 303
    return c


class _Forms(HTMLParser):
    """Every form's method and action, and every nav link."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[str] = []
        self.nav: list[str] = []
        self._in_nav = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "get").lower() == "post":
            self.posts.append(a.get("action") or "")
        if tag == "nav":
            self._in_nav = True
        if tag == "a" and self._in_nav:
            self.nav.append((a.get("href") or "").split("?")[0])

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False


def _parse(html: str) -> _Forms:
    p = _Forms()
    p.feed(html)
    return p


@pytest.mark.parametrize("role", ROLES)
def test_every_page_renders_and_offers_only_the_forms_the_role_may_submit(seeded: str, role: str) -> None:
    c = _signed_in(seeded, role)
    perms = PERMISSIONS[role]
    for path in NAV:
        r = c.get(path)
        needs = _dashboard_permission("GET", path)
        if needs not in perms:
            assert r.status_code == 403, (role, path, r.status_code)
            continue
        assert r.status_code == 200, (role, path, r.status_code, r.text[:300])
        page = _parse(r.text)
        for action in page.posts:
            if action in ("/logout",):
                continue
            assert _dashboard_permission("POST", action) in perms, (role, path, action)
        # The nav links only pages the role may open.
        for href in page.nav:
            assert _dashboard_permission("GET", href) in perms, (role, path, href)


@pytest.mark.parametrize("role", ROLES)
def test_the_whatif_planner_is_offered_only_to_roles_that_may_plan(seeded: str, role: str) -> None:
    c = _signed_in(seeded, role)
    can_plan = "plan" in PERMISSIONS[role]
    page = c.get("/whatif")
    assert page.status_code == 200
    assert ('id="whatif-form"' in page.text) is can_plan, role
    assert ('action="/reservations/1/release"' in page.text) is can_plan, role
    assert ('id="read-only"' in page.text) is not can_plan, role
    assert re.search(r"<td>dxb</td>", page.text), role  # the reservation itself is shown to every role
    form = {"authorization": "aurora", "op": "add", "n": "1", "chip": "h100-sxm", "site": "dxb",
            "as_of": "2025-06-01"}
    r = c.post("/whatif", data=form, headers=ORIGIN)
    assert r.status_code == (200 if can_plan else 403), (role, r.status_code)
    if can_plan:
        assert 'id="reserve-form"' in r.text and 'id="whatif-form"' in r.text
    r = c.post("/reservations/1/release", headers=ORIGIN)
    assert r.status_code == (303 if can_plan else 403), (role, r.status_code)


def test_a_planner_form_error_names_the_form_field_and_keeps_the_input(seeded: str) -> None:
    c = _signed_in(seeded, "planner")
    form = {"authorization": "aurora", "op": "move", "n": "7", "chip": "h100-sxm", "site": "dxb",
            "owner": "Aurora EU", "as_of": "2025-06-01"}
    r = c.post("/whatif", data=form, headers=ORIGIN)
    assert r.status_code == 422
    error = re.search(r'id="error">([^<]*)<', r.text)
    assert error is not None and error.group(1).startswith("To site:") and "--" not in error.group(1)
    assert 'value="7"' in r.text  # the count typed
    assert re.search(r'<option value="move"\s+selected', r.text)
    assert re.search(r"<option selected>Aurora EU</option>", r.text)
    r = c.post("/whatif", data={**form, "op": "retire", "n": "100000", "to_site": ""}, headers=ORIGIN)
    error = re.search(r'id="error">([^<]*)<', r.text)
    assert r.status_code == 422 and error is not None and error.group(1).startswith("How many:"), r.text[:500]
    assert "--" not in error.group(1)
    r = c.post("/reservations", data={"authorization": "aurora", "chip": "h100-sxm", "site": "dxb", "n": "1",
                                      "as_of": "2025-06-01", "expires_on": "2025-05-01"}, headers=ORIGIN)
    error = re.search(r'id="error">([^<]*)<', r.text)
    assert r.status_code == 422 and error is not None and "Expires:" in error.group(1)
    assert "--" not in error.group(1)


def test_releasing_a_reservation_twice_shows_the_planner_page_saying_it_is_already_released(seeded: str) -> None:
    c = _signed_in(seeded, "planner")
    assert c.post("/reservations/1/release", headers=ORIGIN).status_code == 303
    again = c.post("/reservations/1/release", headers=ORIGIN)
    assert again.status_code == 409 and again.headers["content-type"].startswith("text/html")
    assert "Reservation #1" in again.text and "already released" in again.text
    missing = c.post("/reservations/999/release", headers=ORIGIN)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
