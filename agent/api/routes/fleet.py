"""/api/v1 for the fleet: parties, sites, holdings, caps, what-if, reservations, shipments; Prometheus gauges."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field
from sqlmodel import Session, select

from agent import caps as svc
from agent.api.deps import DbSession, get_as_of, get_packs, get_rules_as_of, require_tiers
from agent.api.fields import (
    MAX_OFFSET,
    JsonDate,
    StrictBody,
    api_detail,
    api_fields,
    error_response,
)
from agent.exports.base import chip_count
from agent.parties import Conflict, add_party, check_address, get_party, party_refs, party_summary
from agent.store.tables.core import Party, Site, utc_today
from policies.caps import exact
from policies.errors import PolicyError
from policies.jurisdictions import country_code, tier
from policies.packs import PackRegistry, parse_as_of, parse_date
from policies.parties import effective_tier

router = APIRouter(prefix="/api/v1", tags=["fleet"])

Limit = Query(100, ge=1, le=1000, description="Page size.")
Offset = Query(0, ge=0, le=MAX_OFFSET, description="Items to skip.")


page = svc.page


# --------------------------------------------------------------------------------------- parties/sites


@router.get("/parties", summary="Parties with their effective tier")
def parties(
    q: str | None = Query(None, description="Name contains (case-insensitive)."),
    tier_: int | None = Query(None, alias="tier", ge=1, le=3, description="Only this effective tier."),
    limit: int = Limit, offset: int = Offset,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    refs = party_refs(s, as_of)  # each party's HQ and parent on that date
    rows = []
    for p in s.exec(select(Party).order_by(Party.name)).all():
        if q and q.lower() not in p.name.lower():
            continue
        eff = effective_tier(packs, refs, p.name, as_of)
        if tier_ is not None and eff.tier != tier_:
            continue
        rows.append({"id": p.id, **eff.to_dict(), "parent": refs[p.name].parent, "address": p.address})
    return page(rows[offset:offset + limit], len(rows), limit, offset)


class PartyIn(StrictBody):
    """A new party, as ``veuctl parties add NAME --hq CC [--parent P] [--namespace NS ...] [--address A]``."""

    name: str = Field(min_length=1, max_length=200, description="Unique name, 1-200 printable characters.")
    hq: str = Field(min_length=1, max_length=100, description="Headquarters country: ISO code or name.")
    parent: str | None = Field(default=None, max_length=200, description="Immediate parent (a registered party).")
    namespaces: list[str] = Field(default_factory=list, max_length=200,
                                  description="Kubernetes namespaces of this customer.")
    cluster: str = Field(default="", max_length=253, description="Limit the namespace mapping to one cluster.")
    reassign: bool = Field(default=False, description="Move a namespace registered to another party to this one.")
    address: str | None = Field(default=None, description="Postal address, one line, at most 500 characters.")
    effective: JsonDate | None = Field(default=None, description="Date (UTC) the HQ and parent took effect (default: "
                                   "always); earlier dates read the party's first record.")


class PartyPatch(StrictBody):
    """Changes to a party; a field left out keeps its stored value (namespaces are added, never removed)."""

    hq: str | None = Field(default=None, min_length=1, max_length=100)
    parent: str | None = Field(default=None, max_length=200, description="New immediate parent.")
    no_parent: bool = Field(default=False, description="Remove the stored parent.")
    namespaces: list[str] = Field(default_factory=list, max_length=200)
    cluster: str = Field(default="", max_length=253)
    reassign: bool = False
    address: str | None = Field(default=None, description="New address; \"\" clears it.")
    effective: JsonDate | None = Field(default=None, description="Date (UTC) an HQ or parent change took effect "
                                   "(default today): earlier dates keep the earlier ones. Not in the future, "
                                   "nor before the party's previous change.")


# The service speaks the CLI's option names; the API names its JSON fields (see agent.api.fields).
_PARTY_FIELDS = {"namespace": "namespaces", "no-parent": "no_parent", "country": "hq"}


def _check_text(value: str, field: str) -> None:
    """Refuse control and invisible formatting characters (a bidi override spoofs a name on every page)."""
    bad = next((c for c in value if unicodedata.category(c).startswith("C")
                or unicodedata.category(c) in ("Zl", "Zp")), None)
    if bad is not None:
        raise HTTPException(422, f"{field}: contains a control or invisible formatting character "
                                 f"(U+{ord(bad):04X}); use printable text")


def _save_party(s: Session, name: str, hq: str | None, parent: str | None, body: PartyIn | PartyPatch,
                no_parent: bool = False) -> None:
    """``add_party`` (its checks and its audit entry), with errors naming the API's fields."""
    _check_text(name, "name")
    if parent is not None:
        _check_text(parent, "parent")
        if s.exec(select(Party).where(Party.name == parent.strip())).first() is None:
            raise HTTPException(422, f"parent: party {parent!r} is not registered; register it first "
                                     "(POST /api/v1/parties)")
    if body.address is not None:
        check_address(body.address, "address")
    try:
        add_party(s, name, hq, parent.strip() if parent else None, body.namespaces, body.cluster.strip(),
                  no_parent=no_parent, reassign=body.reassign, address=body.address, effective=body.effective)
    except PolicyError as exc:
        msg = str(exc)
        if msg.startswith("country:"):  # the resolver's generic name for the party's HQ
            msg = "hq:" + msg.removeprefix("country:")
        raise HTTPException(409 if isinstance(exc, Conflict) else 422, api_detail(msg, _PARTY_FIELDS)) from None


@router.post("/parties", status_code=201, summary="Register a party (customer, owner or operator)")
def create_party(
    body: PartyIn, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    name = body.name.strip()
    if s.exec(select(Party).where(Party.name == name)).first() is not None:
        raise HTTPException(409, f"name: party {name!r} is already registered; change it with "
                                 f"PATCH /api/v1/parties/{quote(name, safe='')}")
    _save_party(s, name, body.hq, body.parent, body)
    return party_summary(s, packs, name, utc_today())


@router.get("/parties/{name:path}", summary="One party with its ultimate parent, effective tier and namespaces")
def show_party(
    name: str, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return party_summary(s, packs, name, as_of)


@router.patch("/parties/{name:path}", summary="Change a party's HQ, parent, address or add namespaces")
def update_party(
    name: str, body: PartyPatch, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    party = get_party(s, name)  # 404 when not registered
    if body.parent and body.no_parent:
        raise HTTPException(422, "parent/no_parent: name a parent or remove it, not both")
    _save_party(s, party.name, body.hq, body.parent, body, no_parent=body.no_parent)  # None keeps the HQ
    today = utc_today()
    # Recorded whatever it does (the registry holds the truth); the answer says which authorizations it left
    # covering no chip, as `veuctl parties add` does.
    return {**party_summary(s, packs, party.name, today),
            "warnings": svc.ineligible_authorizations(s, packs, party.name, today)}


def _site_rows(s: Session, packs: PackRegistry, as_of: date) -> list[dict[str, Any]]:
    base = svc.placements(s, packs, as_of)
    # Chips summed exactly (seven 1/7 MIG slices are one GPU) and written as the exports write them (chip_count):
    # 500, never 500.0. TPP stays a float sum, as before.
    counts: dict[str, Fraction] = {}
    tpps: dict[str, float] = {}
    for p in base:
        counts[p.site] = counts.get(p.site, Fraction(0)) + exact(p.count)
        tpps[p.site] = tpps.get(p.site, 0.0) + float(p.tpp)
    out = []
    for x in s.exec(select(Site).order_by(Site.name)).all():
        t = tier(packs, x.country, as_of)
        out.append({"name": x.name, "country": x.country, "country_name": t.name, "tier": t.tier,
                    "provider": x.provider, "region": x.region, "cluster": x.cluster,
                    "count": chip_count(counts.get(x.name, Fraction(0))), "tpp": tpps.get(x.name, 0.0)})
    return out


def _country_filter(country: str | None) -> str | None:
    """A country filter as its ISO code (a name too); not a country is a 422 naming ``country``, not an empty
    page (empty: every country)."""
    if not country:
        return None
    with svc.named("--country"):
        return country_code(country)


@router.get("/sites", summary="Sites with country, tier and installed accelerators")
def sites(
    country: str | None = Query(None), tier_: int | None = Query(None, alias="tier", ge=1, le=3),
    limit: int = Limit, offset: int = Offset,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    country = _country_filter(country)
    rows = [r for r in _site_rows(s, packs, as_of)
            if (country is None or r["country"] == country) and (tier_ is None or r["tier"] == tier_)]
    return page(rows[offset:offset + limit], len(rows), limit, offset)


@router.get("/holdings", summary="Holdings in force on a date (filter by site, country, accelerator)")
def holdings(
    site: str | None = None, country: str | None = None, accelerator: str | None = None,
    limit: int = Limit, offset: int = Offset,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_rules_as_of),
) -> dict[str, Any]:
    from agent.inventory import check_accelerator

    country = _country_filter(country)
    if accelerator:
        check_accelerator(s, accelerator)  # an alias or a typo matched nothing: a 422 naming the id to use
    return svc.holdings_page(s, packs, as_of, site=site, country=country, accelerator=accelerator or None,
                             limit=limit, offset=offset)


@router.get("/holdings/summary", summary="Installed 3A090.a-class TPP by country and tier")
def holdings_summary(
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_rules_as_of),
) -> dict[str, Any]:
    return {"as_of": as_of.isoformat(), **svc.summarize(packs, svc.placements(s, packs, as_of), as_of)}


@router.get("/holdings/series", summary="Installed 3A090.a-class TPP by tier over time")
def holdings_series(
    start: str | None = Query(None, alias="from", description="First date (default: 12 months back)."),
    end: str | None = Query(None, alias="to", description="Last date (default: as_of)."),
    points: int = Query(13, ge=2, le=60),
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_rules_as_of),
) -> dict[str, Any]:
    days = series_days(start, end, points, as_of)
    require_tiers(packs, days[-1], "to" if end else "as_of")  # points before the rules are left out, not the last
    return {"series": svc.installed_series(s, packs, days)}


def series_days(start: str | None, end: str | None, points: int, as_of: date) -> list[date]:
    last = parse_as_of(end, "to") if end else as_of
    first = parse_as_of(start, "from") if start else last - timedelta(days=365)
    if first >= last:
        raise PolicyError("from: must be before 'to'")
    step = (last - first) / (points - 1)
    return [first + step * i for i in range(points - 1)] + [last]


# ------------------------------------------------------------------------------------ authorizations


class AuthorizationIn(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["uveu", "nveu"]
    holder: str = Field(min_length=1, max_length=200)
    country: str | None = Field(default=None, description="NVEU: the one destination country.")
    reference: str = Field(default="", max_length=200)


@router.get("/authorizations", summary="Data Center VEU authorizations")
def authorizations(s: Session = DbSession) -> dict[str, Any]:
    rows = [svc.authorization_dict(s, a) for a in svc.list_authorizations(s)]
    return page(rows, len(rows), len(rows) or 1, 0)


@router.post("/authorizations", status_code=201, summary="Register a UVEU or an NVEU")
def create_authorization(
    body: AuthorizationIn, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    row = svc.add_authorization(s, packs, body.name, body.kind, body.holder, body.country, body.reference)
    return svc.authorization_dict(s, row)


# ---------------------------------------------------------------------------------------------- caps


@router.get("/caps", summary="Every authorization's caps and the fleet-wide allocations")
def caps_overview(
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.overview(s, packs, as_of)


@router.get("/caps/allocations", summary="Tier 2 country allocations and LPP per ultimate consignee")
def caps_allocations(
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.allocations_report(s, packs, as_of)  # as `veuctl caps show`: with a note when no figure exists


@router.get("/caps/{name}", summary="One authorization's caps: limit, value, headroom, ok, explanation")
def caps_show(
    name: str, include_reservations: bool = True,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    caps = svc.caps_for(s, packs, name, as_of, include_reservations=include_reservations)
    return svc.caps_report(caps, as_of, authorization=name)


# ``cap_id:path``: a per-consignee LPP cap ends in the party's name, and "Nordisk Compute A/S" holds a "/".
@router.get("/caps/{name}/explain/{cap_id:path}", summary="Explain one cap down to the holdings")
def caps_explain(
    name: str, cap_id: str, limit: int = Limit, offset: int = Offset,
    part: Literal["numerator", "all"] = Query("numerator", description="Holdings in the numerator, or all counted"),
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> dict[str, Any]:
    return svc.explain(s, packs, name, cap_id, as_of, limit, offset, part)


class WhatIfIn(StrictBody):
    authorization: str
    op: Literal["add", "move", "retire"] = "add"
    n: int = Field(ge=0, le=10_000_000)
    chip: str
    site: str
    to_site: str | None = None
    owner: str | None = None
    operator: str | None = None
    as_of: str | None = None


# The what-if's CLI names the count after the change (--add N, --move N) and the destination --to.
WHATIF_FIELDS = {"add": "n", "move": "n", "retire": "n", "to": "to_site"}


@router.post("/whatif", summary="Every cap before and after a planned change; what binds; the max that fits")
@api_fields(WHATIF_FIELDS)
def whatif(
    body: WhatIfIn, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    d = parse_as_of(body.as_of, "as_of") if body.as_of else utc_today()
    return svc.whatif(s, packs, body.authorization, op=body.op, n=body.n, chip_name=body.chip, site=body.site,
                      to_site=body.to_site, as_of=d, owner=body.owner, operator=body.operator)


# ------------------------------------------------------------------------------------- reservations


class ReservationIn(StrictBody):
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


RESERVATION_STATUSES = ("active", "released", "installed")


@router.get("/reservations", summary="Reservations (filter by authorization and status)")
def reservations(
    authorization: str | None = None, status: str | None = Query("active", description="active|released|installed"),
    limit: int = Limit, offset: int = Offset, s: Session = DbSession,
) -> dict[str, Any]:
    if status and status not in RESERVATION_STATUSES:
        # A misspelt filter answered an empty page, which reads as "nothing reserved".
        raise HTTPException(422, f"status: {status!r} is not one of {', '.join(RESERVATION_STATUSES)} "
                                 "(empty: every status)")
    rows = [svc.reservation_dict(s, r) for r in svc.list_reservations(s, authorization, status or None)]
    return page(rows[offset:offset + limit], len(rows), limit, offset)


RESERVATION_FIELDS = {"add": "count", "expires": "expires_on"}


@router.post("/reservations", status_code=201, summary="Reserve headroom (409 when it would exceed a cap)")
@api_fields(RESERVATION_FIELDS)
def create_reservation(
    body: ReservationIn, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    d = parse_as_of(body.planned_for, "planned_for") if body.planned_for else utc_today()
    until = parse_date(body.expires_on, "expires_on") if body.expires_on else None
    try:
        row = svc.reserve(s, packs, body.authorization, n=body.count, chip_name=body.chip, site=body.site,
                          planned_for=d, owner=body.owner, operator=body.operator, note=body.note, expires_on=until)
    except svc.CapExceeded as exc:
        raise HTTPException(409, str(exc)) from None
    return svc.reservation_dict(s, row)


@router.post("/reservations/{rid}/release", summary="Release a reservation's headroom")
def release_reservation(rid: int, s: Session = DbSession) -> dict[str, Any]:
    return svc.reservation_dict(s, svc.close_reservation(s, rid, "released"))


@router.post("/reservations/{rid}/installed", summary="Mark a reservation installed")
def install_reservation(rid: int, s: Session = DbSession) -> dict[str, Any]:
    return svc.reservation_dict(s, svc.close_reservation(s, rid, "installed"))


# ----------------------------------------------------------------------------------------- shipments


class ShipmentIn(StrictBody):
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
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    rows, total = svc.list_shipments(s, consignee, destination, via, limit, offset)
    return page([svc.shipment_dict(s, packs, r) for r in rows], total, limit, offset)


@router.post("/shipments", status_code=201, summary="Record a shipment")
def create_shipment(
    body: ShipmentIn, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
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
                    party_ids = {p.name: p.id for p in s.exec(select(Party)).all()}
            except Exception:  # a scrape must never fail because the store is busy or mid-migration
                continue
            for c in ov["installed"]["countries"]:
                tpp.add_metric([c["country"], str(c["tier"])], c["tpp"])
            for a in [*ov["authorizations"], {"name": "allocations", **ov["allocations"]}]:
                for cap in a["caps"]:
                    cap_id = metric_cap_id(cap["id"], party_ids)
                    if cap["utilisation"] is not None:
                        util.add_metric([a["name"], cap_id, str(cap["binding"]).lower()], cap["utilisation"])
                    ok.add_metric([a["name"], cap_id], 1.0 if cap["ok"] else 0.0)
        yield tpp
        yield util
        yield ok


# Caps whose id ends in a customer's name. /metrics is scraped without credentials, so the name is replaced
# by the party's id (``GET /api/v1/parties/{name}`` shows it to a signed-in user).
_CUSTOMER_CAPS = ("lpp.consignee.",)


def metric_cap_id(cap_id: str, party_ids: dict[str, int | None]) -> str:
    """``cap_id`` as a metric label: ``lpp.consignee.Lumen Analytics Pte`` -> ``lpp.consignee.party-7``."""
    for prefix in _CUSTOMER_CAPS:
        if cap_id.startswith(prefix):
            name = cap_id[len(prefix):]
            pid = party_ids.get(name)
            # Not a registered party (cannot happen for a ledger entry): a digest, still no name.
            tail = f"party-{pid}" if pid is not None else "sha256-" + hashlib.sha256(name.encode()).hexdigest()[:12]
            return prefix + tail
    return cap_id


_collector = FleetCollector()
_registered = False


def setup(app: FastAPI) -> None:
    global _registered

    @app.exception_handler(svc.NotFound)
    async def _not_found(req: Request, exc: svc.NotFound) -> JSONResponse:
        return error_response(req, 404, exc)

    _collector.urls.append(app.state.database_url)
    if not _registered:
        REGISTRY.register(_collector)
        _registered = True
