"""Session 20 QA of the dashboard against the API: the same refusal at the same status with the same words, and the
same answer (the what-if's reservations) on the page as in the API's JSON."""

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
WHATIF = {"authorization": "aurora", "op": "add", "n": "1", "chip": "h100-sxm", "site": "dxb",
          "as_of": "2025-06-01"}


@pytest.fixture()
def seeded(db_url: str) -> Iterator[str]:
    seed_fleet(db_url)
    yield db_url


def _token(db_url: str, role: str) -> str:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"s20-{role}")
    return secret


def _signed_in(db_url: str, role: str) -> TestClient:
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    assert c.post("/login", data={"token": _token(db_url, role), "next": "/"}).status_code == 303
    return c


def _api(db_url: str, role: str = "admin") -> TestClient:
    c = TestClient(create_app(db_url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {_token(db_url, role)}"
    return c


def _message(html: str) -> str:
    m = re.search(r'id="error(?:-message)?">([^<]*)<', html)
    assert m is not None, html[:800]
    return m.group(1)


@pytest.mark.parametrize("page", ["/", "/countries", "/sites", "/shipments", "/models", "/sites/dxb",
                                  "/explain/aurora/uveu.outside_us.owned"])
def test_a_date_before_the_rules_is_a_422_page_naming_the_as_of_field_as_in_the_api(seeded: str, page: str) -> None:
    c = _signed_in(seeded, "viewer")
    r = c.get(page, params={"as_of": "1990-01-01"}, headers=BROWSER)
    assert r.status_code == 422, (page, r.status_code)
    assert r.headers["content-type"].startswith("text/html")
    message = _message(r.text)
    assert message.startswith("as of (date):") and "1990-01-01" in message, (page, message)
    assert "as_of" not in message and "/api/" not in message, message
    assert "<h1>Not found</h1>" not in r.text  # nothing the address names is missing: the date is refused
    assert "<nav>" in r.text  # still the dashboard, with its way back
    # The API's answer for the same date: the same status, naming its parameter.
    a = _api(seeded).get("/api/v1/caps", params={"as_of": "1990-01-01"})
    assert a.status_code == 422 and a.json()["detail"].startswith("as_of:"), a.text


def test_the_whatif_page_shows_how_many_reservations_the_caps_count_as_the_api_answers(seeded: str) -> None:
    api = _api(seeded)
    r = api.post("/api/v1/reservations", json={"authorization": "aurora", "count": 5, "chip": "h100-sxm",
                                               "site": "dxb", "planned_for": "2025-06-01"})
    assert r.status_code == 201, r.text
    r = api.post("/api/v1/reservations", json={"authorization": "falcon-ae", "count": 3, "chip": "h100-sxm",
                                               "site": "dxb", "planned_for": "2025-06-01"})
    assert r.status_code == 201, r.text
    answer = api.post("/api/v1/whatif", json={"authorization": "aurora", "n": 1, "chip": "h100-sxm", "site": "dxb",
                                              "as_of": "2025-06-01"}).json()
    assert "reservations_in_caps" in answer, answer
    page = _signed_in(seeded, "planner").post("/whatif", data=WHATIF, headers=ORIGIN)
    assert page.status_code == 200, page.text[:500]
    m = re.search(r'id="whatif-reservations"[^>]*>(.*?)</p>', page.text, re.S)
    assert m is not None, page.text[page.text.find("whatif-result"):][:1500]
    text = re.sub(r"<[^>]+>", "", m.group(1))
    text = re.sub(r"\s+", " ", text)
    assert f"{answer['reservations_counted']} counted" in text, text
    assert f"{answer['reservations_in_caps']} of them in these caps" in text, text
