"""HTTP semantics of the API that docs/api.md and RFC 9110 promise: HEAD answers as GET does (without the body)
and under the same roles, a 405's ``Allow`` lists every method the path takes, a trailing slash on a list's
address goes to the list (as every list does, ``/parties/`` and ``/models/`` included), and an empty filter
value means every value (``inventory/holdings?owner=``)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope
from tests.caps.conftest import seed_fleet

pytestmark = pytest.mark.auth


def _token(db_url: str, role: str) -> str:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"w-{role}")
    return secret


@pytest.fixture()
def api(db_url: str) -> TestClient:
    seed_fleet(db_url)
    return TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False,
                      follow_redirects=False)


def _bearer(db_url: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(db_url, role)}"}


def test_head_answers_as_get_without_the_body_and_under_the_same_roles(api: TestClient, db_url: str) -> None:
    viewer = _bearer(db_url, "viewer")
    r = api.head("/healthz")
    assert r.status_code == 200 and r.content == b""
    get = api.get("/api/v1/parties", headers=viewer)
    r = api.head("/api/v1/parties", headers=viewer)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"] == get.headers["content-type"] == "application/json"
    assert r.headers["content-length"] == get.headers["content-length"]
    assert r.headers["cache-control"] == "no-store"
    assert api.head("/api/v1/parties").status_code == 401  # no credential
    assert api.head("/api/v1/tokens", headers=viewer).status_code == 403  # admin only, as GET
    assert api.head("/api/v1/audit/log", headers=viewer).status_code == 403
    assert api.head("/api/v1/parties/Nobody%20Ltd", headers=viewer).status_code == 404
    assert api.head("/api/v1/holdings/summary", headers=viewer, params={"as_of": "2001-01-01"}).status_code == 422
    # A path with no GET stays a 405 naming what it takes.
    r = api.head("/api/v1/whatif", headers=_bearer(db_url, "planner"))
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_a_405_allow_header_lists_every_method_of_the_path(api: TestClient, db_url: str) -> None:
    admin = _bearer(db_url, "admin")
    r = api.delete("/api/v1/parties", headers=admin)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, POST"  # it said "GET": a client read POST as refused
    r = api.options("/api/v1/parties/Aurora", headers=admin)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, PATCH"
    r = api.put("/api/v1/models", headers=admin, json={})
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = api.get("/api/v1/whatif", headers=admin)
    assert r.status_code == 405 and r.headers["allow"] == "POST"


@pytest.mark.parametrize("path", ["/api/v1/parties/", "/api/v1/models/"])
def test_a_trailing_slash_on_a_list_goes_to_the_list_as_on_every_other_list(
    api: TestClient, db_url: str, path: str,
) -> None:
    admin = _bearer(db_url, "admin")
    # /api/v1/sites/ and the others answer 307 to the address without the slash; /parties/ was a 422 ("party:
    # '' is not registered"), /models/ a 404, and a POST to either a 405.
    assert api.get("/api/v1/sites/", headers=admin).status_code == 307
    r = api.get(path, headers=admin, params={"limit": 1})
    assert r.status_code == 307
    assert r.headers["location"] == f"https://testserver{path.rstrip('/')}?limit=1"
    assert api.post(path, headers=admin, json={}).status_code == 307
    assert api.get(path).status_code == 401  # still behind the credential check
    page = api.get(path, headers=admin, params={"limit": 1}, follow_redirects=True)
    assert page.status_code == 200 and page.json()["limit"] == 1


def test_an_empty_owner_or_operator_filter_means_every_holding(api: TestClient, db_url: str) -> None:
    admin = _bearer(db_url, "admin")
    every = api.get("/api/v1/inventory/holdings", headers=admin).json()["total"]
    assert every > 0
    for param in ("owner", "operator"):
        r = api.get("/api/v1/inventory/holdings", headers=admin, params={param: ""})
        assert r.status_code == 200, r.text  # was a 404 "party '' is not registered"
        assert r.json()["total"] == every
        r = api.get("/api/v1/inventory/holdings", headers=admin, params={param: "Nobody Ltd"})
        detail = r.json()["detail"]
        assert detail.startswith(f"{param}: ") and "'Nobody Ltd' is not registered" in detail
        assert "GET /api/v1/parties" in detail  # says where the registered names are


def test_head_on_an_export_download_builds_nothing(db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """HEAD as GET built, signed and audited an export it never sent: a link checker recorded exports."""
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    monkeypatch.setenv("VEU_AUTH", "none")
    c = TestClient(create_app(db_url))
    before = len(c.get("/api/v1/audit/log").json())
    r = c.head("/api/v1/exports/installed-base?from=2025-06-01&to=2025-06-30&format=csv")
    assert r.status_code == 405 and r.headers["allow"] == "GET", r.headers
    assert c.head("/exports/installed-base/download").status_code == 405
    assert len(c.get("/api/v1/audit/log").json()) == before


def test_a_405_from_the_static_mount_keeps_an_allow_that_names_a_method(db_url: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    monkeypatch.setenv("VEU_AUTH", "none")
    r = TestClient(create_app(db_url)).post("/static/app.css")
    assert r.status_code in (404, 405), r.status_code
    if r.status_code == 405:
        assert r.headers.get("allow", "x").strip() != "", r.headers
