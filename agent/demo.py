"""`veuctl demo`: an embedded SQLite store seeded with a realistic sample fleet, served with the dashboard.

The sample: a US-headquartered UVEU group (Aurora) with data centers in Tier 1 and Tier 2 countries, one
site run by a third-party operator; a Tier 2-headquartered NVEU holder (Falcon) in the UAE; customers in
Tier 1 and Tier 2 and one whose ultimate parent is in a Tier 3 destination; a year of installation history
(and a retired batch); licensed, LPP and NVEU shipments; models in the ledger; open red-flag cases when the
case service is installed. Every write goes through the same services (and audit trail) as production.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from agent import caps as caps_svc
from agent import parties as party_svc
from agent.audit import record
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site, utc_today
from agent.store.tables.inventory import HoldingPeriod
from policies.errors import PolicyError

PARTIES: tuple[tuple[str, str, str | None, tuple[str, ...]], ...] = (
    # name, HQ, parent, Kubernetes namespaces (customers)
    ("Aurora Compute Inc.", "US", None, ()),
    ("Aurora Compute Europe GmbH", "DE", "Aurora Compute Inc.", ()),
    ("Aurora Gulf FZ-LLC", "AE", "Aurora Compute Europe GmbH", ()),
    ("Polar Datacenters AS", "NO", None, ()),
    ("Falcon Digital LLC", "AE", None, ()),
    ("Acme Robotics", "US", None, ("acme-train", "acme-infer")),
    ("Lumen Analytics Pte", "SG", None, ("lumen",)),
    ("Pear Holdings", "CN", None, ()),
    ("Pear Cloud SG", "SG", "Pear Holdings", ("pear-train",)),
    ("Bharat Vision Labs", "IN", None, ("bharat",)),
    ("Gulf Sovereign AI", "AE", None, ()),
)

SITES: tuple[tuple[str, str, str, str], ...] = (
    # name, country, provider, region
    ("iad-dc1", "US", "onprem", ""),
    ("fra-dc2", "DE", "onprem", ""),
    ("osl-dc1", "NO", "onprem", ""),
    ("tyo-dc1", "JP", "onprem", ""),
    ("dxb-dc1", "AE", "onprem", ""),
    ("dxb-dc2", "AE", "onprem", ""),
    ("sin-dc1", "SG", "onprem", ""),
    ("bom-dc1", "IN", "onprem", ""),
)


@dataclass(frozen=True)
class Batch:
    site: str
    chip: str
    count: int
    owner: str
    operator: str
    months_ago: int
    retired_months_ago: int | None = None


AURORA, EUROPE, GULF = "Aurora Compute Inc.", "Aurora Compute Europe GmbH", "Aurora Gulf FZ-LLC"
BATCHES: tuple[Batch, ...] = (
    Batch("iad-dc1", "h100-sxm", 4000, AURORA, AURORA, 14),
    Batch("iad-dc1", "h100-sxm", 2000, AURORA, AURORA, 8),
    Batch("iad-dc1", "b200", 1500, AURORA, AURORA, 4),
    Batch("fra-dc2", "h200-sxm", 2000, EUROPE, EUROPE, 10),
    Batch("fra-dc2", "a100-sxm4-80gb", 400, EUROPE, EUROPE, 20, retired_months_ago=2),
    Batch("osl-dc1", "h100-sxm", 1500, AURORA, "Polar Datacenters AS", 9),
    Batch("tyo-dc1", "b200", 800, AURORA, AURORA, 5),
    Batch("dxb-dc1", "h100-sxm", 1000, GULF, GULF, 7),
    Batch("sin-dc1", "h100-sxm", 900, AURORA, AURORA, 6),
    Batch("sin-dc1", "l4", 2000, AURORA, AURORA, 6),
    Batch("bom-dc1", "h100-sxm", 500, AURORA, AURORA, 3),
    Batch("dxb-dc2", "h100-sxm", 40000, "Falcon Digital LLC", "Falcon Digital LLC", 11),
    Batch("dxb-dc2", "b200", 6000, "Falcon Digital LLC", "Falcon Digital LLC", 2),
)

# (days ago, consignee, destination, chip, count, via, reference, authorization)
SHIPMENTS: tuple[tuple[int, str, str, str, int, str, str, str | None], ...] = (
    (420, "Bharat Vision Labs", "IN", "h100-sxm", 20000, "licence", "D1234567", None),
    (250, "Gulf Sovereign AI", "AE", "h100-sxm", 30000, "licence", "D1239876", None),
    (330, "Falcon Digital LLC", "AE", "h100-sxm", 40000, "nveu", "", "falcon-nveu-ae"),
    (200, "Lumen Analytics Pte", "SG", "h100-sxm", 1000, "lpp", "LPP-2026-01", None),
    (90, "Lumen Analytics Pte", "SG", "h100-sxm", 600, "lpp", "LPP-2026-02", None),
    (60, "Bharat Vision Labs", "IN", "h100-sxm", 150, "lpp", "LPP-2026-03", None),
)


# Consignees' addresses (fictional) for the semi-annual report's "name and address" (§ 748.15(f)(1)(i)(A)).
ADDRESSES = {
    "Bharat Vision Labs": "12 Residency Road, Bengaluru 560025, India",
    "Gulf Sovereign AI": "Level 9, Hub 71, Al Khatem Tower, Abu Dhabi, United Arab Emirates",
    "Falcon Digital LLC": "Plot 4, Dubai Silicon Oasis, Dubai, United Arab Emirates",
    "Lumen Analytics Pte": "1 Fusionopolis Way, #10-01, Singapore 138632",
}
USD_PER_CHIP = 25_000  # an illustrative unit price for the demo's shipment values


def _months_ago(now: datetime, months: int) -> datetime:
    return now - timedelta(days=30 * months)


def seed(url: str, today: date | None = None) -> dict[str, Any]:
    """Write the sample fleet into the store at ``url`` (an empty database); return what was written."""
    today = today or utc_today()
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    packs = registry()
    with session_scope(url) as s:
        if s.exec(select(Site)).first() is not None:
            raise PolicyError(f"demo: the store at {url} already has sites; use an empty database")
        for name, hq, parent, namespaces in PARTIES:
            party_svc.add_party(s, name, hq, parent, list(namespaces), address=ADDRESSES.get(name))
        for name, country, provider, region in SITES:
            party_svc.add_site(s, name, country, provider, region)
        s.flush()
        n_holdings = _seed_holdings(s, now)
        record(s, actor="demo", action="demo.seed", subject="demo",
               payload={"parties": len(PARTIES), "sites": len(SITES), "holdings": n_holdings})
        caps_svc.add_authorization(s, packs, "aurora-uveu", "uveu", AURORA, None, "VEU-U-2025-0042", actor="demo")
        caps_svc.add_authorization(s, packs, "falcon-nveu-ae", "nveu", "Falcon Digital LLC", "AE", "VEU-N-2025-0107",
                                   actor="demo")
        for days, consignee, dest, chip, count, via, ref, auth in SHIPMENTS:
            caps_svc.add_shipment(s, packs, day=today - timedelta(days=days), consignee=consignee, destination=dest,
                                  chip_name=chip, count=count, via=via, reference=ref, authorization=auth,
                                  actor="demo", value_usd=float(count * USD_PER_CHIP))
        caps_svc.reserve(s, packs, "aurora-uveu", n=256, chip_name="b200", site="tyo-dc1",
                         planned_for=today + timedelta(days=45), note="Tokyo expansion, phase 2", actor="demo")
        models = _seed_models(s, packs, today)
        _seed_obligations(s, packs, today)
    cases = _seed_cases(url, today)
    return {"database": url, "parties": len(PARTIES), "sites": len(SITES), "holdings": n_holdings,
            "authorizations": 2, "shipments": len(SHIPMENTS), "models": models, "cases": cases}


def _seed_holdings(s: Session, now: datetime) -> int:
    sites = {x.name: x for x in s.exec(select(Site)).all()}
    parties = {p.name: p for p in s.exec(select(Party)).all()}
    n = 0
    for i, b in enumerate(BATCHES):
        first = _months_ago(now, b.months_ago)
        retired = _months_ago(now, b.retired_months_ago) if b.retired_months_ago is not None else None
        # One holding per 8-GPU server, as a collector would see them.
        batch = [
            Holding(
                source="demo", external_id=f"b{i}-srv{j // 8:05d}", site_id=sites[b.site].id,  # type: ignore[arg-type]
                accelerator=b.chip, count=min(8, b.count - j), owner_id=parties[b.owner].id,
                operator_id=parties[b.operator].id, serial=f"SN{i:02d}{j // 8:06d}", first_seen=first,
                last_seen=retired or now, retired_at=retired,
            )
            for j in range(0, b.count, 8)
        ]
        s.add_all(batch)
        s.flush()
        s.add_all([
            HoldingPeriod(holding_id=h.id, site_id=h.site_id, accelerator=h.accelerator,  # type: ignore[arg-type]
                          count=h.count, owner_id=h.owner_id, operator_id=h.operator_id, valid_from=first,
                          valid_to=retired)
            for h in batch
        ])
        n += len(batch)
    return n


def _seed_models(s: Session, packs: Any, today: date) -> int:
    """Models in the ledger (the compute engineer's service), with one recorded run each."""
    from agent import ledger

    rows = (
        ("aurora-atlas-70b", AURORA, None, 6.3e24, 200),
        ("lumen-frontier-1", "Lumen Analytics Pte", None, 1.4e26, 150),
        ("pear-coder-34b", "Pear Cloud SG", None, 4.1e25, 100),
        ("pear-coder-34b-ft", "Pear Cloud SG", "pear-coder-34b", 2.0e24, 20),
        # Pre-training that finishes today: metering opened the case of its lineage (case #2) as it crossed 1e26.
        ("pear-coder-next", "Pear Cloud SG", None, 1.1e26, 30),
    )
    for name, owner, base, ops, days in rows:
        ledger.add_model(s, name, owner, base=base, actor="demo")
        est = ledger.estimate(packs, today, operations=ops)
        ledger.add_run(s, name, est, start=today - timedelta(days=days), end=today - timedelta(days=days - 30),
                       site="iad-dc1", actor="demo")
    return len(rows)


def _seed_obligations(s: Session, packs: Any, today: date) -> None:
    """Grant dates and application locations, a planned transfer, register entries and stored weights.

    Enough for the Deadlines page (semi-annual and chip-accounting reports, the new-location notice the
    Mumbai site needs, a 60-day transfer notice) and the Supp. No. 10 register (with ¶7 runs and ¶8 storage).
    """
    from agent import obligations as ob

    ob.add_authorization(s, packs, "aurora-uveu", today - timedelta(days=450), locations=["US", "DE", "NO", "JP",
                         "SG", "AE"], actor="demo")
    ob.add_authorization(s, packs, "falcon-nveu-ae", today - timedelta(days=340), actor="demo")
    ob.add_event(s, "transfer", "TR-DEMO-001", today + timedelta(days=75), authorization="aurora-uveu",
                 site="tyo-dc1", from_country="US", to_country="JP",
                 description="256 B200 from iad-dc1 to tyo-dc1 (sample data)", actor="demo")
    ob.set_entry(s, "site", "iad-dc1", 14, owner="Security Office", status="compliant",
                 review_date=today + timedelta(days=120), actor="demo")
    ob.add_evidence(s, "site", "iad-dc1", 14, "link", uri="https://intranet.example/policies/physical-security",
                    actor="demo")
    ob.set_entry(s, "site", "iad-dc1", 7, owner="Trust & Safety", status="in-progress", actor="demo")
    ob.store_weights(s, "lumen-frontier-1", "iad-dc1", ["nas-iad-01", "nas-iad-02"], True, actor="demo")


def _seed_cases(url: str, today: date) -> int:
    """Open red-flag-28 cases as metering does when a Tier 2 / Tier 3-parent customer's lineage crosses 1e26."""
    from agent import cases

    threshold = float(registry().value("eccn-4e091", "operations_threshold", today))
    noon = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    # Each lineage is one of the models in the ledger (_seed_models), at its recorded total, its case opened on the
    # day its run crossed the threshold: the queue shown as of an earlier day lists the cases open then.
    rows = (
        ("Lumen Analytics Pte", "lumen-frontier-1", 1.4e26, ["lumen/pytorchjob/frontier-pretrain"], 129),
        ("Pear Cloud SG", "pear-coder-next", 1.1e26, ["pear-train/jobset/coder-next", "pear-train/job/coder-eval"],
         3),
    )
    with session_scope(url) as s:
        for customer, model, ops, jobs, days_ago in rows:
            party = party_svc.get_party(s, customer)
            cases.open_metering_case(
                s, party=party, model_key=model, operations=ops, threshold=threshold, job_refs=jobs, actor="demo",
                now=noon - timedelta(days=days_ago),
                explanation=(f"{customer}: metered lineage {model} reached {ops:.2e} operations, above the "
                             f"{threshold:.0e} threshold of ECCN 4E091; the customer is headquartered (or its "
                             "ultimate parent is) outside Supp. 5(a), so red flag 28 applies (sample data)."),
            )
    return len(rows)


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def create_demo_token(url: str) -> str:
    from agent.auth import create_token

    with session_scope(url) as s:
        _row, secret = create_token(s, role="admin", name="demo", expires_days=1, created_by="demo")
    return secret


def serve(url: str, host: str, port: int) -> None:
    """Run API, dashboard and webhook on ``host:port`` with the production server runner (plain HTTP, local)."""
    from agent.server import run_server

    run_server(host=host, port=port, tls_cert=None, tls_key=None, database_url=url, log_level="warning")
