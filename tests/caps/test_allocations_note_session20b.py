"""`GET /api/v1/caps/allocations`, `GET /api/v1/caps` and the dashboard's overview answer the allocations as
`veuctl caps show` does (agent.caps.allocations_report): with no figure on the date, a ``note`` says why."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from tests.caps.conftest import seed_fleet

AS_OF = "2025-06-01"


@pytest.fixture()
def client(db_url: str) -> Iterator[TestClient]:
    seed_fleet(db_url)
    with TestClient(create_app(db_url)) as c:
        yield c


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> dict:  # type: ignore[type-arg]
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["veuctl", *args])
    assert run_app(app) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_the_api_answers_the_allocations_as_the_cli_does_with_the_note(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli = _cli(monkeypatch, capsys, "caps", "show", "--as-of", AS_OF, "--json")
    assert cli["caps"] == [] and "shipments ledger" in cli["note"]
    r = client.get("/api/v1/caps/allocations", params={"as_of": AS_OF})
    assert r.status_code == 200
    assert r.json() == cli
    overview = client.get("/api/v1/caps", params={"as_of": AS_OF}).json()
    assert overview["allocations"]["note"] == cli["note"]


def test_the_dashboard_overview_shows_why_there_is_no_allocation_figure(
        client: TestClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import html

    note = _cli(monkeypatch, capsys, "caps", "show", "--as-of", AS_OF, "--json")["note"]
    page = client.get("/", params={"as_of": AS_OF})
    assert page.status_code == 200
    assert note[0].upper() + note[1:] in html.unescape(page.text)
