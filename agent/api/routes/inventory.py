"""Inventory API: individual holdings with their provenance (paginated, filtered), the installed base, runs.

The caps area serves ``/api/v1/holdings`` and ``/api/v1/sites`` (holdings in force, by site); these endpoints
add what only the inventory knows: source, provider id, serial, first/last seen, retirement and collector runs.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import func
from sqlmodel import Session, col, select

from agent.api.deps import DbSession, get_packs, get_rules_as_of
from agent.api.fields import MAX_OFFSET
from agent.exports.base import chip_count
from agent.store.tables.core import Holding, Party, Site
from agent.store.tables.inventory import CollectorError, CollectorRun
from policies.packs import PackRegistry

router = APIRouter(prefix="/api/v1/inventory", tags=["inventory"])


def _checked_filters(s: Session, source: str | None = None, accelerator: str | None = None,
                     site: str | None = None) -> int | None:
    """Refuse a filter value that can match nothing because it names nothing: an unknown source or accelerator
    is a 422, an unknown site a 404 (``NotFound``, as ``installed-base``; the app's error handlers map them);
    the id of ``site`` when given."""
    from agent.inventory import check_accelerator, check_source, site_id_of

    if source:
        check_source(s, source)
    if accelerator:
        check_accelerator(s, accelerator)
    return site_id_of(s, site) if site else None


def _party_id(s: Session, name: str, field: str) -> int | None:
    """The id of the party a filter names. One not registered is a 422 on the parameter, as every other party a
    query or body names (``shipments?consignee=``, a what-if's ``owner``): the list exists, the filter names
    nothing (an empty page would read as "holds no chips"). A registered party holding nothing lists nothing."""
    p = s.exec(select(Party).where(Party.name == name)).first()
    if p is None:
        raise HTTPException(422, detail=f"{field}: party {name!r} is not registered; give a name GET /api/v1/parties "
                                        f"lists, or leave {field} empty for every party")
    return p.id


@router.get("/holdings", summary="Holdings with source, provider id, serial, first/last seen and retirement")
def holdings(
    source: str | None = Query(None, description="A collector (aws, gcp, k8s, nvml, csv) or a source held."),
    site: str | None = Query(None, description="A registered site's name (404 if none)."),
    accelerator: str | None = Query(None, description="A catalog accelerator id (e.g. h100-sxm) or one held."),
    owner: str | None = None,
    operator: str | None = None,
    serial: str | None = None,
    include_retired: bool = Query(False, description="Also list retired holdings."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    s: Session = DbSession,
) -> dict[str, Any]:
    site_id = _checked_filters(s, source, accelerator, site)
    q = select(Holding, Site).join(Site, col(Site.id) == Holding.site_id)
    if source:
        q = q.where(Holding.source == source)
    if site_id is not None:
        q = q.where(Holding.site_id == site_id)
    if accelerator:
        q = q.where(Holding.accelerator == accelerator)
    if serial:
        q = q.where(Holding.serial == serial)
    # An empty value means every value, as in every other filter (docs/api.md, Filters).
    if owner:
        q = q.where(Holding.owner_id == _party_id(s, owner, "owner"))
    if operator:
        q = q.where(Holding.operator_id == _party_id(s, operator, "operator"))
    if not include_retired:
        q = q.where(col(Holding.retired_at).is_(None))
    total = s.exec(select(func.count()).select_from(q.subquery())).one()
    names = {p.id: p.name for p in s.exec(select(Party)).all()}
    items = [
        {
            "id": h.id,
            "source": h.source,
            "external_id": h.external_id,
            "scope": h.scope,
            "site": st.name,
            "country": st.country,
            "accelerator": h.accelerator,
            "count": chip_count(h.count),  # as the exports write it: 500, never 500.0
            "serial": h.serial,
            "instance_type": h.instance_type,
            "owner": names.get(h.owner_id),
            "operator": names.get(h.operator_id),
            "first_seen": h.first_seen,
            "last_seen": h.last_seen,
            "retired_at": h.retired_at,
        }
        for h, st in s.exec(q.order_by(col(Holding.id)).offset(offset).limit(limit)).all()
    ]
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": offset + limit if offset + limit < total else None,
    }


@router.get("/installed-base", summary="The installed base on a date: by site/chip/owner/operator, TPP, totals")
def installed_base(
    site: str | None = None,
    s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_rules_as_of),
) -> dict[str, Any]:
    from agent.inventory import installed_base as base

    return base(s, packs, as_of, site)  # an unknown site is a NotFound: 404; counts written as the exports do


@router.get("/runs", summary="Recent collector runs with status and errors")
def runs(
    source: str | None = Query(None, description="A collector (aws, gcp, k8s, nvml, csv) or a source held."),
    limit: int = Query(20, ge=1, le=500),
    s: Session = DbSession,
) -> list[dict[str, Any]]:
    _checked_filters(s, source)
    q = select(CollectorRun).order_by(col(CollectorRun.id).desc()).limit(limit)
    if source:
        q = q.where(CollectorRun.source == source)
    out = []
    for r in s.exec(q).all():
        errs = s.exec(select(CollectorError).where(CollectorError.run_id == r.id)).all()
        out.append(r.model_dump(mode="json") | {"errors": [{"scope": e.scope, "message": e.message} for e in errs]})
    return out
