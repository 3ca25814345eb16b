"""The operator's dashboard: server-rendered pages (Jinja2, inline SVG, a little vanilla JS, no CDN).

Pages: caps overview with gauges, countries with installed TPP over time, sites and their holdings, the
explanation of every number, the what-if planner with reservations, the red-flag case queue with its
resolve form, the model ledger and the shipments ledger. Forms post back to the dashboard (same-origin,
session cookie), never to the bearer-token API.
"""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, select

from agent import caps as svc
from agent.api.deps import get_as_of, get_packs, get_session
from agent.api.routes.fleet import _site_rows, series_days
from agent.store.tables.core import Party, Site
from policies.errors import PolicyError
from policies.packs import PackRegistry, parse_date

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)

SI = ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def fmt_tpp(x: Any) -> str:
    """15,832,000 -> '15.83 M' (TPP figures span many orders of magnitude)."""
    if x is None:
        return "—"
    v = float(x)
    for scale, unit in SI:
        if abs(v) >= scale:
            return f"{v / scale:,.2f} {unit}"
    return f"{v:,.0f}" if v == int(v) else f"{v:,.2f}"


def fmt_pct(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{float(x) * 100:.{digits}f}%"


def fmt_num(x: Any) -> str:
    if x is None:
        return "—"
    v = float(x)
    return f"{v:,.0f}" if v == int(v) else f"{v:,.3f}"


def gauge_arc(fraction: float | None) -> dict[str, Any]:
    """SVG path of a half-circle gauge filled to ``fraction`` of its limit (capped at 1.25 for overshoot)."""
    f = 0.0 if fraction is None else max(0.0, min(float(fraction), 1.25)) / 1.25
    r, cx, cy = 40.0, 50.0, 50.0
    ang = math.pi * (1 - f)
    x, y = cx + r * math.cos(ang), cy - r * math.sin(ang)
    limit_ang = math.pi * (1 - 1 / 1.25)
    lx, ly = cx + r * math.cos(limit_ang), cy - r * math.sin(limit_ang)
    return {"d": f"M {cx - r:.2f} {cy:.2f} A {r} {r} 0 0 1 {x:.2f} {y:.2f}" if f > 0 else "",
            "limit_x": f"{lx:.2f}", "limit_y": f"{ly:.2f}",
            "limit_x2": f"{cx + (r + 8) * math.cos(limit_ang):.2f}",
            "limit_y2": f"{cy - (r + 8) * math.sin(limit_ang):.2f}"}


def series_svg(series: list[dict[str, Any]], width: int = 640, height: int = 200) -> dict[str, Any]:
    """Polylines of installed TPP by tier over time, scaled to the SVG box."""
    pad_l, pad_b, pad_t, pad_r = 70, 24, 10, 10
    top = max([float(p["total_tpp"]) for p in series] + [1.0])
    n = len(series)

    def xy(i: int, v: float) -> str:
        x = pad_l + (width - pad_l - pad_r) * (i / max(n - 1, 1))
        y = height - pad_b - (height - pad_b - pad_t) * (v / top)
        return f"{x:.1f},{y:.1f}"

    lines = {"total": " ".join(xy(i, float(p["total_tpp"])) for i, p in enumerate(series))}
    for t in ("1", "2", "3"):
        lines[f"tier{t}"] = " ".join(xy(i, float(p["by_tier"].get(t, 0.0))) for i, p in enumerate(series))
    ticks = [{"y": f"{height - pad_b - (height - pad_b - pad_t) * k / 4:.1f}", "label": fmt_tpp(top * k / 4)}
             for k in range(5)]
    idx = sorted({0, n // 2, n - 1}) if n else []
    xlabels = [{"x": xy(i, 0).split(",")[0], "label": series[i]["date"],
                "anchor": "start" if i == 0 else ("end" if i == n - 1 else "middle")} for i in idx]
    return {"width": width, "height": height, "lines": lines, "ticks": ticks, "xlabels": xlabels,
            "pad_l": pad_l, "base_y": height - pad_b}


templates.env.filters.update(tpp=fmt_tpp, pct=fmt_pct, num=fmt_num, urlq=lambda s: quote(str(s), safe=""))
templates.env.globals.update(gauge_arc=gauge_arc)


def render(request: Request, template: str, as_of: date, packs: PackRegistry, **ctx: Any) -> HTMLResponse:
    diffusion = packs.find("uveu-geographic-allocation", as_of)
    return templates.TemplateResponse(request, template, {
        "as_of": as_of.isoformat(), "today": date.today().isoformat(), "rule": diffusion,
        "qs": urlencode({"as_of": as_of.isoformat()}), "path": request.url.path,
        "principal": getattr(request.state, "principal", None), **ctx,
    })


# -------------------------------------------------------------------------------------------- pages


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    ov = svc.overview(s, packs, as_of)
    series = svc.installed_series(s, packs, series_days(None, None, 13, as_of))
    return render(request, "overview.html", as_of, packs, ov=ov, chart=series_svg(series), series=series)


@router.get("/countries", response_class=HTMLResponse)
def countries(
    request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    summ = svc.summarize(packs, svc.placements(s, packs, as_of), as_of)
    series = svc.installed_series(s, packs, series_days(None, None, 13, as_of))
    return render(request, "countries.html", as_of, packs, summary=summ, chart=series_svg(series), series=series)


@router.get("/sites", response_class=HTMLResponse)
def sites(
    request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    return render(request, "sites.html", as_of, packs, sites=_site_rows(s, packs, as_of))


@router.get("/sites/{name}", response_class=HTMLResponse)
def site(
    name: str, request: Request, offset: int = 0, s: Session = Depends(get_session),
    packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    row = next((r for r in _site_rows(s, packs, as_of) if r["name"] == name), None)
    if row is None:
        return render(request, "error.html", as_of, packs, message=f"Site {name!r} is not registered.")
    hp = svc.holdings_page(s, packs, as_of, site=name, limit=200, offset=max(offset, 0))
    return render(request, "site.html", as_of, packs, site=row, holdings=hp)


@router.get("/explain/{name}/{cap_id}", response_class=HTMLResponse)
def explain_page(
    name: str, cap_id: str, request: Request, offset: int = 0, part: str = "numerator",
    s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    d = svc.explain(s, packs, name, cap_id, as_of, 200, max(offset, 0), "all" if part == "all" else "numerator")
    return render(request, "explain.html", as_of, packs, cap=d, name=name)


def _planner_ctx(s: Session, packs: PackRegistry) -> dict[str, Any]:
    from agent.kb import catalog

    chips = sorted({(a.id, a.name) for a in catalog().accelerators()}, key=lambda c: c[1])
    return {
        "authorizations": [svc.authorization_dict(s, a) for a in svc.list_authorizations(s)],
        "site_names": [x.name for x in s.exec(select(Site).order_by(Site.name)).all()],
        "party_names": [p.name for p in s.exec(select(Party).order_by(Party.name)).all()],
        "chips": chips,
        "reservations": [svc.reservation_dict(s, r) for r in svc.list_reservations(s)],
    }


@router.get("/whatif", response_class=HTMLResponse)
def whatif_form(
    request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    return render(request, "whatif.html", as_of, packs, form={}, result=None, error=None, **_planner_ctx(s, packs))


def _form_int(form: Any, key: str, default: int = 0) -> int:
    raw = str(form.get(key) or "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise PolicyError(f"{key}: {raw!r} is not a whole number") from None


@router.post("/whatif", response_class=HTMLResponse)
async def whatif_run(
    request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> HTMLResponse:
    form = dict((await request.form()).items())
    result, error = None, None
    d = date.today()
    try:
        d = parse_date(str(form.get("as_of") or date.today().isoformat()), "as_of")
        result = svc.whatif(
            s, packs, str(form.get("authorization", "")), op=str(form.get("op", "add")),  # type: ignore[arg-type]
            n=_form_int(form, "n"), chip_name=str(form.get("chip", "")), site=str(form.get("site", "")),
            to_site=str(form.get("to_site") or "") or None, as_of=d,
            owner=str(form.get("owner") or "") or None, operator=str(form.get("operator") or "") or None,
        )
    except PolicyError as exc:
        error = str(exc)
    resp = render(request, "whatif.html", d, packs, form=form, result=result, error=error, **_planner_ctx(s, packs))
    if error:
        resp.status_code = 422
    return resp


@router.post("/reservations", response_class=HTMLResponse)
async def reserve(
    request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> Response:
    form = dict((await request.form()).items())
    try:
        d = parse_date(str(form.get("as_of") or date.today().isoformat()), "planned_for")
        row = svc.reserve(s, packs, str(form.get("authorization", "")), n=_form_int(form, "n"),
                          chip_name=str(form.get("chip", "")), site=str(form.get("site", "")), planned_for=d,
                          owner=str(form.get("owner") or "") or None,
                          operator=str(form.get("operator") or "") or None, note=str(form.get("note", "")))
    except PolicyError as exc:
        s.rollback()
        resp = render(request, "whatif.html", date.today(), packs, form=form, result=None,
                      error=f"Reservation refused: {exc}", **_planner_ctx(s, packs))
        resp.status_code = 409 if isinstance(exc, svc.CapExceeded) else 422
        return resp
    return RedirectResponse(f"/whatif?reserved={row.id}", status_code=303)


@router.post("/reservations/{rid}/release")
def release(rid: int, s: Session = Depends(get_session)) -> Response:
    svc.close_reservation(s, rid, "released")
    return RedirectResponse("/whatif", status_code=303)


@router.get("/shipments", response_class=HTMLResponse)
def shipments(
    request: Request, offset: int = 0, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    rows, total = svc.list_shipments(s, limit=100, offset=max(offset, 0))
    alloc = svc.caps_report(svc.allocation_caps(s, packs, as_of), as_of)
    return render(request, "shipments.html", as_of, packs, rows=[svc.shipment_dict(s, packs, r) for r in rows],
                  total=total, offset=offset, alloc=alloc)


# ------------------------------------------------------------------------------- cases and models


@router.get("/cases", response_class=HTMLResponse)
def cases_page(
    request: Request, status: str = "open", s: Session = Depends(get_session),
    packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    from agent import cases

    rows = cases.list_cases(s, status or None)
    return render(request, "cases.html", as_of, packs, cases=rows, status=status, error=None)


@router.post("/cases/{case_id}/resolve", response_class=HTMLResponse)
async def resolve_case(
    case_id: int, request: Request, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
) -> Response:
    """The red-flag-28 answers: export intent, licence on file or customer informed, and notes."""
    from agent import cases
    from agent.audit import current_actor

    form = dict((await request.form()).items())
    principal = getattr(request.state, "principal", None)
    by = str(getattr(principal, "actor", "") or "") or current_actor()
    try:
        cases.resolve_case(
            s, packs, case_id, export_intent=str(form.get("export_intent", "")) == "yes",
            licence=str(form.get("licence", "")), scope=str(form.get("scope", "")),
            informed=str(form.get("informed", "")) == "on", by=by, notes=str(form.get("notes", "")),
        )
    except PolicyError as exc:
        s.rollback()
        resp = render(request, "cases.html", date.today(), packs, cases=cases.list_cases(s, "open"), status="open",
                      error=f"Case #{case_id}: {exc}")
        resp.status_code = 422
        return resp
    return RedirectResponse(f"/cases?status=resolved&resolved={case_id}", status_code=303)


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request, offset: int = 0, s: Session = Depends(get_session), packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    from agent import ledger

    pg = ledger.list_models(s, packs, as_of, limit=100, offset=max(offset, 0))
    return render(request, "models.html", as_of, packs, models=pg.items, total=pg.total, offset=offset)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response((HERE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml")


def setup(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
