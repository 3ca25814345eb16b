"""/metrics is scraped without credentials: its labels must never carry a customer's name."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.api.routes.fleet import metric_cap_id
from agent.demo import seed
from agent.store import session_scope
from agent.store.tables.core import Party

pytestmark = pytest.mark.auth


def test_metrics_carry_no_customer_names_only_party_ids(db_url: str) -> None:
    seed(db_url)  # LPP shipments to Lumen Analytics Pte and Bharat Vision Labs: per-consignee LPP caps
    with session_scope(db_url) as s:
        parties = {p.name: p.id for p in s.exec(select(Party)).all()}
    c = TestClient(create_app(db_url), base_url="https://testserver")
    r = c.get("/metrics")  # public, like the probes: no token
    assert r.status_code == 200
    labels = " ".join(re.findall(r"\{[^}]*\}", r.text))
    assert 'cap="lpp.consignee.party-' in labels, r.text[-1500:]  # the per-consignee caps are still there
    leaked = sorted(name for name in parties if name in r.text)
    assert leaked == []
    lumen = parties["Lumen Analytics Pte"]
    assert f'cap="lpp.consignee.party-{lumen}"' in labels


def test_a_consignee_cap_of_an_unregistered_name_becomes_a_digest() -> None:
    out = metric_cap_id("lpp.consignee.Ghost Corp", {})
    assert out.startswith("lpp.consignee.sha256-") and "Ghost" not in out
    assert metric_cap_id("tier2.country_allocation.AE", {}) == "tier2.country_allocation.AE"
