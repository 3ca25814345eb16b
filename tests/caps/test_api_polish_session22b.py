"""JSON API polish: a 422 echoes a long input clipped; the holdings endpoints refuse a date before the rules.

- A 422 in FastAPI's list form echoed the whole offending input (``detail[].input``): a 400-digit number or a
  100 KB string came back verbatim. It is clipped, saying so, with ``loc`` and ``msg`` as they were.
- ``GET /api/v1/holdings``, ``holdings/series`` and ``inventory/installed-base`` answered 200 with nothing for an
  ``as_of`` before the AI Diffusion tiers took effect (2025-01-13), where ``holdings/summary``, ``sites``, ``caps``
  and the dashboard answer a 422 naming ``as_of``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site
from tests.caps.conftest import seed_fleet


@pytest.fixture()
def client(db_url: str) -> Iterator[TestClient]:
    seed_fleet(db_url)
    with session_scope(db_url) as s:  # one holding from before the rules: the answer must not depend on the data
        site = s.exec(select(Site).where(Site.name == "iad")).one()
        owner = s.exec(select(Party).where(Party.name == "Aurora")).one()
        s.add(Holding(source="test", external_id="early", site_id=site.id, accelerator="h100-sxm", count=8,
                         owner_id=owner.id, operator_id=owner.id, first_seen=datetime(2024, 1, 2, tzinfo=UTC)))
    with TestClient(create_app(db_url), base_url="https://testserver") as c:
        yield c


def _errors(r: object) -> list[dict[str, object]]:
    assert r.status_code == 422, r.text[:500]  # type: ignore[attr-defined]
    detail = r.json()["detail"]  # type: ignore[attr-defined]
    assert isinstance(detail, list), detail
    return detail


# ------------------------------------------------------------------------------------------- clipped inputs


def test_a_400_digit_number_is_not_echoed_whole(client: TestClient) -> None:
    r = client.post("/api/v1/parties", content='{"name": "x", "hq": ' + "9" * 400 + "}",
                    headers={"content-type": "application/json"})
    [err] = _errors(r)
    assert err["loc"] == ["body", "hq"] and err["msg"] == "Input should be a valid string"
    assert "9" * 400 not in r.text and len(r.text) < 600
    assert str(err["input"]).startswith("9" * 20) and "clipped" in str(err["input"])
    assert err.get("input_clipped") is True


@pytest.mark.parametrize("body, field", [
    ({"name": "x" * 100_000, "hq": "US"}, "name"),                   # too long a value
    ({"name": "x", "hq": "US", "bogus": "y" * 100_000}, "bogus"),    # an unknown field
    ({"name": "x", "hq": ["US"] * 20_000}, "hq"),                     # a list where text goes
    ({"name": "x", "hq": "US", "namespaces": [1] * 50_000}, "namespaces"),
])
def test_a_long_body_value_is_clipped_naming_the_field(client: TestClient, body: dict[str, object],
                                                       field: str) -> None:
    r = client.post("/api/v1/parties", json=body)
    errors = _errors(r)
    assert len(r.content) < 2_000, len(r.content)
    err = next(e for e in errors if e["loc"][:2] == ["body", field])  # type: ignore[index]
    assert err["msg"] and "clipped" in str(err["input"]) and err["input_clipped"] is True


def test_a_whole_body_of_the_wrong_shape_is_clipped(client: TestClient) -> None:
    r = client.post("/api/v1/parties", json=["a"] * 10_000)
    [err] = _errors(r)
    assert err["loc"] == ["body"] and len(r.content) < 1_000 and "clipped" in str(err["input"])


def test_a_long_query_value_is_clipped(client: TestClient) -> None:
    r = client.get("/api/v1/inventory/holdings", params={"limit": "9" * 400})
    [err] = _errors(r)
    assert err["loc"] == ["query", "limit"] and err["ctx"] == {"le": 1000}
    assert "9" * 400 not in r.text and "clipped" in str(err["input"])


def test_a_short_input_is_echoed_as_sent(client: TestClient) -> None:
    r = client.post("/api/v1/parties", json={"name": "x", "hq": 12, "bogus": {"a": [1, 2]}})
    errors = {tuple(e["loc"]): e for e in _errors(r)}  # type: ignore[arg-type]
    assert errors["body", "hq"]["input"] == 12 and "input_clipped" not in errors["body", "hq"]
    assert errors["body", "bogus"]["input"] == {"a": [1, 2]}
    json.dumps(r.json())  # still JSON


# ------------------------------------------------------------------------------- dates before the rules


HOLDINGS_ENDPOINTS = ["/api/v1/holdings", "/api/v1/holdings/summary", "/api/v1/holdings/series",
                      "/api/v1/inventory/installed-base"]


@pytest.mark.parametrize("as_of", ["1990-01-01", "2024-06-01", "2025-01-12"])
@pytest.mark.parametrize("path", HOLDINGS_ENDPOINTS)
def test_holdings_before_the_rules_are_refused_naming_as_of(client: TestClient, path: str, as_of: str) -> None:
    r = client.get(path, params={"as_of": as_of})
    assert r.status_code == 422, (path, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("as_of:"), detail
    assert f"not in effect on {as_of}" in detail and "--" not in detail


def test_the_series_last_day_before_the_rules_is_refused_naming_to(client: TestClient) -> None:
    r = client.get("/api/v1/holdings/series", params={"to": "2024-12-31"})
    assert r.status_code == 422 and r.json()["detail"].startswith("to:"), r.text


@pytest.mark.parametrize("path", HOLDINGS_ENDPOINTS)
def test_holdings_on_the_effective_date_are_answered(client: TestClient, path: str) -> None:
    r = client.get(path, params={"as_of": "2025-01-13"})
    assert r.status_code == 200, (path, r.text[:300])


def test_a_series_starting_before_the_rules_charts_from_their_effective_date(client: TestClient) -> None:
    r = client.get("/api/v1/holdings/series", params={"from": "2024-01-01", "to": "2025-06-01", "points": 3})
    assert r.status_code == 200, r.text
    assert [p["date"] for p in r.json()["series"]][-1] == "2025-06-01"


# ------------------------------------------------------------------------------------------- content types


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", "", "multipart/form-data"])
def test_a_json_body_sent_as_another_content_type_is_a_415_saying_what_to_send(client: TestClient,
                                                                               ctype: str) -> None:
    # `curl -d '{...}'` without -H sends application/x-www-form-urlencoded: the body was refused as "Input should
    # be a valid dictionary or object to extract fields from", which says nothing of the header.
    r = client.post("/api/v1/parties", content=json.dumps({"name": "Zed", "hq": "SG"}),
                    headers={"content-type": ctype})
    assert r.status_code == 415, r.text
    detail = r.json()["detail"]
    assert detail.startswith("body:") and "Content-Type: application/json" in detail, detail
    assert (ctype or "no Content-Type") in detail
    assert client.get("/api/v1/parties/Zed").status_code == 404  # nothing stored


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                   "application/merge-patch+json"])
def test_a_json_content_type_is_still_read(client: TestClient, ctype: str) -> None:
    r = client.post("/api/v1/parties", content=json.dumps({"name": "Zed", "hq": "SG"}),
                    headers={"content-type": ctype})
    assert r.status_code == 201, r.text


def test_a_json_body_of_the_wrong_shape_stays_a_422(client: TestClient) -> None:
    r = client.post("/api/v1/parties", content=b'"Zed"', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]


def test_the_openapi_document_lists_the_415(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "415" in spec["paths"]["/api/v1/parties"]["post"]["responses"]
    assert "415" not in spec["paths"]["/api/v1/parties"]["get"]["responses"]
