"""The dashboard's cases page refuses an as-of date before the rules, as every other page does.

``/cases?as_of=1990-01-01`` answered 200 with the cases list, where ``/models``, ``/deadlines`` and the overview
answer 422 naming ``as of (date)``: red flag 28 (15 CFR 732 Supp. 3) took effect on 2025-01-13.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.store import session_scope
from tests.audit.seed import seed_cases


@pytest.fixture()
def client(db_url: str) -> TestClient:
    with session_scope(db_url) as s:
        seed_cases(s)
    return TestClient(create_app(db_url), base_url="https://testserver")


@pytest.mark.parametrize("as_of", ["1990-01-01", "2025-01-12"])
def test_cases_page_before_the_rules_is_refused_naming_the_as_of_date(client: TestClient, as_of: str) -> None:
    r = client.get("/cases", params={"as_of": as_of}, headers={"Accept": "text/html"})
    assert r.status_code == 422, r.text[:500]
    assert "as of (date)" in r.text and f"not in effect on {as_of}" in r.text
    assert "<nav" in r.text  # the page with the navigation, not a bare JSON body
    models = client.get("/models", params={"as_of": as_of}, headers={"Accept": "text/html"})
    assert models.status_code == r.status_code  # the same answer as the other pages


def test_cases_page_on_and_after_the_effective_date_still_lists_the_cases(client: TestClient) -> None:
    for as_of in ("2025-01-13", "2026-01-05", ""):
        r = client.get("/cases", params={"as_of": as_of, "status": ""})
        assert r.status_code == 200, r.text[:500]
