"""A dashboard page's ``offset`` is bounded above as the API's is (agent.api.fields.MAX_OFFSET): past it the page
answers 422 naming the offset (a page in the dashboard's layout), not a 200 with an empty list that reads as "no
holdings" or "no shipments". A negative offset stays the first page (docs/api.md, Dashboard paging)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.api.fields import MAX_OFFSET
from tests.caps.conftest import seed_fleet

AS_OF = "2025-06-01"
# Every dashboard page that takes an offset (the pager's previous/next links).
PAGES = ("/sites/iad", "/explain/aurora/uveu.outside_us.owned", "/shipments", "/models")


@pytest.fixture()
def client(db_url: str) -> Iterator[TestClient]:
    seed_fleet(db_url)
    with TestClient(create_app(db_url)) as c:
        yield c


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("offset", ["99999999999999999999", str(MAX_OFFSET + 1)])
def test_an_offset_the_api_refuses_is_refused_by_the_page_naming_it(
        client: TestClient, path: str, offset: str) -> None:
    api = client.get("/api/v1/holdings", params={"offset": offset})
    assert api.status_code == 422 and "offset" in api.text
    r = client.get(path, params={"as_of": AS_OF, "offset": offset})
    assert r.status_code == 422, (path, offset, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("text/html")
    assert "offset:" in r.text and "previous/next" in r.text and 'href="/' in r.text, r.text[:800]


@pytest.mark.parametrize("path", PAGES)
def test_an_offset_in_range_still_shows_the_page(client: TestClient, path: str) -> None:
    for offset in ("-1", "-99999999999999999999", "0", "200", str(MAX_OFFSET)):
        r = client.get(path, params={"as_of": AS_OF, "offset": offset})
        assert r.status_code == 200, (path, offset, r.status_code, r.text[:300])
