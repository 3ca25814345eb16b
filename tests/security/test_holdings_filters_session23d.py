"""A party filter on the inventory's holdings answers as every other filter naming a party (session 23).

``GET /api/v1/inventory/holdings?owner=Nobody`` was a 404, where ``shipments?consignee=Nobody`` and a what-if's
``owner`` are a 422 naming the field: the query did reach a list that exists, only one of its parameters named
nothing. A registered party that owns nothing is an empty page (200): the answer "holds no chips" is true there.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.store import session_scope
from tests.caps.conftest import seed_fleet

pytestmark = pytest.mark.auth


@pytest.fixture()
def api(db_url: str) -> TestClient:
    seed_fleet(db_url)
    return TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False)


@pytest.fixture()
def viewer(db_url: str, api: TestClient) -> dict[str, str]:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role="viewer", name="w-viewer")
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.parametrize("param", ["owner", "operator"])
def test_a_registered_party_holding_nothing_is_an_empty_list_not_an_error(
    api: TestClient, viewer: dict[str, str], param: str,
) -> None:
    r = api.get("/api/v1/inventory/holdings", headers=viewer, params={param: "Lumen"})  # registered, owns nothing
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and r.json()["total"] == 0 and r.json()["next_offset"] is None


@pytest.mark.parametrize("param", ["owner", "operator"])
def test_a_party_filter_naming_no_registered_party_is_a_422_on_that_parameter_as_consignee_is(
    api: TestClient, viewer: dict[str, str], param: str,
) -> None:
    shipments = api.get("/api/v1/shipments", headers=viewer, params={"consignee": "Nobody Ltd"})
    assert shipments.status_code == 422  # the convention (docs/api.md, Errors) this filter now follows
    r = api.get("/api/v1/inventory/holdings", headers=viewer, params={param: "Nobody Ltd"})
    assert r.status_code == 422, r.text  # was a 404: the list exists, one of its filters named nothing
    detail = r.json()["detail"]
    assert detail.startswith(f"{param}: ") and "'Nobody Ltd' is not registered" in detail
    assert "GET /api/v1/parties" in detail and f"leave {param} empty" in detail
