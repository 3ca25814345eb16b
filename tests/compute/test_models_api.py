"""/api/v1/models and /api/v1/estimate over HTTP: create, add runs, read status, paginate, errors."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.auth import create_token
from agent.parties import add_party
from agent.store import session_scope


@pytest.fixture()
def client(db_url: str) -> TestClient:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        add_party(s, "Zeta", "CN")
        _, secret = create_token(s, role="admin", name="models-test")
    c = TestClient(create_app(db_url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    return c


def test_estimate_endpoint_returns_operations_band_and_method(client: TestClient) -> None:
    r = client.post("/api/v1/estimate", json={"params": 6.71e11, "active_params": "3.7e10", "tokens": 1.48e13})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["operations"] == pytest.approx(6 * 3.7e10 * 1.48e13) and body["method"] == "declared-6nd"
    r = client.post("/api/v1/estimate", json={"chip": "NVIDIA H100 SXM5 80GB", "count": 64, "hours": 24})
    assert r.json()["upper_bound"] == pytest.approx(64 * 24 * 3600 * 989.4e12)


def test_a_fractional_chip_count_is_a_422_in_the_api_as_in_the_cli(client: TestClient) -> None:
    r = client.post("/api/v1/estimate", json={"chip": "NVIDIA H100 SXM5 80GB", "count": 1.5, "hours": 24})
    assert r.status_code == 422 and "count" in r.json()["detail"] and "whole" in r.json()["detail"]


def test_mixture_of_experts_without_active_parameters_is_a_422(client: TestClient) -> None:
    r = client.post("/api/v1/estimate", json={"params": 6.71e11, "tokens": 1.48e13, "moe": True})
    assert r.status_code == 422 and "active-params" in r.json()["detail"]


def test_models_create_add_run_get_and_list(client: TestClient) -> None:
    assert client.post("/api/v1/models", json={"name": "gen", "owner": "Acme"}).status_code == 201
    r = client.post("/api/v1/models/gen/runs", json={"operations": "1.2e26", "start": "2026-01-01", "job": "a/Job/b"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "4E091" and r.json()["estimate"]["operations"] == 1.2e26
    client.post("/api/v1/models", json={"name": "org/small", "owner": "Zeta"})
    client.post("/api/v1/models/org/small/runs", json={"params": 7e9, "tokens": 2e12})
    got = client.get("/api/v1/models/org/small", params={"as_of": "2026-06-01"})
    assert got.status_code == 200 and got.json()["status"] == "below-threshold"
    assert got.json()["cumulative_operations"] == pytest.approx(8.4e22)
    page = client.get("/api/v1/models", params={"limit": 1, "offset": 1})
    assert page.json()["total"] == 2 and [m["name"] for m in page.json()["items"]] == ["org/small"]
    eu = client.get("/api/v1/models/gen", params={"regime": "eu-ai-act-gpai-systemic-risk"})
    assert eu.json()["status"] == "gpai-systemic-risk"


def test_synthetic_inputs_and_determinations_through_the_api(client: TestClient) -> None:
    client.post("/api/v1/models", json={"name": "gen", "owner": "Acme"})
    client.post("/api/v1/models/gen/runs", json={"operations": 5e25})
    client.post("/api/v1/models", json={"name": "m", "owner": "Zeta"})
    client.post("/api/v1/models/m/runs", json={"operations": 6e25})
    r = client.post("/api/v1/models/m/synthetic", json={"generator": "gen", "fraction": 0.2,
                                                        "generation_operations": 1e24})
    assert r.status_code == 201 and r.json()["cumulative_operations"] == pytest.approx(1.11e26)
    r = client.post("/api/v1/models/m/determinations",
                    json={"less_capable": True, "by": "BIS", "basis": "classification G-1"})
    assert r.status_code == 201 and r.json()["status"] == "excluded:less-capable-than-published"


def test_unknown_model_is_404_and_bad_references_are_422(client: TestClient) -> None:
    assert client.get("/api/v1/models/ghost").status_code == 404
    assert client.post("/api/v1/models/ghost/runs", json={"operations": 1e20}).status_code == 404
    r = client.post("/api/v1/models", json={"name": "x", "owner": "Acme", "base": "ghost"})
    assert r.status_code == 422 and "ghost" in r.json()["detail"]
    r = client.post("/api/v1/models", json={"name": "x", "owner": "Acme"})
    r = client.post("/api/v1/models/x/runs", json={"operations": "many"})
    assert r.status_code == 422 and "operations" in r.json()["detail"]
    assert client.get("/api/v1/models/x", params={"as_of": "yesterday"}).status_code == 422


@pytest.mark.parametrize("path,body,field", [
    ("/api/v1/models/x/runs", {"operations": True}, "operations"),
    ("/api/v1/models/x/runs", {"chip": "NVIDIA H100 SXM5 80GB", "count": True, "hours": 24}, "count"),
    ("/api/v1/models/x/synthetic", {"generator": "x", "fraction": True, "generation_operations": 0}, "fraction"),
])
def test_json_true_is_not_a_number_of_operations_chips_or_a_synthetic_fraction(
    client: TestClient, path: str, body: dict[str, object], field: str,
) -> None:
    # true read as 1.0 recorded a run of 1 operation, one chip, or "100% of operations" of synthetic data.
    client.post("/api/v1/models", json={"name": "x", "owner": "Acme"})
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert field in str(r.json()["detail"])
    shown = client.get("/api/v1/models/x").json()
    assert shown["runs"] == [] and shown["synthetic_inputs"] == []


def test_note_2_pre_training_from_before_the_estimation_defaults_is_recorded_with_its_date(
    client: TestClient,
) -> None:
    # 'Operations' are pre-training and any subsequent training (regulation.md §8), whenever they ran: a
    # 2019 pre-training run (T5-11B, notable_models.csv) must be recordable with its date.
    client.post("/api/v1/models", json={"name": "t5", "owner": "Acme"})
    r = client.post("/api/v1/models/t5/runs", json={"params": 1.1e10, "tokens": 1e12, "start": "2019-06-01"})
    assert r.status_code == 201, r.text
    assert r.json()["runs"][0]["start"] == "2019-06-01"
    assert r.json()["cumulative_operations"] == pytest.approx(6.6e22)
