"""/api/v1 for the fleet: parties, sites, holdings, caps, what-if, reservations, shipments; Prometheus gauges."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from agent import caps as svc
from agent.api.deps import get_as_of, get_packs, get_session
from agent.parties import party_refs
from agent.store.tables.core import Party, Site, utc_today
from policies.errors import PolicyError
from policies.jurisdictions import tier
from policies.packs import PackRegistry, parse_date
from policies.parties import effective_tier

router = APIRouter(prefix="/api/v1", tags=["fleet"])

Limit = Query(100, ge=1, le=1000, description="Page size.")
Offset = Query(0, ge=0, description="Items to skip.")


page = svc.page


# --------------------------------------------------------------------------------------- parties/sites


@router.get("/parties", summary="Parties with their effective tier")
def parties(
    q: str | None = Query(None, description="Name contains (case-insensitive)."),
    tier_: int | None = Query(None, alias="tier", ge=1, le=3, description="Only this effective tier."),
    limit: int = Limit, offset: int = Offset,
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    refs = party_refs(s)
    rows = []
    for p in s.exec(select(Party).order_by(Party.name)).all():
        if q and q.lower() not in p.name.lower():
            continue
        eff = effective_tier(packs, refs, p.name, as_of)
        if tier_ is not None and eff.tier != tier_:
            continue
        rows.append({**eff.to_dict(), "parent": refs[p.name].parent, "address": p.address})
    return page(rows[offset:offset + limit], len(rows), limit, offset)


def _site_rows(s: Session, packs: PackRegistry, as_of: date) -> list[dict[str, Any]]:
    base = svc.placements(s, packs, as_of)
    by_site: dict[str, dict[str, float]] = {}
    for p in base:
        agg = by_site.setdefault(p.site, {"count": 0.0, "tpp": 0.0})
        agg["count"] += float(p.count)
        agg["tpp"] += float(p.tpp)
    out = []
    for x in s.exec(select(Site).order_by(Site.name)).all():
        t = tier(packs, x.country, as_of)
        agg = by_site.get(x.name, {"count": 0.0, "tpp": 0.0})
        out.append({"name": x.name, "country": x.country, "country_name": t.name, "tier": t.tier,
                    "provider": x.provider, "region": x.region, "cluster": x.cluster, **agg})
    return out


@router.get("/sites", summary="Sites with country, tier and installed accelerators")
def sites(
    country: str | None = Query(None), tier_: int | None = Query(None, alias="tier", ge=1, le=3),
    limit: int = Limit, offset: int = Offset,
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    rows = [r for r in _site_rows(s, packs, as_of)
            if (country is None or r["country"] == country.upper()) and (tier_ is None or r["tier"] == tier_)]
    return page(rows[offset:offset + limit], len(rows), limit, offset)


@router.get("/holdings", summary="Holdings in force on a date (filter by site, country, accelerator)")
def holdings(
    site: str | None = None, country: str | None = None, accelerator: str | None = None,
    limit: int = Limit, offset: int = Offset,
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.holdings_page(s, packs, as_of, site=site, country=country, accelerator=accelerator, limit=limit,
                         offset=offset)


@router.get("/holdings/summary", summary="Installed 3A090.a-class TPP by country and tier")
def holdings_summary(
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return {"as_of": as_of.isoformat(), **svc.summarize(packs, svc.placements(s, packs, as_of), as_of)}


@router.get("/holdings/series", summary="Installed 3A090.a-class TPP by tier over time")
def holdings_series(
    start: str | None = Query(None, alias="from", description="First date (default: 12 months back)."),
    end: str | None = Query(None, alias="to", description="Last date (default: as_of)."),
    points: int = Query(13, ge=2, le=60),
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return {"series": svc.installed_series(s, packs, series_days(start, end, points, as_of))}


def series_days(start: str | None, end: str | None, points: int, as_of: date) -> list[date]:
    last = parse_date(end, "to") if end else as_of
    first = parse_date(start, "from") if start else last - timedelta(days=365)
    if first >= last:
        raise PolicyError("from: must be before 'to'")
    step = (last - first) / (points - 1)
    return [first + step * i for i in range(points - 1)] + [last]


# ------------------------------------------------------------------------------------ authorizations


class AuthorizationIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["uveu", "nveu"]
    holder: str = Field(min_length=1, max_length=200)
    country: str | None = Field(default=None, description="NVEU: the one destination country.")
    reference: str = Field(default="", max_length=200)


@router.get("/authorizations", summary="Data Center VEU authorizations")
def authorizations(s: Session = Depends(get_session)) -> dict[str, Any]:
    rows = [svc.authorization_dict(s, a) for a in svc.list_authorizations(s)]
    return page(rows, len(rows), len(rows) or 1, 0)


@router.post("/authorizations", status_code=201, summary="Register a UVEU or an NVEU")
def create_authorization(
    body: AuthorizationIn, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    row = svc.add_authorization(s, packs, body.name, body.kind, body.holder, body.country, body.reference)
    return svc.authorization_dict(s, row)


# ---------------------------------------------------------------------------------------------- caps


@router.get("/caps", summary="Every authorization's caps and the fleet-wide allocations")
def caps_overview(
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.overview(s, packs, as_of)


@router.get("/caps/allocations", summary="Tier 2 country allocations and LPP per ultimate consignee")
def caps_allocations(
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.caps_report(svc.allocation_caps(s, packs, as_of), as_of, authorization=None)


@router.get("/caps/{name}", summary="One authorization's caps: limit, value, headroom, ok, explanation")
def caps_show(
    name: str, include_reservations: bool = True,
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    caps = svc.caps_for(s, packs, name, as_of, include_reservations=include_reservations)
    return svc.caps_report(caps, as_of, authorization=name)


@router.get("/caps/{name}/explain/{cap_id}", summary="Explain one cap down to the holdings")
def caps_explain(
    name: str, cap_id: str, limit: int = Limit, offset: int = Offset,
    part: Literal["numerator", "all"] = Query("numerator", description="Holdings in the numerator, or all counted"),
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.explain(s, packs, name, cap_id, as_of, limit, offset, part)


class WhatIfIn(BaseModel):
    authorization: str
    op: Literal["add", "move", "retire"] = "add"
    n: int = Field(ge=0, le=10_000_000)
    chip: str
    site: str
    to_site: str | None = None
    owner: str | None = None
    operator: str | None = None
    as_of: str | None = None


@router.post("/whatif", summary="Every cap before and after a planned change; what binds; the max that fits")
def whatif(
    body: WhatIfIn, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    d = parse_date(body.as_of, "as_of") if body.as_of else utc_today()
    return svc.whatif(s, packs, body.authorization, op=body.op, n=body.n, chip_name=body.chip, site=body.site,
                      to_site=body.to_site, as_of=d, owner=body.owner, operator=body.operator)


# ------------------------------------------------------------------------------------- reservations


class ReservationIn(BaseModel):
    authorization: str
    count: int = Field(gt=0, le=10_000_000)
    chip: str
    site: str
    planned_for: str | None = None
    expires_on: str | None = Field(default=None, description="YYYY-MM-DD: stop holding the headroom on this "
                                   "date unless released or installed before (default: never)")
    owner: str | None = None
    operator: str | None = None
    note: str = Field(default="", max_length=500)


@router.get("/reservations", summary="Reservations (filter by authorization and status)")
def reservations(
    authorization: str | None = None, status: str | None = Query("active", description="active|released|installed"),
    limit: int = Limit, offset: int = Offset, s: Session = Depends(get_session),
) -> dict[str, Any]:
    rows = [svc.reservation_dict(s, r) for r in svc.list_reservations(s, authorization, status or None)]
    return page(rows[offset:offset + limit], len(rows), limit, offset)


@router.post("/reservations", status_code=201, summary="Reserve headroom (409 when it would exceed a cap)")
def create_reservation(
    body: ReservationIn, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    d = parse_date(body.planned_for, "planned_for") if body.planned_for else utc_today()
    until = parse_date(body.expires_on, "expires_on") if body.expires_on else None
    try:
        row = svc.reserve(s, packs, body.authorization, n=body.count, chip_name=body.chip, site=body.site,
                          planned_for=d, owner=body.owner, operator=body.operator, note=body.note, expires_on=until)
    except svc.CapExceeded as exc:
        raise HTTPException(409, str(exc)) from None
    return svc.reservation_dict(s, row)


@router.post("/reservations/{rid}/release", summary="Release a reservation's headroom")
def release_reservation(rid: int, s: Session = Depends(get_session)) -> dict[str, Any]:
    return svc.reservation_dict(s, svc.close_reservation(s, rid, "released"))


@router.post("/reservations/{rid}/installed", summary="Mark a reservation installed")
def install_reservation(rid: int, s: Session = Depends(get_session)) -> dict[str, Any]:
    return svc.reservation_dict(s, svc.close_reservation(s, rid, "installed"))


# ----------------------------------------------------------------------------------------- shipments


class ShipmentIn(BaseModel):
    date: str
    consignee: str
    destination: str
    chip: str
    count: float = Field(gt=0)
    via: Literal["licence", "lpp", "uveu", "nveu", "aia", "other"]
    reference: str = Field(default="", max_length=200)
    authorization: str | None = None
    value_usd: float | None = Field(default=None, ge=0, le=svc.MAX_VALUE_USD, allow_inf_nan=False, strict=True,
                                    description="Value of the items in US dollars (null: not recorded).")


@router.get("/shipments", summary="The shipments ledger (filter by consignee, destination, via)")
def shipments(
    consignee: str | None = None, destination: str | None = None, via: str | None = None,
    limit: int = Limit, offset: int = Offset,
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    rows, total = svc.list_shipments(s, consignee, destination, via, limit, offset)
    return page([svc.shipment_dict(s, packs, r) for r in rows], total, limit, offset)


@router.post("/shipments", status_code=201, summary="Record a shipment")
def create_shipment(
    body: ShipmentIn, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    row = svc.add_shipment(s, packs, day=body.date, consignee=body.consignee, destination=body.destination,
                           chip_name=body.chip, count=body.count, via=body.via, reference=body.reference,
                           authorization=body.authorization, value_usd=body.value_usd)
    return svc.shipment_dict(s, packs, row)


# ---------------------------------------------------------------------------------------- metrics


class FleetCollector(Collector):
    """Computes the fleet gauges on each scrape: holdings TPP by country/tier and cap utilisation."""

    def __init__(self) -> None:
        self.urls: list[str | None] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from agent.packs import registry
        from agent.store import session_scope

        tpp = GaugeMetricFamily("veu_holdings_tpp", "Installed 3A090.a-class TPP", labels=["country", "tier"])
        util = GaugeMetricFamily("veu_cap_utilisation", "Cap value / limit (1 = at the limit)",
                                 labels=["authorization", "cap", "binding"])
        ok = GaugeMetricFamily("veu_cap_ok", "1 when the cap is within its limit", labels=["authorization", "cap"])
        today = utc_today()
        for url in self.urls[-1:]:
            try:
                with session_scope(url) as s:
                    ov = svc.overview(s, registry(), today)
            except Exception:  # a scrape must never fail because the store is busy or mid-migration
                continue
            for c in ov["installed"]["countries"]:
                tpp.add_metric([c["country"], str(c["tier"])], c["tpp"])
            for a in [*ov["authorizations"], {"name": "allocations", **ov["allocations"]}]:
                for cap in a["caps"]:
                    if cap["utilisation"] is not None:
                        util.add_metric([a["name"], cap["id"], str(cap["binding"]).lower()], cap["utilisation"])
                    ok.add_metric([a["name"], cap["id"]], 1.0 if cap["ok"] else 0.0)
        yield tpp
        yield util
        yield ok


_collector = FleetCollector()
_registered = False


def setup(app: FastAPI) -> None:
    global _registered

    @app.exception_handler(svc.NotFound)
    async def _not_found(_req: Request, exc: svc.NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    _collector.urls.append(app.state.database_url)
    if not _registered:
        REGISTRY.register(_collector)
        _registered = True
