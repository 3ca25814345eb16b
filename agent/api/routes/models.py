"""/api/v1/models and /api/v1/estimate: the model ledger and training-compute estimates over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field
from sqlmodel import Session, select

from agent import ledger as svc
from agent.api.deps import DbSession, get_as_of, get_packs
from agent.api.fields import MAX_OFFSET, JsonDate, StrictBody, error_response
from agent.audit import current_actor
from agent.store.tables.core import Party, utc_today
from agent.store.tables.ledger import RUN_JOB_REF_MAX, LedgerModel
from policies.compute import check_whole, parse_number
from policies.errors import UnknownProvision
from policies.ledger import DEFAULT_REGIME, LedgerError, UnknownModel
from policies.packs import PackRegistry

router = APIRouter(prefix="/api/v1", tags=["models"])


def _not_bool(v: Any) -> Any:
    """JSON true/false is not a number (pydantic would read it as 1.0/0.0: one chip, 100% synthetic data)."""
    if isinstance(v, bool):
        raise ValueError(f"expected a number or a string such as \"1e26\", got {str(v).lower()}")
    return v


Number = Annotated[float | str, BeforeValidator(_not_bool)]  # JSON numbers, or strings such as "1e26"


def _actor(request: Request) -> str:
    p = getattr(request.state, "principal", None)
    return str(getattr(p, "actor", "")) or current_actor()


def _n(v: Number | None, field: str, allow_zero: bool = False) -> float | None:
    return None if v is None else parse_number(v, field, allow_zero=allow_zero)


class EstimateIn(StrictBody):
    """Exactly one group: ``operations``; ``params``/``active_params``/``tokens``; or ``chip`` with time."""

    operations: Number | None = None
    params: Number | None = None
    active_params: Number | None = None
    tokens: Number | None = None
    moe: bool = False
    chip: str | None = None
    count: Number | None = None
    hours: Number | None = None
    chip_hours: Number | None = None
    utilization: Number | None = None
    precision: str | None = None


class RunIn(EstimateIn):
    start: JsonDate | None = None
    end: JsonDate | None = None
    site: str = Field(default="", max_length=200)
    job: str = Field(default="", max_length=RUN_JOB_REF_MAX)


class ModelIn(StrictBody):
    """A new model (``POST /models`` creates; an existing one is changed with ``PATCH /models/{name}``)."""

    name: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1, max_length=200)
    base: str | None = None
    published: bool | None = None  # left out: not published
    published_on: JsonDate | None = None


class ModelPatch(StrictBody):
    """Changes to a model; a field left out keeps its stored value (``"base": ""`` removes the base)."""

    owner: str | None = Field(default=None, min_length=1, max_length=200)
    base: str | None = Field(default=None, max_length=200)
    published: bool | None = None
    published_on: JsonDate | None = None


class SyntheticIn(StrictBody):
    generator: str = Field(min_length=1, max_length=200)
    fraction: Number
    generation_operations: Number
    since: JsonDate | None = None


class WithdrawalIn(StrictBody):
    """Why a run recorded in error is withdrawn (required; at most ``svc.REASON_MAX`` characters)."""

    reason: str


class DeterminationIn(StrictBody):
    less_capable: bool
    by: str = Field(min_length=1, max_length=200)
    basis: str = Field(min_length=1, max_length=5000)
    on: JsonDate | None = None


def _chips(v: Any) -> float | None:
    """``count`` is a number of chips, and chips are whole devices (partial use is ``chip_hours``), as in the CLI."""
    n = _n(v, "count")
    return None if n is None else check_whole(n, "count", "chips")


@contextmanager
def _regime_param() -> Iterator[None]:
    """An unknown ``regime`` is a bad query parameter (422 naming it), not a missing model (404) on an existing path."""
    try:
        yield
    except UnknownProvision as exc:
        raise LedgerError(f"regime: {exc}") from None


def _estimate(packs: PackRegistry, on: date, b: EstimateIn) -> Any:
    return svc.estimate(
        packs, on, operations=_n(b.operations, "operations"), params=_n(b.params, "params"),
        active_params=_n(b.active_params, "active_params"), tokens=_n(b.tokens, "tokens"), moe=b.moe, chip=b.chip,
        count=_chips(b.count), hours=_n(b.hours, "hours", True), chip_hours=_n(b.chip_hours, "chip_hours", True),
        utilization=_n(b.utilization, "utilization"), precision=b.precision,
    )


@router.post("/estimate")
def estimate(body: EstimateIn, on: date = Depends(get_as_of), packs: PackRegistry = Depends(get_packs)
             ) -> dict[str, Any]:
    """Estimate training operations -> {operations, low, high, upper_bound, method, explanation, inputs}."""
    return dict(_estimate(packs, on, body).to_dict())


@router.get("/models")
def list_models(
    limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_OFFSET),
    regime: str = Query(DEFAULT_REGIME), explain: bool = False,
    on: date = Depends(get_as_of), s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """Models in name order with cumulative operations and status: {total, limit, offset, items}."""
    with _regime_param():
        page = svc.list_models(s, packs, on, regime, limit, offset, explain)
    return {"total": page.total, "limit": limit, "offset": offset, "as_of": on.isoformat(), "regime": regime,
            "items": page.items}


def _stored(s: Session, m: LedgerModel) -> tuple[str | None, str | None, bool, date | None]:
    """A model's owner, base, published and publication date as stored."""
    owner = s.get(Party, m.owner_id)
    return (owner.name if owner is not None else None, svc.model_name_of(s, m.base_id), bool(m.published),
            m.published_on)


def _as_posted(body: ModelIn, stored: tuple[str | None, str | None, bool, date | None]) -> bool:
    """Whether creating ``body`` would store what is already stored (a repeated POST: nothing to change)."""
    owner, base, published, published_on = stored
    wants_published = bool(body.published) or body.published_on is not None
    return (body.owner.strip() == owner and ((body.base or "").strip() or None) == base
            and wants_published == published and body.published_on in (None, published_on))


@router.post("/models", status_code=201)
def create_model(body: ModelIn, request: Request, response: Response, s: Session = DbSession,
                 packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    """Register a model: ``201``. A model of that name already stored as posted: ``200``, nothing written; stored
    otherwise: ``409`` (a create changed its owner, base or publication without anyone asking for an update:
    change it with ``PATCH /api/v1/models/{name}``)."""
    name = body.name.strip()
    existing = s.exec(select(LedgerModel).where(LedgerModel.name == name)).first()
    if existing is not None:
        stored = _stored(s, existing)
        if not _as_posted(body, stored):
            owner, base, published, published_on = stored
            pub = (f"published {published_on.isoformat()}" if published_on else "published") if published \
                else "not published"
            raise HTTPException(409, f"name: model {name!r} is already in the ledger (owner {owner!r}, "
                                     f"{f'base {base!r}' if base else 'no base'}, {pub}); change it with "
                                     f"PATCH /api/v1/models/{quote(name, safe='')}")
        response.status_code = 200
        return svc.model_view(s, packs, name, utc_today())
    m = svc.add_model(s, body.name, body.owner, body.base, body.published, body.published_on, _actor(request))
    return svc.model_view(s, packs, m.name, utc_today())


@router.patch("/models/{name:path}")
def update_model(name: str, body: ModelPatch, request: Request, s: Session = DbSession,
                 packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    """Change a model's owner, base or publication (admin): a field left out keeps its stored value. ``404`` if
    the model is not in the ledger. Audited ``model.update``, with the values before."""
    p = getattr(request.state, "principal", None)
    if p is not None and not p.can("admin"):
        # The permission matrix reads a ".../determinations" suffix as a determination (compliance): a model
        # named so is still changed by an admin only.
        raise HTTPException(403, f"model: changing a model needs the admin role (role {p.role!r})")
    m = svc.get_model(s, name)  # 404 when not in the ledger
    if body.model_fields_set:
        owner, _, _, _ = _stored(s, m)
        svc.add_model(s, m.name, body.owner if body.owner is not None else owner or "", body.base, body.published,
                      body.published_on, _actor(request))
    return svc.model_view(s, packs, m.name, utc_today())


@router.post("/models/{name:path}/runs", status_code=201)
def add_run(name: str, body: RunIn, request: Request, s: Session = DbSession,
            packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    est = _estimate(packs, utc_today(), body)  # today's estimation defaults, whenever the run happened (as the CLI)
    run = svc.add_run(s, name, est, body.start, body.end, body.site, body.job, _actor(request))
    return {"run_id": run.id, "estimate": est.to_dict(), **svc.model_view(s, packs, name, utc_today())}


@router.post("/models/{name:path}/runs/{run_id}/withdraw")
def withdraw_run(name: str, run_id: int, body: WithdrawalIn, request: Request, s: Session = DbSession,
                 packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    """Withdraw a run recorded in error: kept (and exported) as withdrawn, counted in no total for any date.

    404 for a model or run that is not in the ledger (or a run of another model), 409 for a run already
    withdrawn, 422 for a blank or overlong ``reason``."""
    run = svc.withdraw_run(s, run_id, body.reason, _actor(request), model=name)
    return {"run_id": run.id, "withdrawn": {"operations": run.operations, "method": run.method,
                                            "reason": run.withdrawn_reason, "by": run.withdrawn_by},
            **svc.model_view(s, packs, name, utc_today())}


@router.post("/models/{name:path}/runs/{run_id}/reactivate")
def reactivate_run(name: str, run_id: int, body: WithdrawalIn, request: Request, s: Session = DbSession,
                   packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    """Count a withdrawn run again, for every date (``reason`` says why; audited with the withdrawal it undoes).

    404 for a model or run that is not in the ledger (or a run of another model), 409 for a run not withdrawn,
    422 for a blank or overlong ``reason`` or a run that could not be recorded anew (dated on or after the
    model's publication)."""
    run = svc.reactivate_run(s, run_id, body.reason, _actor(request), model=name)
    return {"run_id": run.id, **svc.model_view(s, packs, name, utc_today())}


@router.post("/models/{name:path}/synthetic", status_code=201)
def add_synthetic(name: str, body: SyntheticIn, request: Request, s: Session = DbSession,
                  packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    svc.add_synthetic(
        s, name, body.generator, _n(body.fraction, "fraction", True) or 0.0,
        _n(body.generation_operations, "generation_operations", True) or 0.0, body.since, _actor(request),
    )
    return svc.model_view(s, packs, name, utc_today())


@router.post("/models/{name:path}/determinations", status_code=201)
def add_determination(name: str, body: DeterminationIn, request: Request, s: Session = DbSession,
                      packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    svc.add_determination(s, name, body.less_capable, body.by, body.basis, body.on, _actor(request))
    return svc.model_view(s, packs, name, max(body.on or utc_today(), utc_today()))


@router.get("/models/{name:path}")
def get_model(name: str, regime: str = Query(DEFAULT_REGIME), on: date = Depends(get_as_of),
              s: Session = DbSession, packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    """A model's cumulative operations, status and the arithmetic, as of ``as_of`` under ``regime``."""
    with _regime_param():
        return svc.model_view(s, packs, name, on, regime)


def setup(app: FastAPI) -> None:
    @app.exception_handler(UnknownModel)
    async def _unknown_model(req: Request, exc: UnknownModel) -> JSONResponse:
        return error_response(req, 404, exc)
