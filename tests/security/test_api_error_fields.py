"""API errors speak the API's words: a 4xx names the JSON field or query parameter the client sent (never a CLI
``--option`` or a ``veuctl`` command line), and a clash with a stored record is a 409 naming the record.

Each case posts bad input to one route whose service function's message names a CLI option.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.api.fields import api_detail
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from tests.caps.conftest import seed_fleet


@pytest.fixture()
def client(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VEU_AUTH", "none")
    seed_fleet(db_url)
    with TestClient(create_app(db_url), raise_server_exceptions=False) as c:
        yield c


def _actions(db_url: str) -> int:
    with session_scope(db_url) as s:
        return len(s.exec(select(AuditEntry)).all())


WHATIF = {"authorization": "aurora", "n": 1, "chip": "h100", "site": "dxb", "as_of": "2025-06-01"}
RESERVE = {"authorization": "aurora", "count": 1, "chip": "h100", "site": "dxb", "planned_for": "2025-06-01"}
SHIP = {"date": "2025-06-01", "consignee": "Falcon", "destination": "AE", "chip": "h100", "count": 1, "via": "lpp"}

# (method, path, JSON body or query parameters, status, the field the detail starts with)
CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/api/v1/authorizations", {"name": "n1", "kind": "nveu", "holder": "Falcon"}, 422, "country:"),
    ("POST", "/api/v1/authorizations", {"name": "n2", "kind": "uveu", "holder": "Aurora", "country": "AE"}, 422,
     "country:"),
    ("POST", "/api/v1/authorizations", {"name": "n3", "kind": "uveu", "holder": "Nobody Ltd"}, 422, "holder:"),
    ("POST", "/api/v1/authorizations", {"name": "n4", "kind": "nveu", "holder": "Falcon", "country": "Atlantis"},
     422, "country:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "op": "move"}, 422, "to_site:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "op": "move", "to_site": "nowhere"}, 404, "to_site:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "op": "retire", "n": 100_000}, 422, "n:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "site": "nowhere"}, 404, "site:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "chip": "warp-drive"}, 422, "chip:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "owner": "Nobody Ltd"}, 422, "owner:"),
    ("POST", "/api/v1/whatif", {**WHATIF, "as_of": "2010-01-01"}, 422, "as_of:"),
    ("POST", "/api/v1/reservations", {**RESERVE, "expires_on": "2025-05-01"}, 422, "expires_on:"),
    ("POST", "/api/v1/reservations", {**RESERVE, "count": 1_000}, 409, "count:"),
    ("POST", "/api/v1/reservations", {**RESERVE, "chip": "warp-drive"}, 422, "chip:"),
    ("POST", "/api/v1/reservations", {**RESERVE, "operator": "Nobody Ltd"}, 422, "operator:"),
    ("POST", "/api/v1/reservations", {**RESERVE, "note": "ring \u0007"}, 422, "note:"),
    ("POST", "/api/v1/reservations", {**RESERVE, "note": "nul \u0000"}, 422, "note:"),
    ("POST", "/api/v1/shipments", {**SHIP, "via": "uveu"}, 422, "authorization:"),
    ("POST", "/api/v1/shipments", {**SHIP, "destination": "CN"}, 422, "via:"),
    ("POST", "/api/v1/shipments", {**SHIP, "count": 1.5}, 422, "count:"),
    ("POST", "/api/v1/shipments", {**SHIP, "destination": "Atlantis"}, 422, "destination:"),
    ("POST", "/api/v1/shipments", {**SHIP, "date": "2025-02-30"}, 422, "date:"),
    ("POST", "/api/v1/tokens", {"role": "root"}, 422, "role:"),
    ("POST", "/api/v1/models", {"name": "m1", "owner": "Aurora", "published": False, "published_on": "2025-01-01"},
     422, "published_on:"),
    ("POST", "/api/v1/deadlines/authorizations",
     {"name": "falcon-ae", "granted": "2025-01-01", "locations": ["DE"]}, 422, "locations:"),
    ("POST", "/api/v1/deadlines/authorizations",
     {"name": "aurora", "granted": "2025-01-01", "expires": "2024-01-01"}, 422, "expires:"),
    ("POST", "/api/v1/deadlines/authorizations", {"name": "aurora", "granted": "2999-01-01"}, 422, "granted:"),
    ("POST", "/api/v1/deadlines/events", {"kind": "bogus", "ref": "r", "on": "2025-01-01"}, 422, "kind:"),
    ("POST", "/api/v1/deadlines/events", {"kind": "transfer", "ref": "r", "on": "2025-01-01", "authorization": "aurora",
                                          "from_country": "DE", "to_country": "DE"}, 422, "from_country/to_country:"),
    ("POST", "/api/v1/deadlines/filings", {"key": "no-such-deadline", "filed_on": "2025-01-01"}, 422, "key:"),
    ("POST", "/api/v1/deadlines/filings", {"key": "x", "filed_on": "2999-01-01"}, 422, "filed_on:"),
    ("GET", "/api/v1/deadlines", {"status": "bogus"}, 422, "status:"),
    ("POST", "/api/v1/deadlines/notify?as_of=2999-01-01", {}, 422, "as_of:"),
    ("PUT", "/api/v1/controls/site/iad/7", {"status": "done"}, 422, "status:"),
    ("PUT", "/api/v1/controls/site/iad/20", {"status": "open"}, 422, "paragraph:"),
    ("GET", "/api/v1/controls/region/iad", {}, 422, "scope:"),
    ("POST", "/api/v1/controls/site/iad/7/evidence", {"kind": "attestation"}, 422, "statement/attested_by:"),
    ("POST", "/api/v1/controls/site/iad/7/evidence", {"kind": "video"}, 422, "kind:"),
    ("POST", "/api/v1/controls/site/iad/7/evidence", {"kind": "link", "uri": "javascript:x"}, 422, "uri:"),
    ("POST", "/api/v1/weights/storage", {"model": "m", "site": "iad", "devices": []}, 422, "devices:"),
    ("POST", "/api/v1/weights/storage", {"model": "m", "site": "nowhere", "devices": ["d"]}, 404, "site:"),
    ("POST", "/api/v1/weights/exports", {"model": "m", "recipient": "Falcon", "country": "AE", "on": "2025-06-01",
                                         "model_status": "bogus"}, 422, "model_status:"),
    ("GET", "/api/v1/paths", {"items": "H100", "consignee": "Falcon", "country": "AE"}, 422, "items:"),
    ("GET", "/api/v1/paths", {"items": "H100 x 1", "consignee": "Falcon", "country": "AE", "kind": "gift"}, 422,
     "kind:"),
    # The core names the CLI option (--country, --from, --authorization, --owner): the API names its field.
    ("GET", "/api/v1/paths", {"items": "H100 x 1", "consignee": "Falcon", "country": "ZZ"}, 422, "country:"),
    ("GET", "/api/v1/paths", {"items": "H100 x 1", "consignee": "Nobody Ltd", "country": "AE"}, 422, "consignee:"),
    ("GET", "/api/v1/paths", {"items": "H100 x 1", "consignee": "Falcon", "country": "AE", "operator": "Nobody Ltd"},
     422, "operator:"),
    ("GET", "/api/v1/paths", {"items": "Unobtainium x 5", "consignee": "Falcon", "country": "AE"}, 422, "items:"),
    ("POST", "/api/v1/weights/exports", {"model": "m", "recipient": "Falcon", "country": "ZZ", "on": "2025-06-01"},
     422, "country:"),
    ("POST", "/api/v1/weights/exports", {"model": "m", "recipient": "Nobody Ltd", "country": "AE",
                                         "on": "2025-06-01"}, 422, "recipient:"),
    ("POST", "/api/v1/deadlines/events", {"kind": "transfer", "ref": "r", "on": "2025-01-01", "from_country": "DE",
                                          "to_country": "FR"}, 422, "authorization:"),
    ("POST", "/api/v1/deadlines/events", {"kind": "transfer", "ref": "r", "on": "2025-01-01", "authorization": "aurora",
                                          "from_country": "ZZ", "to_country": "DE"}, 422, "from_country:"),
    ("POST", "/api/v1/deadlines/authorizations", {"name": "aurora", "granted": "2025-01-01", "locations": ["ZZ"]},
     422, "locations:"),
    ("POST", "/api/v1/shipments", {**SHIP, "via": "uveu", "authorization": "nope"}, 404, "authorization:"),
    ("GET", "/api/v1/reservations", {"authorization": "nope"}, 404, "authorization:"),
    ("POST", "/api/v1/models", {"name": "m1", "owner": "Nobody Ltd"}, 422, "owner:"),
    ("POST", "/api/v1/estimate", {"chip": "nochip", "count": 2, "hours": 3}, 422, "chip:"),
    # A filter naming nothing is an error naming the query parameter, not an empty page.
    ("GET", "/api/v1/inventory/holdings", {"source": "bogus"}, 422, "source:"),
    ("GET", "/api/v1/inventory/holdings", {"accelerator": "nochip"}, 422, "accelerator:"),
    ("GET", "/api/v1/inventory/holdings", {"site": "nowhere"}, 404, "site:"),
    ("GET", "/api/v1/inventory/runs", {"source": "bogus"}, 422, "source:"),
    ("GET", "/api/v1/holdings", {"accelerator": "nochip"}, 422, "accelerator:"),
    ("GET", "/api/v1/holdings", {"country": "ZZ"}, 422, "country:"),
    ("GET", "/api/v1/sites", {"country": "ZZ"}, 422, "country:"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), CASES,
                         ids=[f"{c[0]} {c[1]} {c[4]}" for c in CASES])
def test_an_api_error_names_the_json_field_not_the_cli_option(
    client: TestClient, db_url: str, method: str, path: str, body: dict[str, Any], status: int, field: str,
) -> None:
    before = _actions(db_url)
    r = client.get(path, params=body) if method == "GET" else client.request(method, path, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail.startswith(field), detail
    assert "--" not in detail, detail  # neither an option nor a `veuctl ... --flag` hint
    assert _actions(db_url) == before  # nothing was written


def test_a_duplicate_authorization_is_a_409_naming_the_field_and_the_existing_record(
    client: TestClient, db_url: str,
) -> None:
    before = _actions(db_url)
    r = client.post("/api/v1/authorizations", json={"name": "aurora", "kind": "uveu", "holder": "Aurora"})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail.startswith("name:") and "'aurora' already exists" in detail
    assert "UVEU held by Aurora" in detail  # the record it clashes with
    # Whatever else the body says (another kind, another holder): the name is taken, a conflict first.
    r = client.post("/api/v1/authorizations", json={"name": "aurora", "kind": "nveu", "holder": "Falcon",
                                                    "country": "AE"})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    # Another name with the same licence-cap provision id clashes with the stored one too.
    r = client.post("/api/v1/authorizations", json={"name": "Falcon AE", "kind": "nveu", "holder": "Falcon",
                                                    "country": "AE"})
    assert r.status_code == 409 and "'falcon-ae'" in r.json()["detail"] and "NVEU for AE" in r.json()["detail"]
    # Malformed input stays a 422.
    r = client.post("/api/v1/authorizations", json={"name": "x", "kind": "other", "holder": "Aurora"})
    assert r.status_code == 422
    assert _actions(db_url) == before
    assert len(client.get("/api/v1/authorizations").json()["items"]) == 2


def test_releasing_a_closed_reservation_and_filing_twice_are_conflicts(client: TestClient) -> None:
    r = client.post("/api/v1/reservations", json=RESERVE)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    assert client.post(f"/api/v1/reservations/{rid}/release").status_code == 200
    for action in ("release", "installed"):
        r = client.post(f"/api/v1/reservations/{rid}/{action}")
        assert r.status_code == 409, r.text
        assert r.json()["detail"].startswith("reservation:") and "already released" in r.json()["detail"]
    # A reservation that does not exist stays a 404, in the API's words.
    r = client.post("/api/v1/reservations/99999/release")
    assert r.status_code == 404 and "veuctl" not in r.json()["detail"] and "GET /api/v1/reservations" in r.text


def test_a_deadline_filed_twice_is_a_409_naming_the_filing(client: TestClient) -> None:
    assert client.post("/api/v1/deadlines/authorizations",
                       json={"name": "aurora", "granted": "2025-01-01"}).status_code == 201
    key = client.get("/api/v1/deadlines", params={"as_of": "2025-12-31"}).json()[0]["key"]
    filing = {"key": key, "filed_on": "2025-07-01", "reference": "BIS-123"}
    assert client.post("/api/v1/deadlines/filings?as_of=2025-12-31", json=filing).status_code == 201
    r = client.post("/api/v1/deadlines/filings?as_of=2025-12-31", json={**filing, "reference": "again"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"].startswith("key:") and "2025-07-01" in r.json()["detail"] and "BIS-123" in r.text


def test_a_deadlines_authorization_disagreeing_with_the_registered_one_is_a_409(client: TestClient) -> None:
    r = client.post("/api/v1/deadlines/authorizations", json={"name": "aurora", "granted": "2025-01-01",
                                                              "kind": "nveu"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"].startswith("kind:") and "'uveu'" in r.json()["detail"]


@pytest.mark.parametrize(("message", "renames", "expected"), [
    ("--hq: 'ZZ' is not a country", {}, "hq: 'ZZ' is not a country"),
    ("--value-usd: -1 is negative", {}, "value_usd: -1 is negative"),
    ("--add: 5 is too many", {"add": "n"}, "n: 5 is too many"),
    ("--namespace: a is registered to B; pass --reassign to move it", {"namespace": "namespaces"},
     'namespaces: a is registered to B; set "reassign": true to move it'),
    ("party: 'X' is not registered; add it with `veuctl parties add X --hq CC`", {},
     "party: 'X' is not registered; add it with POST /api/v1/parties"),
    ("site: 'q' is not registered; add it with `veuctl sites add q --country CC`", {},
     "site: 'q' is not registered; add it with `veuctl sites add`"),
    # A multi-word name in a suggested command is shell-quoted (cli_word): still one command to translate.
    ("--holder: 'A B' is not registered; add it with `veuctl parties add 'A B' --hq CC`", {},
     "holder: 'A B' is not registered; add it with POST /api/v1/parties"),
    ("--to: 'new dc' is not a registered site; add it with `veuctl sites add 'new dc' --country CC`", {"to": "to_site"},
     "to_site: 'new dc' is not a registered site; add it with `veuctl sites add`"),
    ("KEY: 'x' is already filed", {"KEY": "key"}, "key: 'x' is already filed"),
    ("kind: '--weird' is not a kind", {}, "kind: '--weird' is not a kind"),  # the client's own value, as sent
    ("from: 2025-01-02 is after 2025-01-01", {}, "from: 2025-01-02 is after 2025-01-01"),
])
def test_api_detail_translates_options_flags_and_commands(message: str, renames: dict[str, str],
                                                          expected: str) -> None:
    assert api_detail(message, renames) == expected
