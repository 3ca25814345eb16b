"""A small fleet for export tests: sites in Tier 1 and Tier 2 countries, a UVEU, an NVEU, shipments, a move."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import Session

from agent import caps, parties
from agent.store.tables.core import Holding, Site
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

T0 = datetime(2026, 1, 5, tzinfo=UTC)
MOVE = datetime(2026, 3, 2, tzinfo=UTC)


def seed(s: Session, packs: PackRegistry) -> None:
    parties.add_party(s, "Frontier Cloud", "US")
    parties.add_party(s, "Gulf AI", "AE")
    de = parties.add_site(s, "fra-1", "DE")
    us = parties.add_site(s, "iad-1", "US")
    ae = parties.add_site(s, "auh-1", "AE")
    owner = parties.get_party(s, "Frontier Cloud").id if hasattr(parties, "get_party") else None
    rows = [("h-us-1", us, "h100-sxm", 512), ("h-us-2", us, "h200-sxm", 256), ("h-de-1", de, "h100-sxm", 128),
            ("h-ae-1", ae, "h100-sxm", 64)]
    for ext, site, acc, n in rows:
        s.add(Holding(source="csv", external_id=ext, site_id=site.id, accelerator=acc, count=n,  # type: ignore[arg-type]
                      owner_id=owner, operator_id=owner, first_seen=T0, last_seen=T0))
    # One holding moved from Germany to the UAE on 2 March 2026 (versioned history).
    mover = Holding(source="csv", external_id="h-move-1", site_id=ae.id, accelerator="h100-sxm", count=32,  # type: ignore[arg-type]
                    owner_id=owner, operator_id=owner, first_seen=T0, last_seen=MOVE)
    s.add(mover)
    s.flush()
    s.add(HoldingPeriod(holding_id=mover.id, site_id=de.id, accelerator="h100-sxm", count=32,  # type: ignore[arg-type]
                        owner_id=owner, operator_id=owner, valid_from=T0, valid_to=MOVE))
    s.add(HoldingPeriod(holding_id=mover.id, site_id=ae.id, accelerator="h100-sxm", count=32,  # type: ignore[arg-type]
                        owner_id=owner, operator_id=owner, valid_from=MOVE, valid_to=None))
    retired = Holding(source="csv", external_id="h-dead-1", site_id=de.id, accelerator="h100-sxm", count=8,  # type: ignore[arg-type]
                      owner_id=owner, first_seen=T0, last_seen=T0, retired_at=datetime(2026, 4, 1, tzinfo=UTC))
    s.add(retired)
    s.flush()
    caps.add_authorization(s, packs, "UVEU-FC-1", "uveu", "Frontier Cloud", None, actor="test")
    caps.add_authorization(s, packs, "NVEU-GA-1", "nveu", "Gulf AI", "AE", actor="test")
    caps.add_shipment(s, packs, day=date(2026, 2, 10), consignee="Gulf AI", destination="AE", chip_name="h100-sxm",
                      count=64, via="nveu", authorization="NVEU-GA-1", actor="test")
    caps.add_shipment(s, packs, day=date(2026, 5, 3), consignee="Gulf AI", destination="AE", chip_name="h100-sxm",
                      count=100, via="lpp", actor="test")
    _ = Site


def seed_cases(s: Session) -> None:
    """Two red-flag cases (one resolved with answers, one open) and the admission decisions behind them."""
    import json

    from agent.store.tables.cases import AdmissionDecision, RedFlagCase

    t = datetime(2026, 2, 3, 9, 0, tzinfo=UTC)
    resolved = RedFlagCase(customer_name="Gulf AI", model_key="falcon-x", status="resolved",
                           estimate_operations=3.2e26, threshold=1e26, jobs=json.dumps(["c/ns/Job/a"]),
                           explanation="lineage 3.2e26 > 1e26", export_intent=False, customer_informed=True,
                           resolved_by="token:compliance", resolved_at=t, opened_at=t,
                           expires_at=datetime(2026, 5, 1, tzinfo=UTC), updated_at=t)
    open_case = RedFlagCase(customer_name="Gulf AI", model_key="falcon-y", status="open",
                            estimate_operations=1.5e26, threshold=1e26, jobs=json.dumps(["c/ns/Job/b"]),
                            explanation="lineage 1.5e26 > 1e26", opened_at=datetime(2026, 6, 1, tzinfo=UTC))
    s.add(resolved)
    s.add(open_case)
    s.flush()
    for i, (code, allowed, case) in enumerate([("held-inquiry", False, resolved.id), ("allowed", True, None),
                                               ("held-inquiry", False, open_case.id), ("allowed", True, None)]):
        s.add(AdmissionDecision(uid=f"u{i}", decided_at=t.replace(month=2 + i), namespace="ns", kind="Job",
                                name=f"j{i}", operation="CREATE", job_ref=f"c/ns/Job/j{i}", customer_name="Gulf AI",
                                model_key="falcon-x", code=code, allowed=allowed, chips=64.0, case_id=case,
                                lineage_operations=3.2e26 if case else 1e24, message=code,
                                pack_versions=json.dumps({"ai-diffusion-2025": "2025.01.15-r1"})))
    s.flush()
