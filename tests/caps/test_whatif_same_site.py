"""A what-if move whose destination is the site it moves from: a typo for another site, refused naming --to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from tests.caps.conftest import seed_fleet
from tests.caps.test_caps_bad_input import WHATIF, refused, written
from tests.caps.test_caps_store import veuctl


def test_cli_whatif_move_to_the_same_site_is_refused_naming_to(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)  # Aurora owns and operates 900 H100 at iad
    before = written(db_url)
    err = refused([*WHATIF, "--move", "5", "--site", "iad", "--to", "iad"], "--to", capsys, monkeypatch)
    assert "'iad' is the site the chips are moved from" in err and "different destination" in err
    # Refused even for zero chips and for more chips than are held there: the destination is wrong either way,
    # and it is the first thing to fix (the count is checked once the move names two sites).
    refused([*WHATIF, "--move", "0", "--site", "iad", "--to", "iad"], "--to", capsys, monkeypatch)
    refused([*WHATIF, "--move", "901", "--site", "iad", "--to", "iad"], "--to", capsys, monkeypatch)
    assert written(db_url) == before
    # A move to another site is still planned.
    rc, data, _ = veuctl([*WHATIF, "--move", "5", "--site", "iad", "--to", "fra", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["change"]["to_site"] == "fra"


@pytest.fixture()
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VEU_AUTH", "none")
    seed_fleet(db_url)
    with TestClient(create_app(db_url)) as c:
        yield c


def test_api_whatif_move_to_the_same_site_is_a_422_naming_to_site(client: TestClient) -> None:
    body = {"authorization": "aurora", "op": "move", "n": 5, "chip": "h100", "site": "iad", "to_site": "iad",
            "as_of": "2025-06-01"}
    r = client.post("/api/v1/whatif", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("to_site: 'iad' is the site the chips are moved from (site)"), detail
    assert "--" not in detail  # the API's field names, not the CLI's options
    r = client.post("/api/v1/whatif", json={**body, "to_site": "fra"})
    assert r.status_code == 200 and r.json()["change"]["to_site"] == "fra"
