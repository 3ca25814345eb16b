"""The controls register, weight custody, deadlines and reminders through the API, the CLI and real servers.

Reminders go to a real HTTP server and a real SMTP server (aiosmtpd) on 127.0.0.1; the store is SQLite and,
for the register and deadlines, the PostgreSQL server at 127.0.0.1:5432.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import obligations as svc
from agent.api.app import create_app
from agent.auth import create_token
from agent.parties import add_party, add_site
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.core import Holding, Party, Site
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry


def _seed(url: str) -> None:
    with session_scope(url) as s:
        add_party(s, "Acme", "DE")
        add_party(s, "Gulf", "AE")
        add_site(s, "dc-frankfurt", "DE")
        add_site(s, "dc-abudhabi", "AE")
        add_site(s, "dc-johor", "MY")


@pytest.fixture()
def seeded(db_url: str) -> str:
    _seed(db_url)
    return db_url


def _client(url: str) -> TestClient:
    with session_scope(url) as s:
        _, secret = create_token(s, role="admin", name="obligations-test")
    c = TestClient(create_app(url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    return c


@pytest.fixture()
def client(seeded: str) -> TestClient:
    return _client(seeded)


def _actions(url: str) -> list[str]:
    with session_scope(url) as s:
        return [e.action for e in s.exec(select(AuditEntry)).all()]


def _register_flow(c: TestClient, url: str) -> None:
    r = c.put("/api/v1/controls/site/dc-frankfurt/14",
              json={"owner": "ciso@acme", "status": "compliant", "review_date": "2026-06-30"})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/controls/site/dc-frankfurt/14/evidence",
               json={"kind": "attestation", "statement": "3PAO FedRAMP High attestation 2025", "attested_by": "3PAO"})
    assert r.status_code == 201, r.text
    r = c.get("/api/v1/controls/site/dc-frankfurt", params={"as_of": "2025-12-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    rows = {p["number"]: p for p in body["paragraphs"]}
    assert len(rows) == 19
    assert rows[14]["owner"] == "ciso@acme" and rows[14]["status"] == "compliant"
    assert rows[14]["evidence"][0]["attested_by"] == "3PAO"
    assert rows[14]["compliance_from"] == "2026-01-15"
    assert "delayed compliance date 2026-01-15" in rows[14]["flags"]
    assert rows[1]["status"] == "open" and "para7" in body and "para8" in body
    later = c.get("/api/v1/controls/site/dc-frankfurt", params={"as_of": "2026-07-01"}).json()
    assert "review overdue since 2026-06-30" in {p["number"]: p for p in later["paragraphs"]}[14]["flags"]
    assert {"obligations.control.set", "obligations.evidence.add"} <= set(_actions(url))


def test_register_checklist_per_site_through_the_api(client: TestClient, seeded: str) -> None:
    _register_flow(client, seeded)


@pytest.mark.postgres
def test_register_and_deadlines_on_postgresql(pg_url: str) -> None:
    _seed(pg_url)
    c = _client(pg_url)
    _register_flow(c, pg_url)
    _deadline_flow(c)


def test_register_rejects_bad_input_without_writing(client: TestClient, seeded: str) -> None:
    before = _actions(seeded)
    assert client.put("/api/v1/controls/site/dc-frankfurt/20", json={"status": "open"}).status_code == 422
    assert client.put("/api/v1/controls/site/dc-frankfurt/7", json={"status": "done"}).status_code == 422
    assert client.put("/api/v1/controls/site/nowhere/7", json={"status": "open"}).status_code == 404
    assert client.get("/api/v1/controls/authorization/NOPE").status_code == 404
    r = client.post("/api/v1/controls/site/dc-frankfurt/7/evidence", json={"kind": "link", "uri": ""})
    assert r.status_code == 422 and r.json()["detail"].startswith("uri:") and "--" not in r.json()["detail"]
    # The dashboard shows a link as a link: a script URI would run in the next reader's session.
    for bad in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>x</script>", "not a uri",
                "https://intranet.example/a b"):
        r = client.post("/api/v1/controls/site/dc-frankfurt/7/evidence", json={"kind": "link", "uri": bad})
        assert r.status_code == 422 and r.json()["detail"].startswith("uri:"), bad
    assert _actions(seeded) == before


def test_evidence_links_to_documents_are_kept_and_only_web_links_are_clickable(seeded: str) -> None:
    from agent import obligations as ob
    from agent.store import session_scope
    from agent.store.tables.obligations import ControlEvidence

    with session_scope(seeded) as s:
        for uri in ("https://intranet.example/p14", "s3://evidence/p14.pdf", "smb://files/p14.pdf"):
            ob.add_evidence(s, "site", "dc-frankfurt", 14, "link", uri=uri)
        # A row stored before URIs were checked is shown as text, never as a javascript: link.
        e = s.exec(select(ControlEvidence)).first()
        assert e is not None
        s.add(ControlEvidence(entry_id=e.entry_id, kind="link", uri="javascript:alert(1)"))
    html = _client(seeded).get("/controls/site/dc-frankfurt").text
    assert 'href="https://intranet.example/p14"' in html and "s3://evidence/p14.pdf" in html
    assert 'href="javascript:' not in html and 'href="s3://' not in html


def test_authorization_register_marks_uveu_only_paragraphs_for_an_nveu(client: TestClient) -> None:
    r = client.post("/api/v1/deadlines/authorizations", json={
        "name": "GULF-NVEU-AE", "kind": "nveu", "holder": "Gulf", "granted": "2025-03-01", "country": "AE"})
    assert r.status_code == 201, r.text
    rows = {p["number"]: p for p in client.get("/api/v1/controls/authorization/GULF-NVEU-AE").json()["paragraphs"]}
    assert rows[5]["status"] == "not-applicable" and rows[6]["status"] == "not-applicable"


def _deadline_flow(c: TestClient) -> None:
    assert c.post("/api/v1/deadlines/authorizations", json={
        "name": "ACME-UVEU", "kind": "uveu", "holder": "Acme", "granted": "2025-03-01",
        "locations": ["DE"]}).status_code == 201
    assert c.post("/api/v1/deadlines/events", json={
        "kind": "incident", "ref": "INC-1", "on": "2025-09-10", "description": "pallet lost"}).status_code == 201
    assert c.post("/api/v1/deadlines/events", json={
        "kind": "transfer", "ref": "T-1", "on": "2025-11-01", "authorization": "ACME-UVEU", "from_country": "DE",
        "to_country": "MY"}).status_code == 201
    ds = c.get("/api/v1/deadlines", params={"as_of": "2025-09-15"}).json()
    by = {d["kind"]: d for d in ds}
    assert by["theft-loss-report"]["due"] == "2025-10-10" and by["theft-loss-report"]["status"] == "due"
    assert by["inter-country-transfer-notice"]["due"] == "2025-09-02"
    assert by["inter-country-transfer-notice"]["status"] == "overdue"
    reports = [d for d in ds if d["kind"] == "veu-semiannual-report"]
    assert reports[0]["due"] == "2025-07-15" and reports[0]["status"] == "overdue"
    r = c.post("/api/v1/deadlines/filings", json={"key": reports[0]["key"], "filed_on": "2025-09-16",
                                                   "reference": "BIS-VEU-2025H1"})
    assert r.status_code == 201, r.text
    after = {d["key"]: d for d in c.get("/api/v1/deadlines", params={"as_of": "2025-09-20"}).json()}
    assert after[reports[0]["key"]]["status"] == "done" and after[reports[0]["key"]]["late"] is True
    assert c.post("/api/v1/deadlines/filings", json={"key": "nope", "filed_on": "2025-09-16"}).status_code == 422
    overdue = c.get("/api/v1/deadlines", params={"as_of": "2025-09-20", "status": "overdue"}).json()
    assert overdue and all(d["status"] == "overdue" for d in overdue)


def test_deadlines_and_filings_through_the_api(client: TestClient) -> None:
    _deadline_flow(client)


def test_deadlines_from_holdings_history_transfer_and_new_uveu_location(client: TestClient, seeded: str) -> None:
    client.post("/api/v1/deadlines/authorizations", json={
        "name": "ACME-UVEU", "kind": "uveu", "holder": "Acme", "granted": "2025-03-01", "locations": ["DE"]})
    with session_scope(seeded) as s:
        acme = s.exec(select(Party).where(Party.name == "Acme")).one()
        de = s.exec(select(Site).where(Site.name == "dc-frankfurt")).one()
        my = s.exec(select(Site).where(Site.name == "dc-johor")).one()
        h = Holding(source="csv", external_id="rack-7", site_id=my.id, accelerator="h100-sxm", count=8,
                    owner_id=acme.id)
        s.add(h)
        s.flush()
        s.add(HoldingPeriod(holding_id=h.id, site_id=de.id, accelerator="h100-sxm", count=8, owner_id=acme.id,
                            valid_from=datetime(2025, 4, 1, tzinfo=UTC), valid_to=datetime(2025, 10, 1, tzinfo=UTC)))
        s.add(HoldingPeriod(holding_id=h.id, site_id=my.id, accelerator="h100-sxm", count=8, owner_id=acme.id,
                            valid_from=datetime(2025, 10, 1, tzinfo=UTC)))
    ds = client.get("/api/v1/deadlines", params={"as_of": "2025-10-05"}).json()
    t = [d for d in ds if d["kind"] == "inter-country-transfer-notice"]
    n = [d for d in ds if d["kind"] == "uveu-new-datacenter-notice"]
    assert [(d["title"], d["due"], d["status"]) for d in t] == [
        ("60-day notice of transfer DE -> MY on 2025-10-01", "2025-08-02", "overdue")]
    assert n and n[0]["due"] == "2025-04-04" and "dc-johor" in n[0]["title"] and n[0]["status"] == "overdue"


def test_paths_through_the_api_use_catalog_and_date(client: TestClient) -> None:
    r = client.get("/api/v1/paths", params={"items": "H100 SXM x 2048", "consignee": "Gulf", "country": "AE",
                                            "as_of": "2025-06-01"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["open_paths"] == ["LICENCE"] and body["items"][0]["eccn"] == "3A090.a"
    lic = next(p for p in body["paths"] if p["path"] == "LICENCE")
    assert lic["presumption"] == "approval" and lic["codified"] and lic["enforced"] is False
    bad = client.get("/api/v1/paths", params={"items": "H100", "consignee": "Gulf", "country": "AE"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("items:")  # the query parameter
    early = client.get("/api/v1/paths", params={"items": "H100 SXM x 8", "consignee": "Gulf", "country": "AE",
                                                "as_of": "2025-01-01"})
    assert early.status_code in (404, 422) and early.json()["detail"].startswith("as_of:"), early.text


def _fleet(url: str, site: str, owner: str, count: int, since: datetime) -> None:
    """Holdings written directly (no collector history) count from first_seen for the caps engine."""
    with session_scope(url) as s:
        p = s.exec(select(Party).where(Party.name == owner)).one()
        st = s.exec(select(Site).where(Site.name == site)).one()
        s.add(Holding(source="csv", external_id=f"{site}-{owner}", site_id=st.id, accelerator="h100-sxm",
                      count=count, owner_id=p.id, operator_id=p.id, first_seen=since))


def test_uveu_path_opens_after_the_180_day_notice(client: TestClient, seeded: str) -> None:
    _fleet(seeded, "dc-frankfurt", "Acme", 10_000, datetime(2025, 4, 1, tzinfo=UTC))
    client.post("/api/v1/deadlines/authorizations", json={
        "name": "ACME-UVEU", "kind": "uveu", "holder": "Acme", "granted": "2025-03-01", "locations": ["DE"]})
    client.post("/api/v1/deadlines/events", json={"kind": "new-location", "ref": "MY-1", "on": "2026-01-01",
                                                   "authorization": "ACME-UVEU", "site": "dc-johor",
                                                   "to_country": "MY"})
    q = {"items": "H100 SXM x 64", "consignee": "Acme", "country": "MY", "as_of": "2026-01-10"}
    uveu = next(p for p in client.get("/api/v1/paths", params=q).json()["paths"] if p["path"] == "UVEU")
    assert not uveu["open"] and "180-day" in " ".join(uveu["reasons"])
    key = "uveu-new-location:ACME-UVEU:MY:dc-johor"
    assert client.post("/api/v1/deadlines/filings", json={"key": key, "filed_on": "2025-07-01"}).status_code == 201
    uveu = next(p for p in client.get("/api/v1/paths", params=q).json()["paths"] if p["path"] == "UVEU")
    assert uveu["open"], uveu["reasons"]
    assert "every binding cap holds" in uveu["figures"]["caps"]


def test_uveu_path_closed_when_the_caps_engine_says_the_7_percent_cap_breaks(client: TestClient, seeded: str) -> None:
    _fleet(seeded, "dc-frankfurt", "Acme", 1_000, datetime(2025, 4, 1, tzinfo=UTC))
    client.post("/api/v1/deadlines/authorizations", json={
        "name": "ACME-UVEU", "kind": "uveu", "holder": "Acme", "granted": "2025-03-01", "locations": ["DE", "MY"]})
    q = {"items": "H100 SXM x 100", "consignee": "Acme", "country": "MY", "as_of": "2025-09-01"}
    uveu = next(p for p in client.get("/api/v1/paths", params=q).json()["paths"] if p["path"] == "UVEU")
    assert not uveu["open"] and "uveu.single_country" in " ".join(uveu["reasons"]), uveu["reasons"]
    q["items"] = "H100 SXM x 70"
    uveu = next(p for p in client.get("/api/v1/paths", params=q).json()["paths"] if p["path"] == "UVEU")
    assert uveu["open"], uveu["reasons"]


def test_lpp_path_reads_the_shipments_ledger(client: TestClient, seeded: str, packs: PackRegistry) -> None:
    from agent import caps as capsvc

    with session_scope(seeded) as s:
        capsvc.add_shipment(s, packs, day=date(2025, 12, 20), consignee="Gulf", destination="AE",
                            chip_name="H100 SXM", count=1600, via="lpp")
    q = {"items": "H100 SXM x 100", "consignee": "Gulf", "country": "AE", "as_of": "2025-12-31"}
    lpp = next(p for p in client.get("/api/v1/paths", params=q).json()["paths"] if p["path"] == "LPP")
    assert not lpp["open"] and lpp["figures"]["used_tpp"] == 1600 * 15832
    q["as_of"] = "2026-01-02"
    lpp = next(p for p in client.get("/api/v1/paths", params=q).json()["paths"] if p["path"] == "LPP")
    assert lpp["open"] and lpp["figures"]["used_tpp"] == 0


CSV = """timestamp,model,principal,action,device,site
2025-09-01T10:00:00Z,frontier-1,alice@acme,read,nvme-1,dc-abudhabi
2025-09-01T11:00:00+00:00,frontier-1,svc-inference,load,nvme-2,dc-abudhabi
"""


def test_model_weight_custody_accesses_and_flagged_export(client: TestClient, seeded: str) -> None:
    with session_scope(seeded) as s:
        gulf = s.exec(select(Party).where(Party.name == "Gulf")).one()
        ad = s.exec(select(Site).where(Site.name == "dc-abudhabi")).one()
        s.add(Holding(source="csv", external_id="r1", site_id=ad.id, accelerator="h100-sxm", count=8,
                      owner_id=gulf.id, operator_id=gulf.id))
    r = client.post("/api/v1/weights/storage", json={"model": "frontier-1", "site": "dc-abudhabi",
                                                     "devices": ["nvme-1", "nvme-2"], "dedicated": True})
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/weights/access", content=CSV, headers={"content-type": "text/csv"},
                    params={"source": "siem-export.csv"})
    assert r.json() == {"rows": 2, "added": 2, "skipped": 0}, r.text
    again = client.post("/api/v1/weights/access", content=CSV, headers={"content-type": "text/csv"})
    assert again.json()["added"] == 0 and again.json()["skipped"] == 2
    bad = client.post("/api/v1/weights/access", content="when,who\n1,2\n", headers={"content-type": "text/csv"})
    assert bad.status_code == 422 and "timestamp" in bad.json()["detail"]
    r = client.post("/api/v1/weights/exports", json={"model": "frontier-1", "recipient": "Gulf", "country": "AE",
                                                     "on": "2025-09-02", "model_status": "4E091"})
    assert r.status_code == 201 and r.json()["flagged"] is True, r.text
    ok = client.post("/api/v1/weights/exports", json={"model": "frontier-1", "recipient": "Acme", "country": "DE",
                                                      "on": "2025-09-02", "model_status": "4E091"}).json()
    assert ok["flagged"] is False and ok["paths"] == ["AIA"]
    rep = client.get("/api/v1/weights", params={"as_of": "2025-09-03"}).json()
    assert len(rep["accesses"]) == 2 and rep["flagged_exports"] == 1
    assert rep["storage"][0]["devices"] == ["nvme-1", "nvme-2"] and rep["storage"][0]["site"] == "dc-abudhabi"
    # The ledger does not know the model here, so stored weights show an unknown status, never "ok".
    assert rep["storage"][0]["model_status"] in ("unknown", "4E091")
    assert "obligations.weights.export" in _actions(seeded)


# ---------------------------------------------------------------------------------------- reminders


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        n = int(self.headers.get("content-length", "0"))
        type(self).received.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": got})
    srv = HTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hooks/veu", got
    srv.shutdown()
    srv.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[Any] = []

    class Collect(Message):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            got.append(message)

    port = _free_port()
    ctl = Controller(Collect(), hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, got
    ctl.stop()


def test_webhook_reminder_sent_once_per_status(
    client: TestClient, webhook: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = webhook
    monkeypatch.setenv("VEU_NOTIFY_WEBHOOK_URL", url)
    client.post("/api/v1/deadlines/events", json={"kind": "incident", "ref": "INC-9", "on": "2025-09-10"})
    r = client.post("/api/v1/deadlines/notify", params={"as_of": "2025-09-11"})
    assert r.status_code == 200 and r.json()["sent"][0]["ok"], r.text
    assert got[0]["deadlines"][0]["key"] == "theft-loss:INC-9" and got[0]["deadlines"][0]["status"] == "due"
    client.post("/api/v1/deadlines/notify", params={"as_of": "2025-09-12"})
    assert len(got) == 1  # same status: not sent again
    client.post("/api/v1/deadlines/notify", params={"as_of": "2025-10-11"})
    assert len(got) == 2 and got[1]["deadlines"][0]["status"] == "overdue"
    sent = client.get("/api/v1/deadlines/notifications").json()
    assert {(n["status"], n["ok"]) for n in sent} == {("due", True), ("overdue", True)}
    # A chat webhook's URL is its credential: recorded and shown as scheme and host only, with a digest.
    assert all("/hooks/veu" not in n["target"] and n["target"].startswith("http://127.0.0.1:") for n in sent)


def test_failed_webhook_is_recorded_and_retried(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEU_NOTIFY_WEBHOOK_URL", f"http://127.0.0.1:{_free_port()}/down")
    client.post("/api/v1/deadlines/events", json={"kind": "incident", "ref": "INC-2", "on": "2025-09-10"})
    r = client.post("/api/v1/deadlines/notify", params={"as_of": "2025-09-11"}).json()
    assert r["sent"][0]["ok"] is False and "ConnectError" in r["sent"][0]["error"]
    again = client.post("/api/v1/deadlines/notify", params={"as_of": "2025-09-11"}).json()
    assert again["sent"] and again["sent"][0]["count"] == 1  # a failure is retried on the next run


def test_smtp_reminder_to_a_local_smtp_server(
    seeded: str, packs: PackRegistry, smtp_server: tuple[int, list[Any]],
) -> None:
    port, got = smtp_server
    with session_scope(seeded) as s:
        svc.add_event(s, "incident", "INC-3", date(2025, 9, 10), description="drive missing")
        cfg = svc.NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_to="compliance@example.test")
        out = svc.send_reminders(s, packs, date(2025, 10, 20), cfg)
    assert out["sent"][0]["channel"] == "smtp" and out["sent"][0]["ok"], out
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    msg = got[0]
    assert "overdue" in msg["Subject"] and msg["To"] == "compliance@example.test"
    assert "theft/loss" in msg.get_payload()


def test_apscheduler_job_sends_reminders(
    seeded: str, packs: PackRegistry, webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, got = webhook
    with session_scope(seeded) as s:
        svc.add_authorization(s, packs, "ACME-UVEU", date(2025, 3, 1), "uveu", "Acme", locations=["DE"])
    sched = svc.start_scheduler(seeded, svc.NotifySettings(webhook_url=url, interval_minutes=60))
    try:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sched.shutdown(wait=True)
    assert got, "the scheduler's first run posts the overdue reports"
    assert any(d["kind"] == "veu-semiannual-report" for d in got[0]["deadlines"])


def test_api_server_runs_the_reminder_job_when_enabled(
    seeded: str, packs: PackRegistry, webhook: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = webhook
    with session_scope(seeded) as s:
        svc.add_event(s, "incident", "INC-42", date(2025, 5, 20), description="tampered seal")  # after compliance
    monkeypatch.setenv("VEU_NOTIFY_SCHEDULER", "1")
    monkeypatch.setenv("VEU_NOTIFY_WEBHOOK_URL", url)
    with TestClient(create_app(seeded), base_url="https://testserver") as c:
        assert c.get("/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
    assert got and got[0]["deadlines"][0]["key"] == "theft-loss:INC-42"
    assert got[0]["deadlines"][0]["status"] == "overdue"


# --------------------------------------------------------------------------------------------- CLI


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEU_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_cli_paths_controls_and_deadlines(
    seeded: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.cli import app
    from agent.cli._common import run_app

    def cli(*args: str) -> tuple[int, str]:
        # In-process (one import of the CLI, not one per command); the exit-2 path is checked in a subprocess.
        monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        capsys.readouterr()
        rc = run_app(app)
        return rc, capsys.readouterr().out

    rc, out = cli("paths", "--items", "H100 SXM x 100", "--consignee", "Gulf", "--country", "AE",
                  "--date", "2025-06-01", "--json")
    assert rc == 0 and set(json.loads(out)["open_paths"]) == {"LPP", "LICENCE"}
    r = _cli(seeded, "paths", "--items", "H100 SXM", "--consignee", "Gulf", "--country", "AE")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--items" in r.stderr
    rc, _ = cli("controls", "set", "dc-frankfurt", "-p", "8", "--owner", "ml-platform", "--status", "in-progress",
                "--json")
    assert rc == 0
    rc, out = cli("controls", "show", "dc-frankfurt", "--json")
    assert json.loads(out)["paragraphs"][7]["owner"] == "ml-platform"
    rc, out = cli("controls", "show", "dc-frankfurt")
    assert rc == 0 and "open 18 · in-progress 1 · compliant 0" in out and "{" not in out.splitlines()[-1]
    rc, _ = cli("deadlines", "authorize", "ACME-UVEU", "--kind", "uveu", "--holder", "Acme",
                "--granted", "2025-03-01", "--location", "DE", "--json")
    assert rc == 0
    rc, out = cli("deadlines", "list", "--as-of", "2025-07-01", "--status", "due", "--json")
    assert [d["due"] for d in json.loads(out)] == ["2025-07-15"]
    log = tmp_path / "access.csv"
    log.write_text(CSV)
    rc, _ = cli("weights", "store", "frontier-1", "--site", "dc-frankfurt", "--device", "nvme-1", "--dedicated",
                "--json")
    assert rc == 0
    rc, out = cli("weights", "import-access", str(log), "--json")
    assert json.loads(out)["added"] == 2
    rc, out = cli("weights", "export", "frontier-1", "--to", "Gulf", "--country", "AE", "--on", "2025-09-01",
                  "--model-status", "4E091", "--json")
    assert rc == 0 and json.loads(out)["flagged"] is True
    assert cli("controls", "set", "dc-frankfurt", "-p", "22")[0] == 2
    # An empty date is named, not read as "no date" (which left the review date unchanged).
    assert cli("controls", "set", "dc-frankfurt", "-p", "8", "--review", "")[0] == 2
    assert cli("controls", "evidence", "dc-frankfurt", "-p", "8", "--kind", "attestation", "--statement",
               "checked", "--by", "ann", "--on", "")[0] == 2


def test_para7_fine_tunes_of_a_fine_tune_count_together_against_the_first_4e091_model(
    client: TestClient, seeded: str, packs: PackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each step is within 25% of its own base (0.2e26 of 1e26, then 0.2e26 of 1.2e26), but together they are 40% of
    # the original 4E091 model: under the default (conservative) reading the second step exceeds the allowance.
    from agent import ledger
    from policies.compute import EstimationDefaults, declared_operations

    d = EstimationDefaults.from_packs(packs, date(2025, 9, 1))
    with session_scope(seeded) as s:
        ledger.add_model(s, "acme-base", "Acme")
        ledger.add_run(s, "acme-base", declared_operations(d, 1e26), start=date(2025, 6, 1), site="dc-frankfurt")
        ledger.add_model(s, "gulf-ft-1", "Gulf", base="acme-base")
        ledger.add_run(s, "gulf-ft-1", declared_operations(d, 0.2e26), start=date(2025, 7, 1), site="dc-frankfurt")
        ledger.add_model(s, "gulf-ft-2", "Gulf", base="gulf-ft-1")
        ledger.add_run(s, "gulf-ft-2", declared_operations(d, 0.2e26), start=date(2025, 8, 1), site="dc-frankfurt")

    def runs() -> dict[str, dict[str, Any]]:
        body = client.get("/api/v1/controls/site/dc-frankfurt", params={"as_of": "2025-09-01"}).json()
        return {r["model"]: r for r in body["para7"]["runs"]}

    by = runs()
    assert by["gulf-ft-1"]["verdict"] == "ok" and by["gulf-ft-1"]["fine_tune_of"] == "acme-base"
    assert by["gulf-ft-2"]["verdict"] == "violation", by["gulf-ft-2"]["reason"]
    assert by["gulf-ft-2"]["fine_tune_of"] == "acme-base"
    assert by["gulf-ft-2"]["fine_tune_fraction"] == pytest.approx(0.4)
    # Counsel's other reading, as an operator pack: each fine-tune against its own base.
    (tmp_path / "p7.yaml").write_text(textwrap.dedent("""\
        id: counsel-p7
        version: "1"
        title: ¶7 read per step
        provisions:
          - id: supp10-fine-tune-original
            title: ¶7 original model, per step
            citation: "15 CFR 748 Supp. 10 ¶7"
            effective_from: 2025-01-13
            status: [{since: 2025-01-13, codified: true, enforced: false}]
            values: {original: immediate-base}
        """))
    monkeypatch.setenv("VEU_POLICY_DIRS", str(tmp_path))  # the registry is cached per directory list
    by = runs()
    assert by["gulf-ft-2"]["verdict"] == "ok" and by["gulf-ft-2"]["fine_tune_of"] == "gulf-ft-1"


def test_para7_register_shows_ledger_training_runs_for_parties_outside_tier1(
    client: TestClient, seeded: str, packs: PackRegistry,
) -> None:
    from agent import ledger
    from policies.compute import EstimationDefaults, declared_operations

    d = EstimationDefaults.from_packs(packs, date(2025, 9, 1))
    with session_scope(seeded) as s:
        ledger.add_model(s, "gulf-frontier", "Gulf")
        ledger.add_run(s, "gulf-frontier", declared_operations(d, 2e26), start=date(2025, 7, 1),
                       site="dc-frankfurt", job="gulf/Job/train-1")
        ledger.add_model(s, "acme-base", "Acme")
        ledger.add_run(s, "acme-base", declared_operations(d, 4e26), start=date(2025, 6, 1), site="dc-frankfurt")
        ledger.add_model(s, "gulf-ft-small", "Gulf", base="acme-base")
        ledger.add_run(s, "gulf-ft-small", declared_operations(d, 0.5e26), start=date(2025, 8, 1),
                       site="dc-frankfurt")
        ledger.add_model(s, "gulf-ft-big", "Gulf", base="acme-base")
        ledger.add_run(s, "gulf-ft-big", declared_operations(d, 1.5e26), start=date(2025, 8, 1),
                       site="dc-frankfurt")
    body = client.get("/api/v1/controls/site/dc-frankfurt", params={"as_of": "2025-09-01"}).json()
    runs = {r["model"]: r for r in body["para7"]["runs"]}
    assert set(runs) == {"gulf-frontier", "gulf-ft-small", "gulf-ft-big"}  # Acme is Tier 1 at a Tier 1 site
    assert runs["gulf-frontier"]["verdict"] == "violation" and runs["gulf-frontier"]["model_status"] == "4E091"
    assert runs["gulf-ft-small"]["verdict"] == "ok" and runs["gulf-ft-small"]["fine_tune_fraction"] == 0.125
    assert runs["gulf-ft-big"]["verdict"] == "violation" and "exceeds 25%" in runs["gulf-ft-big"]["reason"]
    # ¶8 with the ledger's 4E091 status: stored in a Tier 2 facility run by a Tier 2 party, exported to it.
    _fleet(seeded, "dc-abudhabi", "Gulf", 8, datetime(2025, 4, 1, tzinfo=UTC))
    client.post("/api/v1/weights/storage", json={"model": "gulf-frontier", "site": "dc-abudhabi",
                                                 "devices": ["nvme-9"], "dedicated": True})
    rep = client.get("/api/v1/weights", params={"as_of": "2025-09-01"}).json()
    row = next(r for r in rep["storage"] if r["model"] == "gulf-frontier")
    assert row["model_status"] == "4E091" and row["verdict"] == "violation"
    ex = client.post("/api/v1/weights/exports", json={"model": "gulf-frontier", "recipient": "Gulf", "country": "AE",
                                                      "on": "2025-09-01", "model_status": "below-threshold"}).json()
    assert ex["model_status"] == "4E091" and ex["flagged"] is True  # the ledger wins over a declared status


def test_a_compliance_judgement_schedules_the_next_review(client: TestClient) -> None:
    from datetime import timedelta

    r = client.put("/api/v1/controls/site/dc-abudhabi/15", json={"owner": "sec-eng", "status": "non-compliant"})
    expected = datetime.now(UTC).date() + timedelta(days=365)  # operator-defaults review_interval_days
    assert r.status_code == 200 and r.json()["review_date"] == expected.isoformat()
    ds = {d["key"]: d for d in client.get("/api/v1/deadlines").json()}
    d = ds["unmet-requirement:site:dc-abudhabi:p15"]
    assert d["due"] == datetime.now(UTC).date().isoformat() and d["status"] == "due" and "¶11" in d["citation"]


def test_para7_register_shows_webhook_decisions_in_the_sites_cluster(
    client: TestClient, seeded: str, packs: PackRegistry,
) -> None:
    from agent.cases import evaluate_review
    from tests.webhook.conftest import M, job, review

    with session_scope(seeded) as s:
        add_party(s, "Emirates AI", "AE", None, ["tenant-ae"])
        add_site(s, "dc-frankfurt", "DE", cluster="fra-1")
    big = job("pretrain", gpus=8, pods=512, annotations={M + "model": "frontier-x", M + "operations": "3e26"})
    with session_scope(seeded) as s:
        out = evaluate_review(s, packs, review(big), date(2025, 9, 1), cluster="fra-1")
    rows = client.get("/api/v1/controls/site/dc-frankfurt", params={"as_of": date.today().isoformat()}).json()
    runs = rows["para7"]["runs"]
    assert len(runs) == 1 and runs[0]["customer"] == "Emirates AI" and runs[0]["model"]
    assert runs[0]["verdict"] == "violation" and runs[0]["model_status"] == "4E091"
    assert runs[0]["decision"].startswith(out.code)
    other = client.get("/api/v1/controls/site/dc-abudhabi").json()["para7"]
    assert other["runs"] == [] and "no cluster" in other["note"]


def test_a_bad_date_in_a_register_form_is_shown_on_the_page_and_nothing_is_saved(client: TestClient,
                                                                                  seeded: str) -> None:
    same = {"Origin": "https://testserver"}
    before = _actions(seeded)
    r = client.post("/controls/site/dc-frankfurt/14", headers=same,
                    data={"as_of": "2026-01-05", "owner": "ops", "status": "compliant", "review_date": "soon"})
    assert r.status_code == 422 and "¶14: Review date" in r.text
    r = client.post("/controls/site/dc-frankfurt/14/evidence", headers=same,
                    data={"as_of": "2026-01-05", "kind": "attestation", "statement": "ok", "attested_by": "cfo",
                          "attested_on": "yesterday"})
    assert r.status_code == 422 and "¶14 evidence: Attested on" in r.text
    assert _actions(seeded) == before  # neither form wrote anything, not even an audit entry
    saved = client.post("/controls/site/dc-frankfurt/14", headers=same, follow_redirects=False,
                        data={"as_of": "2026-01-05", "owner": "ops", "status": "compliant"})
    assert saved.status_code == 303 and saved.headers["location"].endswith("saved=14#p14")
