"""The /api/v1 fleet endpoints, OpenAPI, Prometheus gauges and the server-rendered dashboard pages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from agent import caps as caps_svc
from agent.api.app import create_app
from tests.caps.conftest import seed_fleet


@pytest.fixture()
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VEU_AUTH", "none")
    seed_fleet(db_url)
    with TestClient(create_app(db_url)) as c:
        yield c


def test_api_caps_whatif_and_reservations(client: TestClient) -> None:
    caps = client.get("/api/v1/caps/aurora", params={"as_of": "2025-06-01"}).json()
    ae = next(c for c in caps["caps"] if c["id"] == "uveu.single_country.AE.owned")
    assert ae["value"] == pytest.approx(0.03) and ae["ok"]
    r = client.post("/api/v1/whatif", json={"authorization": "aurora", "n": 50, "chip": "h100", "site": "dxb",
                                            "as_of": "2025-06-01"})
    assert r.status_code == 200 and r.json()["max_fit"] == 43 and not r.json()["ok"]
    r = client.post("/api/v1/reservations", json={"authorization": "aurora", "count": 44, "chip": "h100",
                                                  "site": "dxb", "planned_for": "2025-06-01"})
    assert r.status_code == 409 and "uveu.single_country.AE.owned" in r.json()["detail"]
    r = client.post("/api/v1/reservations", json={"authorization": "aurora", "count": 43, "chip": "h100",
                                                  "site": "dxb", "planned_for": "2025-06-01"})
    assert r.status_code == 201
    rid = r.json()["id"]
    assert client.get("/api/v1/reservations").json()["total"] == 1
    assert client.post(f"/api/v1/reservations/{rid}/release").json()["status"] == "released"
    # A reservation can expire: it holds the headroom until that date, not on or after it. (Reserved before it
    # expires, as an expiry already passed is refused; read from today, after it.)
    with pytest.MonkeyPatch.context() as then:
        then.setattr(caps_svc, "utcnow", lambda: datetime(2025, 5, 1, 12, tzinfo=UTC))
        r = client.post("/api/v1/reservations", json={"authorization": "aurora", "count": 43, "chip": "h100",
                                                      "site": "dxb", "planned_for": "2025-06-01",
                                                      "expires_on": "2025-07-01"})
    assert r.status_code == 201 and r.json()["expires_on"] == "2025-07-01"
    later = client.post("/api/v1/whatif", json={"authorization": "aurora", "n": 43, "chip": "h100", "site": "dxb",
                                                "as_of": "2025-07-01"}).json()
    assert later["ok"] and later["max_fit"] == 43
    r = client.post("/api/v1/reservations", json={"authorization": "aurora", "count": 1, "chip": "h100",
                                                  "site": "dxb", "planned_for": "2025-06-01",
                                                  "expires_on": "2025-06-31"})
    assert r.status_code == 422 and "expires_on" in r.json()["detail"]


def test_api_unknown_names_are_404_and_bad_input_is_422(client: TestClient) -> None:
    assert client.get("/api/v1/caps/nope").status_code == 404
    r = client.post("/api/v1/whatif", json={"authorization": "aurora", "n": 1, "chip": "warp-drive", "site": "dxb"})
    assert r.status_code == 422 and "warp-drive" in r.json()["detail"]
    assert client.get("/api/v1/caps/aurora", params={"as_of": "2025-13-01"}).status_code == 422


def test_api_lists_are_paginated_and_filtered(client: TestClient) -> None:
    page = client.get("/api/v1/sites", params={"tier": 2, "limit": 1, "as_of": "2025-06-01"}).json()
    assert page["total"] == 2 and len(page["items"]) == 1 and page["items"][0]["tier"] == 2
    hold = client.get("/api/v1/holdings", params={"country": "AE", "as_of": "2025-06-01"}).json()
    assert hold["total"] == 2 and {h["owner"] for h in hold["items"]} == {"Aurora EU", "Falcon"}
    parties = client.get("/api/v1/parties", params={"q": "aurora"}).json()
    assert [p["name"] for p in parties["items"]] == ["Aurora", "Aurora EU"]


def test_every_cap_figure_is_explained_down_to_the_holdings(client: TestClient) -> None:
    d = client.get("/api/v1/caps/aurora/explain/uveu.single_country.AE.owned", params={"as_of": "2025-06-01"}).json()
    assert d["holdings"]["total"] == 1 and d["holdings"]["items"][0]["count"] == 30
    assert d["explanation"]["provisions"][0]["citation"].startswith("15 CFR 748 Supp. 10")
    url = "/api/v1/caps/aurora/explain/uveu.outside_us.owned"
    num = client.get(url, params={"as_of": "2025-06-01"}).json()["holdings"]
    assert sum(h["tpp"] for h in num["items"]) == 100 * 15832  # the UAE and German holdings
    every = client.get(url, params={"as_of": "2025-06-01", "part": "all"}).json()["holdings"]
    assert every["total"] == 3


def test_openapi_and_prometheus_gauges_are_published(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/whatif", "/api/v1/caps/{name}", "/api/v1/reservations", "/api/v1/shipments"} <= set(paths)
    text = client.get("/metrics").text
    assert 'veu_holdings_tpp{country="AE",tier="2"}' in text
    assert 'veu_cap_utilisation{authorization="aurora",binding="true",cap="uveu.outside_us.owned"}' in text


def test_dashboard_pages_render_and_flag_unconfirmed_values(client: TestClient) -> None:
    for path in ("/", "/countries", "/sites", "/sites/dxb", "/whatif", "/cases", "/models", "/shipments",
                 "/explain/aurora/uveu.outside_us.owned"):
        r = client.get(path, params={"as_of": "2025-06-01"})
        assert r.status_code == 200, path
    home = client.get("/", params={"as_of": "2025-06-01"}).text
    assert "UNCONFIRMED" in home and "not enforced" in home and "/explain/aurora/uveu.outside_us.owned" in home
    r = client.post("/whatif", data={"authorization": "aurora", "op": "add", "n": "50", "chip": "h100-sxm",
                                     "site": "dxb", "as_of": "2025-06-01"})
    assert r.status_code == 200 and 'id="max-fit">43<' in r.text


def test_nveu_explanation_lists_only_what_the_holder_owns_or_operates_in_its_country(client: TestClient) -> None:
    d = client.get("/api/v1/caps/falcon-ae/explain/nveu.installed_base.AE", params={"as_of": "2025-06-01"}).json()
    assert d["value"] == 100 * 15832 and d["holdings"]["total"] == 1
    assert d["holdings"]["items"][0]["owner"] == "Falcon"
