"""A small fleet in the store: a US-headquartered UVEU group, an NVEU holder, sites in Tier 1 and Tier 2."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def seed_fleet(url: str) -> None:
    """Aurora (US HQ): 900 H100 in the US, 30 in the UAE, 70 in Germany; Falcon (AE) NVEU with 100 in the UAE."""
    packs = registry()
    with session_scope(url) as s:
        party_svc.add_party(s, "Aurora", "US")
        party_svc.add_party(s, "Aurora EU", "DE", parent="Aurora")
        party_svc.add_party(s, "Falcon", "AE")
        party_svc.add_party(s, "Lumen", "SG")
        for name, cc in (("iad", "US"), ("fra", "DE"), ("dxb", "AE"), ("sin", "SG")):
            party_svc.add_site(s, name, cc)
        s.flush()
        sites = {x.name: x.id for x in s.exec(select(Site)).all()}
        ids = {p.name: p.id for p in s.exec(select(Party)).all()}
        for i, (site, n, owner) in enumerate(
            (("iad", 900, "Aurora"), ("dxb", 30, "Aurora EU"), ("fra", 70, "Aurora EU"), ("dxb", 100, "Falcon"))
        ):
            s.add(Holding(source="test", external_id=f"h{i}", site_id=sites[site], accelerator="h100-sxm", count=n,
                          owner_id=ids[owner], operator_id=ids[owner], first_seen=T0))
        svc.add_authorization(s, packs, "aurora", "uveu", "Aurora", None)
        svc.add_authorization(s, packs, "falcon-ae", "nveu", "Falcon", "AE")
