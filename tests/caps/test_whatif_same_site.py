"""A what-if move whose destination is the site it moves from: a typo for another site, refused naming --to."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

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


def test_an_add_or_retire_with_a_destination_is_refused_naming_to(db_url: str) -> None:
    """Only a move has a destination: --to on an add or a retire was most likely meant as a move."""
    from agent import caps as svc
    from agent.packs import registry
    from agent.store import session_scope
    from policies.errors import PolicyError
    from tests.caps.conftest import seed_fleet

    seed_fleet(db_url)
    with session_scope(db_url) as s:
        for op in ("add", "retire"):
            with pytest.raises(PolicyError, match=rf"^--to: only a move has a destination site; {op} changes"):
                svc.whatif(s, registry(), "aurora", op=op, n=1, chip_name="h100", site="iad",  # type: ignore[arg-type]
                           to_site="fra", as_of=date(2025, 6, 1))
        assert svc.whatif(s, registry(), "aurora", op="add", n=1, chip_name="h100", site="iad", to_site=None,
                          as_of=date(2025, 6, 1))["change"]["op"] == "add"


def test_dashboard_planner_switched_from_move_to_add_ignores_its_hidden_destination(db_url: str) -> None:
    """The planner form keeps the (hidden) destination when the operation is switched from move to add: the
    add is planned, not refused for a field the user no longer sees."""
    from agent.auth import create_token
    from agent.store import session_scope

    seed_fleet(db_url)
    with session_scope(db_url) as s:
        _, secret = create_token(s, role="admin", name="planner")
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    assert c.post("/login", data={"token": secret, "next": "/"}).status_code == 303
    form = {"authorization": "aurora", "op": "add", "n": "1", "chip": "h100-sxm", "site": "iad", "to_site": "fra",
            "as_of": "2025-06-01"}
    r = c.post("/whatif", data=form, headers={"Origin": "https://testserver"})
    assert r.status_code == 200 and "only a move has a destination" not in r.text, r.text[-1500:]
