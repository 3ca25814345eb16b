"""Registering and changing parties over HTTP: admin only, the CLI's checks, field-named errors, audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.audit import verify_chain
from agent.auth import create_token
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Party

pytestmark = pytest.mark.auth


def _token(db_url: str, role: str) -> str:
    with session_scope(db_url) as s:
        _, secret = create_token(s, role=role, name=f"qa-{role}")
    return secret


@pytest.fixture()
def api(db_url: str) -> TestClient:
    with session_scope(db_url) as s:
        add_party(s, "Aurora Compute Inc.", "US", namespaces=["aurora"])
    c = TestClient(create_app(db_url), base_url="https://testserver", raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {_token(db_url, 'admin')}"
    return c


def _audit(db_url: str, action: str) -> list[AuditEntry]:
    with session_scope(db_url) as s:
        return list(s.exec(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)).all())


def test_an_admin_registers_a_party_with_parent_namespaces_and_address(api: TestClient, db_url: str) -> None:
    body = {"name": "Lumen Analytics Pte", "hq": "SG", "parent": "Aurora Compute Inc.",
            "namespaces": ["lumen"], "address": "1 Example Road, 048583 Singapore"}
    r = api.post("/api/v1/parties", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["name"], out["hq"], out["parent"], out["ultimate_parent"]) == (
        "Lumen Analytics Pte", "SG", "Aurora Compute Inc.", "Aurora Compute Inc.")
    assert out["effective_tier"] == 2 and out["namespaces"] == ["lumen"] and out["address"] == body["address"]
    # The same audit entry as `veuctl parties add`, under the caller's identity.
    entry = _audit(db_url, "party.create")[-1]
    assert entry.subject == "party:Lumen Analytics Pte" and entry.actor == "token:qa-admin"
    assert json.loads(entry.payload)["namespaces"] == ["lumen"]
    assert api.get("/api/v1/parties/Lumen Analytics Pte").json()["id"] == out["id"]
    with session_scope(db_url) as s:
        assert verify_chain(s).ok


def test_registering_parties_needs_the_admin_role(api: TestClient, db_url: str) -> None:
    for role in ("viewer", "planner", "compliance", "auditor"):
        h = {"Authorization": f"Bearer {_token(db_url, role)}"}
        assert api.post("/api/v1/parties", json={"name": "Rogue", "hq": "US"}, headers=h).status_code == 403, role
        r = api.patch("/api/v1/parties/Aurora Compute Inc.", json={"hq": "CN"}, headers=h)
        assert r.status_code == 403, role
        assert api.get("/api/v1/parties/Aurora Compute Inc.", headers=h).status_code == 200, role
    with session_scope(db_url) as s:
        assert [p.name for p in s.exec(select(Party)).all()] == ["Aurora Compute Inc."]


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "X", "hq": "ZZ"}, "hq:"),
    ({"name": "X", "hq": "DE", "parent": "Nobody Ltd"}, "parent:"),
    ({"name": "X", "hq": "DE", "namespaces": ["Not A Namespace"]}, "namespaces:"),
    ({"name": "X", "hq": "DE", "address": "line 1\nline 2"}, "address:"),
    ({"name": "X", "hq": "DE", "address": "a" * 501}, "address:"),
    ({"name": "Evil\u202eCo", "hq": "DE"}, "name:"),
    ({"name": "   ", "hq": "DE"}, "name:"),
], ids=["unknown-country", "unknown-parent", "bad-namespace", "multi-line-address",
        "long-address", "bidi-override", "blank-name"])
def test_a_bad_party_is_a_422_naming_the_field_and_stores_nothing(
    api: TestClient, db_url: str, body: dict[str, Any], field: str,
) -> None:
    before = len(_audit(db_url, "party.create"))
    r = api.post("/api/v1/parties", json=body)
    assert r.status_code == 422, r.text
    assert str(r.json()["detail"]).startswith(field), r.text
    assert "--" not in str(r.json()["detail"]).split(";")[0]  # the JSON field, not the CLI option
    assert len(_audit(db_url, "party.create")) == before


def test_a_namespace_registered_to_another_party_is_a_409_naming_it(api: TestClient, db_url: str) -> None:
    """Well-formed, but it clashes with a stored registration: a conflict (409), not malformed input (422)."""
    before = len(_audit(db_url, "party.create"))
    r = api.post("/api/v1/parties", json={"name": "X", "hq": "DE", "namespaces": ["aurora"]})
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert detail.startswith("namespaces:") and "Aurora Compute Inc." in detail and "--" not in detail
    assert '"reassign": true' in detail
    assert len(_audit(db_url, "party.create")) == before


def test_unknown_and_extra_fields_in_a_party_body_are_refused(api: TestClient) -> None:
    r = api.post("/api/v1/parties", json={"name": "X", "hq": "DE", "tier": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "tier"]
    r = api.post("/api/v1/parties", json={"hq": "DE"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]


def test_registering_a_party_twice_is_a_conflict_not_a_silent_update(api: TestClient, db_url: str) -> None:
    r = api.post("/api/v1/parties", json={"name": "Aurora Compute Inc.", "hq": "CN"})
    assert r.status_code == 409 and "PATCH /api/v1/parties/" in r.json()["detail"]
    assert api.get("/api/v1/parties/Aurora Compute Inc.").json()["hq"] == "US"


def test_patch_changes_only_what_it_names_and_is_audited(api: TestClient, db_url: str) -> None:
    assert api.post("/api/v1/parties", json={"name": "Pear Holdings", "hq": "CN"}).status_code == 201
    r = api.post("/api/v1/parties", json={"name": "Pear Cloud SG", "hq": "SG", "parent": "Pear Holdings",
                                          "address": "2 Example Road"})
    assert r.status_code == 201 and r.json()["effective_tier"] == 3
    # Adding a namespace keeps the parent (and so the Tier 3 effective tier) and the address.
    r = api.patch("/api/v1/parties/Pear Cloud SG", json={"namespaces": ["pear-train"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["parent"], out["effective_tier"], out["address"], out["namespaces"]) == (
        "Pear Holdings", 3, "2 Example Road", ["pear-train"])
    r = api.patch("/api/v1/parties/Pear Cloud SG", json={"no_parent": True, "address": ""})
    assert r.status_code == 200 and r.json()["parent"] is None and r.json()["address"] == ""
    assert r.json()["effective_tier"] == 2
    updates = _audit(db_url, "party.update")
    assert [e.actor for e in updates] == ["token:qa-admin", "token:qa-admin"]


def test_patch_refuses_cycles_conflicts_and_unknown_parties(api: TestClient) -> None:
    assert api.post("/api/v1/parties", json={"name": "Child", "hq": "DE",
                                             "parent": "Aurora Compute Inc."}).status_code == 201
    r = api.patch("/api/v1/parties/Aurora Compute Inc.", json={"parent": "Child"})
    assert r.status_code == 422 and r.json()["detail"].startswith("parent:") and "cycle" in r.json()["detail"]
    r = api.patch("/api/v1/parties/Child", json={"parent": "Aurora Compute Inc.", "no_parent": True})
    assert r.status_code == 422 and r.json()["detail"].startswith("parent/no_parent:")
    r = api.patch("/api/v1/parties/Child", json={"namespaces": ["aurora"]})
    assert r.status_code == 409 and '"reassign": true' in r.json()["detail"]
    r = api.patch("/api/v1/parties/Child", json={"namespaces": ["aurora"], "reassign": True})
    assert r.status_code == 200 and r.json()["namespaces"] == ["aurora"]
    assert api.patch("/api/v1/parties/Nobody", json={"hq": "DE"}).status_code == 404
    assert api.get("/api/v1/parties/Nobody").status_code == 404
    assert api.patch("/api/v1/parties/Child", json={"name": "Renamed"}).status_code == 422


def test_the_lpp_cap_of_a_consignee_whose_name_holds_a_slash_is_explained(api: TestClient, db_url: str) -> None:
    import re

    from agent import caps
    from agent.packs import registry

    r = api.post("/api/v1/parties", json={"name": "Nordisk Compute A/S", "hq": "IN"})  # "A/S": a company form
    assert r.status_code == 201, r.text
    with session_scope(db_url) as s:
        caps.add_shipment(s, registry(), day="2026-03-05", consignee="Nordisk Compute A/S", destination="IN",
                          chip_name="h100-sxm", count=10, via="lpp")
    r = api.get("/api/v1/parties/Nordisk Compute A/S")
    assert r.status_code == 200 and r.json()["hq"] == "IN"
    r = api.get("/api/v1/caps/allocations/explain/lpp.consignee.Nordisk%20Compute%20A%2FS",
                params={"as_of": "2026-06-30"})
    assert r.status_code == 200 and r.json()["id"] == "lpp.consignee.Nordisk Compute A/S", r.text
    # The dashboard's own link to it leads somewhere.
    assert api.post("/login", data={"token": api.headers["Authorization"][7:], "next": "/"},
                    follow_redirects=False).status_code == 303
    page = api.get("/", params={"as_of": "2026-06-30"}).text
    link = re.search(r'href="(/explain/allocations/[^"]*Nordisk[^"]*)"', page)
    assert link is not None
    assert api.get(link.group(1).replace("&amp;", "&")).status_code == 200


def test_an_unregistered_party_in_the_path_is_404_and_in_a_body_field_422(api: TestClient) -> None:
    assert api.get("/api/v1/parties/Nobody Ltd").status_code == 404
    r = api.post("/api/v1/models", json={"name": "m-unowned", "owner": "Nobody Ltd"})
    assert r.status_code == 422 and r.json()["detail"].startswith("owner"), r.text
