"""/api/v1/cases and /api/v1/decisions: the red-flag-28 inquiry workflow over HTTP, and the webhook mount.

``setup(app)`` also mounts ``POST /validate`` (the admission webhook, :mod:`controllers.webhook`) so the
API and the webhook are served by the same process (``veuctl serve``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from sqlmodel import Session

from agent import cases as svc
from agent.api.deps import DbSession, get_as_of, get_packs
from agent.api.fields import MAX_OFFSET, StrictBody, error_response
from agent.audit import current_actor
from policies.packs import PackRegistry

router = APIRouter(prefix="/api/v1", tags=["cases"])


class ResolveIn(StrictBody):
    """The red-flag-28 answers (``export_intent``: true/false or "yes"/"no"; not 1/0)."""

    export_intent: Literal["yes", "no"] | bool
    license: str = Field(default="", max_length=100)
    scope: str = Field(default="", max_length=500)
    informed: bool = False
    by: str | None = Field(default=None, max_length=200)  # left out: the caller; given blank: refused
    notes: str = Field(default="", max_length=2000)
    amend: bool = False  # replace the answers of a resolved case (its expiry stays that of the first resolution)


def _actor(request: Request) -> str:
    p = getattr(request.state, "principal", None)
    return str(getattr(p, "actor", "")) or current_actor()


@router.get("/cases", summary="Red-flag-28 cases (newest first)")
def list_cases(
    request: Request, response: Response,
    status: str | None = Query(None, description="open | resolved | expired (as of the as-of date)"),
    customer: str | None = None, limit: int = Query(500, ge=1, le=5000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Cases to skip (newest first): the next page."),
    s: Session = DbSession, as_of: date = Depends(get_as_of),
) -> list[dict[str, Any]]:
    """The cases as a list, as before; ``X-Total-Count`` says how many match and ``Link: <...>; rel="next"`` names
    the next page with the same filters. As of another day than today: the cases as they stood at its end."""
    page = svc.cases_page(s, status, customer, limit, offset, as_of)
    response.headers["X-Total-Count"] = str(page.total)
    if offset + limit < page.total:
        nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return page.items


@router.get("/cases/{case_id}", summary="One case with its jobs, estimate and answers")
def show_case(case_id: int, s: Session = DbSession) -> dict[str, Any]:
    return svc.case_view(svc.get_case(s, case_id))


@router.post("/cases/{case_id}/resolve", summary="Record the red-flag-28 answers for a case")
def resolve_case(
    case_id: int, body: ResolveIn, request: Request, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs), as_of: Any = Depends(get_as_of),
) -> dict[str, Any]:
    intent = body.export_intent if isinstance(body.export_intent, bool) else body.export_intent == "yes"
    row = svc.resolve_case(s, packs, case_id, export_intent=intent, licence=body.license, scope=body.scope,
                           informed=body.informed, by=_actor(request) if body.by is None else body.by,
                           notes=body.notes, as_of=as_of, amend=body.amend)
    return svc.case_view(row)


@router.get("/decisions", summary="Recorded admission decisions (newest first)")
def list_decisions(
    limit: int = Query(100, ge=1, le=5000), code: str | None = None, namespace: str | None = None,
    case_id: int | None = Query(None, ge=1, description="Only the decisions recorded against this case."),
    s: Session = DbSession,
) -> list[dict[str, Any]]:
    return svc.decisions(s, limit, code, namespace, case_id)


def setup(app: FastAPI) -> None:
    from controllers.webhook import router as webhook_router

    if getattr(app.state, "serve_webhook", True):
        app.include_router(webhook_router)

    @app.exception_handler(svc.UnknownCase)
    async def _unknown_case(req: Request, exc: svc.UnknownCase) -> JSONResponse:
        return error_response(req, 404, exc)
