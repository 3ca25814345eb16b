"""§ 748.15(f)(1)(i): a Data Center VEU's semi-annual report gives, per export, reexport or transfer, the name
and address of the end user (A) and the value of the items (D). ``veuctl parties add --address`` and
``veuctl shipments add --value-usd`` (and the API) record them; bad input is refused naming the field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.api.app import create_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.caps import Shipment
from agent.store.tables.core import Party
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet
from tests.caps.test_caps_bad_input import refused, written
from tests.caps.test_caps_store import veuctl

ADDRESS = "Level 12, 1 Marina Boulevard, 018989 Singapore"
SHIP = ["shipments", "add", "--date", "2025-06-01", "--consignee", "Lumen", "--destination", "SG", "--chip",
        "h100", "--count", "8", "--via", "licence"]


def test_semiannual_report_end_user_address_is_recorded_and_kept_by_an_update_that_leaves_it_out(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rc, data, err = veuctl(["parties", "add", "Lumen", "--hq", "SG", "--address", f"  {ADDRESS} ", "--json"],
                           capsys, monkeypatch)
    assert rc == 0, err
    assert data["address"] == ADDRESS  # stripped
    # An update that leaves --address out keeps it (as it keeps the parent) ...
    rc, data, err = veuctl(["parties", "add", "Lumen", "--hq", "SG", "--namespace", "lumen", "--json"],
                           capsys, monkeypatch)
    assert rc == 0, err
    assert data["address"] == ADDRESS and data["namespaces"] == ["lumen"]
    rc, data, _ = veuctl(["parties", "show", "Lumen", "--json"], capsys, monkeypatch)
    assert data["address"] == ADDRESS
    rc, data, _ = veuctl(["parties", "list", "--json"], capsys, monkeypatch)
    assert [p["address"] for p in data] == [ADDRESS]
    # ... one that gives it replaces it, and --address '' clears it.
    rc, data, _ = veuctl(["parties", "add", "Lumen", "--hq", "SG", "--address", "2 Science Park Dr", "--json"],
                         capsys, monkeypatch)
    assert rc == 0 and data["address"] == "2 Science Park Dr"
    rc, data, _ = veuctl(["parties", "add", "Lumen", "--hq", "SG", "--address", "", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["address"] == ""
    with session_scope(db_url) as s:
        entries = s.exec(select(AuditEntry).where(AuditEntry.subject == "party:Lumen")
                         .order_by(AuditEntry.seq)).all()  # type: ignore[arg-type]
        assert [e.action for e in entries][:2] == ["party.create", "party.update"]
        assert ADDRESS in entries[0].payload


@pytest.mark.parametrize(("address", "says"), [
    ("x" * 501, "at most 500"),
    ("Hub71\nAbu Dhabi", "U+000A"),
    ("Hub71\x00", "U+0000"),
    ("Hub71 \u202eibahD ubA", "U+202E"),  # a bidirectional override hides what the text says
    ("Hub71\u2028Abu Dhabi", "U+2028"),
])
def test_semiannual_report_end_user_address_bad_input_is_refused_naming_the_option(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, address: str, says: str,
) -> None:
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=f"^--address: .*{re.escape(says)}"):
        party_svc.add_party(s, "Gulf AI", "AE", address=address)
    if "\x00" not in address:  # the OS refuses NUL in an argument before veuctl sees it
        err = refused(["parties", "add", "Gulf AI", "--hq", "AE", "--address", address], "--address", capsys,
                      monkeypatch)
        assert says in err
    with session_scope(db_url) as s:
        assert s.exec(select(Party)).all() == []  # nothing was written


def test_semiannual_report_shipment_value_is_recorded_and_shown(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    rc, _, err = veuctl(["parties", "add", "Lumen", "--hq", "SG", "--address", ADDRESS], capsys, monkeypatch)
    assert rc == 0, err
    rc, data, err = veuctl([*SHIP, "--value-usd", "250000.50", "--json"], capsys, monkeypatch)
    assert rc == 0, err
    assert data["value_usd"] == 250000.5 and data["consignee_address"] == ADDRESS
    rc, data, err = veuctl([*SHIP, "--value-usd", "0", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["value_usd"] == 0.0  # a gift is worth 0, which is not "not recorded"
    rc, data, err = veuctl([*SHIP, "--json"], capsys, monkeypatch)
    assert rc == 0 and data["value_usd"] is None
    rc, data, _ = veuctl(["shipments", "list", "--json"], capsys, monkeypatch)
    assert sorted((r["value_usd"] is None, r["value_usd"] or 0) for r in data) == [
        (False, 0.0), (False, 250000.5), (True, 0)]
    with session_scope(db_url) as s:
        payloads = [json.loads(e.payload)
                    for e in s.exec(select(AuditEntry).where(AuditEntry.action == "shipment.create"))]
        assert 250000.5 in [p.get("value_usd") for p in payloads]


@pytest.mark.parametrize(("value", "says"), [
    ("-1", "negative"), ("nan", "finite"), ("inf", "finite"), ("1e14", "at most 10,000,000,000,000"),
])
def test_semiannual_report_shipment_value_bad_input_is_refused_naming_the_option(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str, says: str,
) -> None:
    seed_fleet(db_url)
    before = written(db_url)
    err = refused([*SHIP, "--value-usd", value], "--value-usd", capsys, monkeypatch)
    assert says in err
    assert written(db_url) == before
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"^--value-usd: "):
        svc.add_shipment(s, registry(), day="2025-06-01", consignee="Lumen", destination="SG", chip_name="h100",
                         count=1, via="licence", value_usd=True)


@pytest.fixture()
def client(db_url: str) -> Iterator[TestClient]:
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        party_svc.add_party(s, "Lumen", "SG", address=ADDRESS)
    with TestClient(create_app(db_url)) as c:
        yield c


def test_semiannual_report_fields_round_trip_through_the_api(client: TestClient, db_url: str) -> None:
    body = {"date": "2025-06-01", "consignee": "Lumen", "destination": "SG", "chip": "h100", "count": 8,
            "via": "licence"}
    r = client.post("/api/v1/shipments", json={**body, "value_usd": 1750000})
    assert r.status_code == 201, r.text
    assert r.json()["value_usd"] == 1750000 and r.json()["consignee_address"] == ADDRESS
    r = client.post("/api/v1/shipments", json=body)
    assert r.status_code == 201 and r.json()["value_usd"] is None
    items = client.get("/api/v1/shipments", params={"consignee": "Lumen"}).json()["items"]
    assert sorted((x["value_usd"] or 0) for x in items) == [0, 1750000]
    assert {x["consignee_address"] for x in items} == {ADDRESS}
    parties = {p["name"]: p for p in client.get("/api/v1/parties").json()["items"]}
    assert parties["Lumen"]["address"] == ADDRESS and parties["Aurora"]["address"] == ""
    with session_scope(db_url) as s:
        n = len(s.exec(select(Shipment)).all())
    for bad in (-1, 1e14, "a lot", True, "NaN"):
        r = client.post("/api/v1/shipments", json={**body, "value_usd": bad})
        assert r.status_code == 422, (bad, r.text)
        assert any(e["loc"][-1] == "value_usd" for e in r.json()["detail"]), r.text
    with session_scope(db_url) as s:
        assert len(s.exec(select(Shipment)).all()) == n  # nothing was written
