"""/api/v1/paths, /api/v1/controls, /api/v1/deadlines, /api/v1/weights: obligations beyond admission."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlmodel import Session

from agent import obligations as svc
from agent.api.deps import DbSession, get_as_of, get_packs
from agent.api.fields import JsonDate, StrictBody, api_fields, error_response
from agent.audit import current_actor
from policies import obligations as core
from policies.errors import PolicyError
from policies.packs import PackRegistry

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["obligations"])


def _actor(request: Request) -> str:
    p = getattr(request.state, "principal", None)
    return str(getattr(p, "actor", "")) or current_actor()


@router.get("/paths")
@api_fields({"date": "as_of"})  # the CLI's --date is the API's as_of
def paths(
    items: str = Query(..., description="'NAME x COUNT[, ...]', e.g. 'H100 SXM x 2048'"),
    consignee: str = Query(...),
    country: str = Query(...),
    kind: str = Query("export", description="export | reexport | transfer"),
    operator: str | None = None,
    end_use: str | None = None,
    aia_certified: bool = False,
    on: date = Depends(get_as_of),
    s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """Which paths open a proposed export, reexport or transfer, why, with citations (``as_of`` = its date)."""
    return svc.to_json(svc.paths(s, packs, items, consignee, country, on, kind, operator, end_use, aia_certified))


@router.get("/controls/paragraphs")
def paragraphs(on: date = Depends(get_as_of), packs: PackRegistry = Depends(get_packs)) -> list[dict[str, Any]]:
    return [p.to_dict() for p in core.paragraphs(packs, on)]


@router.get("/controls/{scope}/{subject}")
def register(
    scope: str, subject: str, on: date = Depends(get_as_of), s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """The Supp. No. 10 checklist of a site or authorization (with ¶7 runs and ¶8 weights for a site)."""
    return svc.to_json(svc.register(s, packs, scope, subject, on))


class EntryIn(StrictBody):
    owner: str | None = Field(default=None, max_length=200)
    status: str | None = None
    review_date: JsonDate | None = None
    notes: str | None = Field(default=None, max_length=4000)


@router.put("/controls/{scope}/{subject}/{paragraph}")
@api_fields({"review": "review_date"})
def set_entry(
    scope: str, subject: str, paragraph: int, body: EntryIn, request: Request, s: Session = DbSession,
) -> dict[str, Any]:
    e = svc.set_entry(s, scope, subject, paragraph, body.owner, body.status, body.review_date, body.notes,
                      _actor(request))
    return {"scope": e.scope, "subject": e.subject, "paragraph": e.paragraph, "owner": e.owner, "status": e.status,
            "review_date": e.review_date.isoformat() if e.review_date else None, "notes": e.notes}


class EvidenceIn(StrictBody):
    kind: str = "link"
    uri: str = Field(default="", max_length=2000)
    statement: str = Field(default="", max_length=4000)
    attested_by: str = Field(default="", max_length=200)
    attested_on: JsonDate | None = None


@router.post("/controls/{scope}/{subject}/{paragraph}/evidence", status_code=201)
@api_fields({"by": "attested_by", "on": "attested_on"})
def add_evidence(
    scope: str, subject: str, paragraph: int, body: EvidenceIn, request: Request,
    s: Session = DbSession,
) -> dict[str, Any]:
    ev = svc.add_evidence(s, scope, subject, paragraph, body.kind, body.uri, body.statement, body.attested_by,
                          body.attested_on, _actor(request))
    return {"id": ev.id, "kind": ev.kind, "uri": ev.uri, "statement": ev.statement}


@router.get("/deadlines")
def deadlines(
    status: str | None = None, on: date = Depends(get_as_of), s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> list[dict[str, Any]]:
    """Report and notice deadlines with status (upcoming, due, overdue, done) as of ``as_of``."""
    return [d.to_dict() for d in svc.deadline_list(s, packs, on, status)]


class AuthorizationIn(StrictBody):
    name: str = Field(max_length=200)
    granted: JsonDate
    kind: str | None = None
    holder: str | None = Field(default=None, max_length=200)
    country: str | None = None
    expires: JsonDate | None = None
    locations: list[str] = Field(default_factory=list)


@router.post("/deadlines/authorizations", status_code=201)
@api_fields({"location": "locations"})
def add_authorization(
    body: AuthorizationIn, request: Request, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """Record the grant date, expiry and application locations of a VEU (registering it if new: admin only)."""
    from sqlmodel import select

    from agent.store.tables.caps import VeuAuthorization

    p = getattr(request.state, "principal", None)
    known = s.exec(select(VeuAuthorization).where(VeuAuthorization.name == body.name.strip())).first()
    if known is None and p is not None and not p.can("admin"):
        # Registering an authorization is an admin's write (POST /authorizations): not a side door here.
        raise HTTPException(403, f"authorization: {body.name!r} is not registered, and registering one needs the "
                                 f"admin role (role {p.role!r}); an admin registers it first")
    a = svc.add_authorization(s, packs, body.name, body.granted, body.kind, body.holder, body.country,
                              body.expires, body.locations, _actor(request))
    return {"name": a.name, "kind": a.kind, "holder": a.holder, "granted": a.granted.isoformat()}


class EventIn(StrictBody):
    kind: str
    ref: str = Field(max_length=300)
    on: JsonDate
    authorization: str = ""
    site: str = ""
    from_country: str = ""
    to_country: str = ""
    description: str = Field(default="", max_length=2000)


@router.post("/deadlines/events", status_code=201)
@api_fields({"from": "from_country", "to": "to_country"})
def add_event(body: EventIn, request: Request, s: Session = DbSession) -> dict[str, Any]:
    ev = svc.add_event(s, body.kind, body.ref, body.on, body.authorization, body.site, body.from_country,
                       body.to_country, body.description, actor=_actor(request))
    return {"kind": ev.kind, "ref": ev.ref, "on": ev.occurred_on.isoformat()}


class FilingIn(StrictBody):
    key: str = Field(max_length=400)
    filed_on: JsonDate
    reference: str = Field(default="", max_length=400)
    early: bool = Field(default=False, description="A periodic report (semi-annual) filed before its period "
                        "ended: record it anyway; the audit entry says it was filed early.")


@router.post("/deadlines/filings", status_code=201)
@api_fields({"KEY": "key", "on": "filed_on"})
def file_deadline(
    body: FilingIn, request: Request, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    try:
        f = svc.file_deadline(s, packs, body.key, body.filed_on, body.reference, _actor(request), early=body.early)
    except svc.NotFound as exc:
        # The key is a body field, not the path: a bad value (422 naming it), not a missing page.
        raise PolicyError(str(exc)) from None
    return {"key": f.key, "filed_on": f.filed_on.isoformat(), "reference": f.reference}


@router.post("/deadlines/notify")
def notify(
    on: date = Depends(get_as_of), s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """Send reminders now over the configured channels (VEU_NOTIFY_WEBHOOK_URL / VEU_NOTIFY_SMTP_*)."""
    return svc.send_reminders(s, packs, on)


@router.get("/deadlines/notifications")
def notifications(s: Session = DbSession) -> list[dict[str, Any]]:
    return svc.notifications(s)


@router.get("/weights")
def weights(
    site: str | None = None, on: date = Depends(get_as_of), s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """¶8: where model weights are stored, on which devices, who accessed them, exports and flags."""
    return svc.to_json(svc.weights_report(s, packs, on, site))


class StorageIn(StrictBody):
    model: str = Field(max_length=200)
    site: str = Field(max_length=200)
    devices: list[str]
    dedicated: bool = False


@router.post("/weights/storage", status_code=201)
@api_fields({"device": "devices"})
def store(body: StorageIn, request: Request, s: Session = DbSession) -> dict[str, Any]:
    w = svc.store_weights(s, body.model, body.site, body.devices, body.dedicated, _actor(request))
    return {"id": w.id, "model": w.model, "site": body.site, "devices": w.devices.split(","), "dedicated": w.dedicated}


@router.post("/weights/access")
def import_access(
    request: Request, csv_text: str = Body(..., media_type="text/csv"), source: str = Query("api"),
    s: Session = DbSession,
) -> dict[str, int]:
    """Import an access-log CSV (timestamp, model, principal, action[, device, site]) sent as text/csv."""
    return svc.import_access_log(s, csv_text, source, _actor(request))


class ExportIn(StrictBody):
    model: str = Field(max_length=200)
    recipient: str = Field(max_length=200)
    country: str
    on: JsonDate
    licence: str = Field(default="", max_length=200)
    model_status: str | None = None
    published: bool = False


@router.post("/weights/exports", status_code=201)
@api_fields({"to": "recipient"})
def record_export(
    body: ExportIn, request: Request, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    return svc.record_export(s, packs, body.model, body.recipient, body.country, body.on, body.licence,
                             body.model_status, body.published, _actor(request))


def setup(app: FastAPI) -> None:
    """Map unknown sites/authorizations/keys to 404; run the reminder job when VEU_NOTIFY_SCHEDULER is set."""

    @app.exception_handler(svc.NotFound)
    async def _not_found(req: Request, exc: svc.NotFound) -> JSONResponse:
        return error_response(req, 404, exc)

    cfg = svc.notify_settings()
    if not cfg.scheduler:
        return

    def _start() -> None:
        app.state.obligations_scheduler = svc.start_scheduler(app.state.database_url, cfg)

    def _stop() -> None:
        sched = getattr(app.state, "obligations_scheduler", None)
        if sched is not None:
            sched.shutdown(wait=False)

    app.router.add_event_handler("startup", _start)
    app.router.add_event_handler("shutdown", _stop)
