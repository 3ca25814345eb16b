"""/api/v1/models and /api/v1/estimate: the model ledger and training-compute estimates over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from sqlmodel import Session

from agent import ledger as svc
from agent.api.deps import DbSession, get_as_of, get_packs
from agent.api.fields import error_response
from agent.audit import current_actor
from agent.store.tables.core import utc_today
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


class EstimateIn(BaseModel):
    """Exactly one group: ``operations``; ``params``/``active_params``/``tokens``; or ``chip`` with time."""

    model_config = ConfigDict(extra="forbid")
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
    start: date | None = None
    end: date | None = None
    site: str = Field(default="", max_length=200)
    job: str = Field(default="", max_length=300)


class ModelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1, max_length=200)
    base: str | None = None
    published: bool | None = None  # left out: a new model is not published, an update keeps what it had
    published_on: date | None = None


class SyntheticIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    generator: str = Field(min_length=1, max_length=200)
    fraction: Number
    generation_operations: Number
    since: date | None = None


class WithdrawalIn(BaseModel):
    """Why a run recorded in error is withdrawn (required; at most ``svc.REASON_MAX`` characters)."""

    model_config = ConfigDict(extra="forbid")
    reason: str


class DeterminationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    less_capable: bool
    by: str = Field(min_length=1, max_length=200)
    basis: str = Field(min_length=1, max_length=5000)
    on: date | None = None


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
    limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0),
    regime: str = Query(DEFAULT_REGIME), explain: bool = False,
    on: date = Depends(get_as_of), s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> dict[str, Any]:
    """Models in name order with cumulative operations and status: {total, limit, offset, items}."""
    with _regime_param():
        page = svc.list_models(s, packs, on, regime, limit, offset, explain)
    return {"total": page.total, "limit": limit, "offset": offset, "as_of": on.isoformat(), "regime": regime,
            "items": page.items}


@router.post("/models", status_code=201)
def create_model(body: ModelIn, request: Request, s: Session = DbSession,
                 packs: PackRegistry = Depends(get_packs)) -> dict[str, Any]:
    m = svc.add_model(s, body.name, body.owner, body.base, body.published, body.published_on, _actor(request))
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
