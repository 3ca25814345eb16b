"""The operator's dashboard: server-rendered pages (Jinja2, inline SVG, a little vanilla JS, no CDN).

Pages: caps overview with gauges, countries with installed TPP over time, sites and their holdings, the
explanation of every number, the what-if planner with reservations, the red-flag case queue with its
resolve form, the model ledger, the shipments ledger, report and notice deadlines with their filing form,
the Supp. No. 10 controls register per site and authorization, and the BIS exports with the audit chain's
verification status. Forms post back to the dashboard (same-origin, session cookie), never to the
bearer-token API; every write goes through the same service functions (and audit trail) as the API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from sqlmodel import Session, select

from agent import caps as svc
from agent.api.deps import DbSession, get_as_of, get_packs
from agent.api.fields import MAX_OFFSET, api_detail, clip_echoes
from agent.api.routes.fleet import _site_rows, series_days
from agent.cases import ANSWER_MAXLEN
from agent.store.tables.core import Party, Site, utc_today
from policies.errors import PolicyError
from policies.packs import PackRegistry, parse_as_of, parse_date

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


class PageRoute(APIRoute):
    """A dashboard route whose user errors on a GET (an as-of date before the rules, a stale explanation link, a
    bad filter) are a page with the navigation, at the status and with the message the API's handlers give; a
    bare JSON body left a browser user with no way back but the back button."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except OverflowError:
                # A date or count past what the calendar or the store holds (as_of=9999-06-01 on the deadlines,
                # offset=10**20): the page, not the API's JSON body. A form post handles its own.
                if request.method != "GET":
                    raise
                return _error_page(request, Response(status_code=422), message=(
                    "a date or number in the page's address is out of range (a date that far ahead cannot be "
                    "evaluated); choose a nearer as of (date), or use the page's own links"))
            except (PolicyError, HTTPException, RequestValidationError) as exc:
                # A form post handles its own errors; one whose address FastAPI refuses before the handler ran
                # (``/reservations/abc/release``) has written nothing and gets the page too.
                if request.method != "GET" and not isinstance(exc, RequestValidationError):
                    raise
                answer = await _api_error(request, exc)
                if answer is None or not 400 <= answer.status_code < 500:
                    raise
                return _error_page(request, answer)

        return page_errors


async def _posted_form(request: Request) -> dict[str, Any]:
    """The posted form's fields, read on the event loop; the route itself is a plain ``def``, run in the thread pool,
    so its store work never blocks the loop. (Written ``async def`` to read the form, a route ran its store work on
    the loop: two checkpoints signed at once on PostgreSQL, one waiting there for the audit chain's lock that the
    other held until its commit, which needed the loop, and every request of the process stopped.)"""
    return dict((await request.form()).items())


PostedForm: Any = Depends(_posted_form)


async def _api_error(request: Request, exc: Exception) -> Response | None:
    """What the app's exception handler for ``exc`` answers (the same status and message as the API)."""
    for kind in type(exc).__mro__:
        found = request.app.exception_handlers.get(kind)
        if found is not None:
            answer = await found(request, exc)
            return answer if isinstance(answer, Response) else None
    return None


def _error_page(request: Request, answer: Response, message: str | None = None) -> HTMLResponse:
    import json

    from agent.packs import registry

    try:
        detail = message if message is not None else json.loads(bytes(answer.body)).get("detail", "")
    except ValueError:
        detail = ""
    if isinstance(detail, list):  # FastAPI's form: [{"loc": ["query", "offset"], "msg": ...}]
        detail = "; ".join(_param_error(e) for e in detail)
    heading = "Not found" if answer.status_code == 404 else "Cannot show this page"
    resp = render(request, "error.html", utc_today(), registry(), heading=heading,
                  message=form_detail(str(detail)), links=[("/", "Back to the caps overview")])
    resp.status_code = answer.status_code
    return resp


# --------------------------------------------------------------------------- errors in the dashboard's words

# The API's requests an error message may point to (agent.api.fields turns the CLI's commands into them), and
# what a dashboard user does instead: open a page, or ask an admin, who has the CLI. A browser user cannot
# send "POST /api/v1/...", so such a hint left them with nothing to do.
_DASHBOARD_OF: tuple[tuple[str, str], ...] = (
    (r"POST /api/v1/parties", "ask an admin to register it (`veuctl parties add`)"),
    (r"PATCH /api/v1/parties/\S+", "ask an admin to change it (`veuctl parties add`)"),
    (r"GET /api/v1/parties(?:/\S+)?", "ask an admin for the registered parties (`veuctl parties list`)"),
    (r"POST /api/v1/authorizations", "ask an admin to register it (`veuctl authorizations add`)"),
    (r"GET /api/v1/authorizations", "see the Caps page"),
    (r"GET /api/v1/reservations", "see the active reservations on the What-if page"),
    (r"GET /api/v1/caps(?:/\S+)?", "see the Caps page"),
    (r"GET /api/v1/deadlines(?:\S*)", "see the Deadlines page"),
    (r"POST /api/v1/deadlines/filings", "use the Deadlines page's form"),
    (r"GET /api/v1/tokens|POST /api/v1/tokens", "ask an admin (`veuctl tokens`)"),
    (r"POST /api/v1/models/\S+/runs", "ask an admin to record it (`veuctl models add-run`)"),
    (r"POST /api/v1/models", "ask an admin to register it (`veuctl models add`)"),
    (r"GET /api/v1/models(?:/\S+)?", "see the Models page"),
    (r"GET /api/v1/cases(?:/\S+)?", "see the Cases page"),
    (r"GET /api/v1/sites(?:/\S+)?", "see the Sites page"),
    (r"(?:GET|POST|PUT|PATCH|DELETE) /api/v1/\S*", "ask an admin"),
)
# The verb a message puts before the request ("add it with", "see", "(from ..."): the hint brings its own.
_LEAD = (r"(?:(?:add|register|record|create|list|check|change|set) (?:it|them|one) (?:with|via) "
         r"|see |check |from |with )?")
_API_HINTS = [(re.compile(_LEAD + pattern + r"(?=[\s);,.]|$)"), words) for pattern, words in _DASHBOARD_OF]
# 'set "reassign": true' is how agent.api.fields words a CLI flag for a JSON client.
_JSON_FLAG = re.compile(r'set "([a-z_]+)": true')
# Query parameters a dashboard page reads from a form of its own, by the label the user sees there (the
# header's "as of" date picker); the others come from the page's links and keep their names.
PARAM_LABELS = {"as_of": "as of (date)"}


def form_detail(message: str, renames: Mapping[str, str] | None = None) -> str:
    """An error message as a dashboard user can act on it: CLI options become the form's field names (as
    :func:`agent.api.fields.api_detail` does for the API) and API requests the page or person to turn to."""
    text = api_detail(message, renames)
    for pattern, words in _API_HINTS:
        text = pattern.sub(words, text)
    text = _JSON_FLAG.sub(lambda m: f"tick {m.group(1).replace('_', ' ')}", text)
    head, sep, rest = text.partition(":")
    if sep and renames is None and head in PARAM_LABELS:  # a page's address; a form's fields keep their names
        text = PARAM_LABELS[head] + sep + rest
    if renames is None:  # "... choose a later as_of": the header's date picker, by its label
        text = re.sub(r"(?<![\w?&=/.-])as_of\b(?![=\w])", PARAM_LABELS["as_of"], text)
    return text


def _param_error(e: Mapping[str, Any]) -> str:
    """One of FastAPI's parameter errors (``{"loc": ["query", "offset"], "msg": ...}``) in the page's words."""
    loc = list(e.get("loc") or ["", ""])
    name = str(loc[-1])
    msg = str(e.get("msg", ""))
    if loc[0] in ("query", "path") and "integer" in msg:  # only a hand-edited address: the links send numbers
        msg = (f"{str(e.get('input', ''))[:40]!r} in the page's address is not a whole number; "
               f"use the page's own links{' (previous/next)' if name == 'offset' else ''}")
    elif loc[0] == "query" and name == "offset":  # past the bound the API sets too (MAX_OFFSET)
        msg = f"{msg}; use the page's own links (previous/next)"
    return f"{PARAM_LABELS.get(name, name)}: {msg}"


# --------------------------------------------------------------------------- form fields by their labels

_NAMED_ASIDE = re.compile(r"\(([a-z_]+)\)")


def _shorten(text: str) -> str:
    """A quoted value longer than 60 characters echoed as its first 40 and its length: a pasted page of text repeated
    in full buried the message (shorter than the API's :func:`agent.api.fields.clip_echoes`, beside a form)."""
    return clip_echoes(text, longer_than=60, keep=40)


def _clip(text: str) -> str:
    """A value echoed in a message (a key, an export kind) as :func:`_shorten` echoes a quoted one: up to 60
    characters as given, a longer one as its first 40 and its length."""
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text):,} characters)"


@dataclass(frozen=True)
class FormError:
    """A refused form's message, and the fields of ``form`` it is about: the page marks each of them
    (``aria-invalid``, and ``aria-describedby`` naming the message shown next to it)."""

    form: str = ""
    message: str = ""  # in the page's words: the labels, never the fields' names
    fields: tuple[str, ...] = ()

    def id(self, name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "-", f"{self.form}-{name}-error")

    def marks(self, form: str, name: str) -> bool:
        return bool(self.form) and form == self.form and name in self.fields

    def attrs(self, form: str, name: str) -> Markup:
        """`` aria-invalid="true" aria-describedby=...`` for the control of a field this error is about."""
        if not self.marks(form, name):
            return Markup("")
        # The first field the message names takes the focus: a keyboard user fixes it without tabbing there.
        focus = Markup(" autofocus") if name == self.fields[0] else Markup("")
        return Markup(' aria-invalid="true" aria-describedby="{}"{}').format(self.id(name), focus)

    def note(self, form: str, name: str) -> Markup:
        """The message, next to the field it is about (nothing for another field)."""
        if not self.marks(form, name):
            return Markup("")
        return Markup('<span class="field-error" id="{}">{}</span>').format(self.id(name), self.message)


NO_ERROR = FormError()


@dataclass(frozen=True)
class FormSpec:
    """A dashboard form: the label the page shows for each field it posts, by the field's ``name``. The templates
    render the labels from here (``forms.<form>.labels``), so an error names a field in the words beside it.

    ``renames`` are the core's names (the CLI's options) for the fields (:func:`form_detail`); a label of ``None``
    is a field the page fills in itself and the message already names (a deadline's key): its name is dropped.
    ``rewrites`` reword a core message that names a field only inside its sentence."""

    form: str
    labels: Mapping[str, str | None]
    renames: Mapping[str, str] = field(default_factory=dict)
    rewrites: tuple[tuple[str, str], ...] = ()

    def error(self, message: str, form: str | None = None) -> FormError:
        """``message`` (a core error) in the form's words, with the fields it is about."""
        text = form_detail(message, self.renames)
        for pattern, words in self.rewrites:
            text = re.sub(pattern, words, text)
        head, sep, rest = text.partition(": ")
        names = tuple(head.split("/")) if sep else ()
        if not names or not all(n in self.labels for n in names):
            return FormError(form or self.form, _shorten(text), ())
        rest = re.sub(r"^N must be ", "must be ", rest)  # "--add: N must be zero or more": N is the field
        rest = _NAMED_ASIDE.sub(lambda m: f"({self.labels.get(m.group(1)) or m.group(1)})"
                                if m.group(1) in self.labels else m.group(0), rest)
        shown = [self.labels[n] for n in names if self.labels[n]]
        said = " / ".join(str(s) for s in shown)
        text = rest if not said else f"{said} {rest}" if said.endswith("?") else f"{said}: {rest}"
        return FormError(form or self.form, _shorten(text), tuple(n for n in names if self.labels[n]))


def page_error(exc: BaseException, spec: FormSpec, form: str | None = None, date_field: str = "as_of") -> FormError:
    """A form's error: a :class:`PolicyError` in the form's words; a date or number the store or the calendar
    cannot hold (an ``OverflowError``, a JSON body left the browser with no form) on ``date_field``."""
    if isinstance(exc, OverflowError):
        return spec.error(f"{date_field}: a date that far ahead (or a number that large) cannot be evaluated; "
                          "use a nearer date", form)
    return spec.error(str(exc), form)


def refused_page(request: Request, status: int, heading: str, message: str, advice: str = "",
                 links: list[tuple[str, str]] | None = None) -> HTMLResponse:
    """An error page in the dashboard's layout for a request refused before any route ran (the
    authentication middleware's 403s): what was refused and what to do, at ``status``."""
    from agent.packs import registry

    resp = render(request, "error.html", utc_today(), registry(), heading=heading, message=message, advice=advice,
                  links=links or [("/", "Back to the caps overview")])
    resp.status_code = status
    return resp


router = APIRouter(include_in_schema=False, route_class=PageRoute)

PAGE = 100  # rows per page of the models and shipments ledgers (previous/next links page through the rest)
# A page's offset is bounded above as the API's is (MAX_OFFSET): past it, a 422 page naming it, not an empty page
# that reads as "no rows". A negative one is the first page (docs/api.md, Dashboard paging).
Offset = Query(0, le=MAX_OFFSET, description="Rows to skip (the pager's previous/next links).")
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


def fmt_headroom(x: Any) -> str:
    """A cap's headroom as :func:`fmt_tpp` writes it, rounded down at the precision shown (as `veuctl caps show`):
    room never reads larger than what fits (4,999.5 is '4.99 k', not '5.00 k'), a shortfall never smaller than what
    must go. Rounded in decimal, so a figure shown exactly (15.83 k) is not cut by a binary remainder."""
    from decimal import ROUND_FLOOR, Decimal

    if x is None:
        return "—"
    v = Decimal(repr(float(x)))
    for scale, unit in SI:
        if abs(v) >= Decimal(repr(scale)):
            return f"{(v / Decimal(repr(scale))).quantize(Decimal('0.01'), ROUND_FLOOR):,.2f} {unit}"
    return f"{v:,.0f}" if v == v.to_integral_value() else f"{v.quantize(Decimal('0.01'), ROUND_FLOOR):,.2f}"


def fmt_pct(x: Any, digits: int = 2) -> str:
    return "—" if x is None else f"{float(x) * 100:.{digits}f}%"


def fmt_pct_apart(x: Any, limit: Any) -> str:
    """A share with the digits that tell it from its limit: 7.004% over a 7% cap never reads '7.00%'."""
    if x is None or limit is None or float(x) == float(limit):
        return fmt_pct(x)
    return fmt_pct(x, svc.share_digits_apart(float(x), float(limit), 2, 6) or 6)


def fmt_tpp_apart(x: Any, limit: Any) -> str:
    """A TPP sum that its limit's rounding would hide (4.27 G of 4.27 G, over by one) is shown in full."""
    if x is None or limit is None or float(x) == float(limit) or fmt_tpp(x) != fmt_tpp(limit):
        return fmt_tpp(x)
    return fmt_num(x)


def fmt_num(x: Any) -> str:
    if x is None:
        return "—"
    v = float(x)
    return f"{v:,.0f}" if v == int(v) else f"{v:,.3f}"


def fmt_ops(x: Any) -> str:
    """Operations as the CLI and the API's explanations write them (``1.4e26``; never a power of ten it is not)."""
    from policies.compute import sci

    return "—" if x is None else sci(float(x))


def fmt_ops_apart(x: Any, threshold: Any) -> str:
    """A lineage total as ``veuctl models list`` writes it beside its threshold: 9.9996e25, below 10^26, never
    '1.000e+26' (:func:`policies.compute.sci_apart`)."""
    from policies.compute import sci_apart

    if x is None or threshold is None:
        return fmt_ops(x)
    return sci_apart(float(x), float(threshold))[0]


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


def fmt_when(value: object) -> str:
    """A stored timestamp as people read it (``2026-12-03 18:02 UTC``); anything else as it is."""
    from datetime import UTC, datetime

    if isinstance(value, datetime):
        at = value
    elif isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        return "" if value is None else str(value)
    if at.tzinfo is None:  # the store keeps UTC
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters.update(tpp=fmt_tpp, headroom=fmt_headroom, pct=fmt_pct, num=fmt_num, when=fmt_when,
                             pct_apart=fmt_pct_apart, tpp_apart=fmt_tpp_apart, ops=fmt_ops, ops_apart=fmt_ops_apart,
                             urlq=lambda s: quote(str(s), safe=""))
templates.env.globals.update(gauge_arc=gauge_arc)


def may(request: Request, method: str, path: str) -> bool:
    """Whether the signed-in principal may send ``method path`` to the dashboard: the rule the authentication
    middleware enforces (a form the role may not submit is not offered; its post would be a 403)."""
    from agent.api.routes.auth import _dashboard_permission

    p = getattr(request.state, "principal", None)
    return p is None or bool(p.can(_dashboard_permission(method, path)))


# The page a form's address belongs to: a refused form is shown on its page, whose header's "as of" date picker
# (a GET to ``path``) and navigation must lead to that page, not to the form's POST address (a 405 JSON body) or
# to an export's download.
_FORM_PAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^/reservations(?:/.*)?$"), "/whatif"),
    (re.compile(r"^/cases/.+$"), "/cases"),
    (re.compile(r"^/deadlines/filings$"), "/deadlines"),
    (re.compile(r"^/exports/.+/download$"), "/exports"),
    (re.compile(r"^/audit/checkpoint$"), "/exports"),
    (re.compile(r"^(/controls/[^/]+/.+?)/\d+(?:/evidence)?$"), r"\1"),
)


def page_path(request: Request) -> str:
    """The address of the page ``request`` shows: its own for a page, the form's page for a form's answer."""
    path = request.url.path
    if request.method == "GET" and not path.endswith("/download"):
        return path
    return form_page_path(path) or path


def form_page_path(path: str) -> str | None:
    """The page a form's POST address belongs to (``/cases/3/resolve`` is the cases page's form), or None."""
    for pattern, page in _FORM_PAGES:
        if pattern.match(path):
            return pattern.sub(page, path)
    return None


def page_address(request: Request, qs: str) -> str | None:
    """For a form's answer shown by its POST (a refused form, as sent): the GET address of its page, which app.js
    puts in place of the POST's history entry, so that Back (after the corrected form's redirect) and reload show
    that page instead of asking to resubmit the form. None for a page shown by a GET.

    The path is quoted again: it is the decoded path, and a site named ``x%41`` read back as ``/controls/site/x%41``
    is site ``xA``'s register."""
    if request.method in ("GET", "HEAD"):
        return None
    return f"{quote(page_path(request), safe='/')}?{qs}"


def render(request: Request, template: str, as_of: date, packs: PackRegistry, **ctx: Any) -> HTMLResponse:
    diffusion = packs.find("uveu-geographic-allocation", as_of)
    principal = getattr(request.state, "principal", None)
    qs = urlencode({"as_of": as_of.isoformat()})
    return templates.TemplateResponse(request, template, {
        "as_of": as_of.isoformat(), "today": utc_today().isoformat(), "rule": diffusion,
        "qs": qs, "path": page_path(request),
        "page_address": page_address(request, qs),
        "principal": principal, "may": lambda method, path: may(request, method, path), "fe": NO_ERROR,
        "reserve_sent": {}, **ctx,
    })


# -------------------------------------------------------------------------------------------- pages


@router.get("/", response_class=HTMLResponse)
def overview(
    request: Request, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    ov = svc.overview(s, packs, as_of)
    series = svc.installed_series(s, packs, series_days(None, None, 13, as_of))
    return render(request, "overview.html", as_of, packs, ov=ov, chart=series_svg(series), series=series)


@router.get("/countries", response_class=HTMLResponse)
def countries(
    request: Request, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    summ = svc.summarize(packs, svc.placements(s, packs, as_of), as_of)
    series = svc.installed_series(s, packs, series_days(None, None, 13, as_of))
    return render(request, "countries.html", as_of, packs, summary=summ, chart=series_svg(series), series=series)


@router.get("/sites", response_class=HTMLResponse)
def sites(
    request: Request, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    return render(request, "sites.html", as_of, packs, sites=_site_rows(s, packs, as_of))


@router.get("/sites/{name:path}", response_class=HTMLResponse)  # a site name may hold a "/" ("fra1/hall-b")
def site(
    name: str, request: Request, offset: int = Offset, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    row = next((r for r in _site_rows(s, packs, as_of) if r["name"] == name), None)
    if row is None:
        resp = render(request, "error.html", as_of, packs, message=f"Site {name!r} is not registered.")
        resp.status_code = 404  # a page that does not exist, not an empty 200 (links, monitors, crawlers)
        return resp
    hp = svc.holdings_page(s, packs, as_of, site=name, limit=200, offset=max(offset, 0))
    return render(request, "site.html", as_of, packs, site=row, holdings=hp)


@router.get("/explain/{name}/{cap_id:path}", response_class=HTMLResponse)  # LPP cap ids end in a party name
def explain_page(
    name: str, cap_id: str, request: Request, offset: int = Offset,
    # As the API's: another value showed the numerator without a word (a 422 page naming part now).
    part: Literal["numerator", "all"] = Query("numerator", description="Holdings in the numerator, or all counted"),
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    d = svc.explain(s, packs, name, cap_id, as_of, 200, max(offset, 0), part)
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


# The planner's form fields, where the service's errors name the CLI's options (agent.api.fields).
PLANNER_FIELDS = {"add": "n", "move": "n", "retire": "n", "to": "to_site"}
RESERVE_FIELDS = {"add": "n", "count": "n", "planned-for": "as_of", "expires": "expires_on"}
WHATIF_FORM = FormSpec("whatif", {
    "authorization": "Authorization", "op": "Change", "n": "How many", "chip": "Chip", "site": "Site",
    "to_site": "To site", "owner": "Owner", "as_of": "Date",
}, PLANNER_FIELDS)
# The reservation form is the what-if's answer: it posts the what-if's fields again (hidden, by their labels
# there) with its own count and expiry.
RESERVE_FORM = FormSpec("reserve", {
    **{k: WHATIF_FORM.labels[k] for k in ("authorization", "chip", "site", "owner", "as_of")},
    "n": "Chips to reserve", "expires_on": "Expires", "note": "Note",
}, RESERVE_FIELDS)
RESERVE_OWN = ("n", "expires_on", "note")  # the reservation form's own visible fields; the others are the what-if's


@router.get("/whatif", response_class=HTMLResponse)
def whatif_form(
    request: Request, reserved: str = "", s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> HTMLResponse:
    """The planner; with the what-if form's fields in the address (the form is a GET: a question, not a change),
    its answer. The back button returns to an answer (after one of its links, or after reserving its headroom)
    instead of a "Confirm Form Resubmission" page, and the answer can be bookmarked or shared."""
    query = request.query_params
    if "authorization" in query and may(request, "POST", "/whatif"):
        # A role without the plan permission gets the read-only planner (its note says why), not the answer.
        return _whatif_answer(request, s, packs, dict(query.items()))
    # The header's date (a bad one is the error page, as on every page).
    as_of = get_as_of(query.get("as_of"))
    reserved = reserved if reserved.isascii() and reserved.isdigit() else ""  # an id in 0-9, as the API's
    if reserved and not query.get("as_of"):
        # The reservation just made: the planner at the date it was planned for (its Date field and the header's),
        # not today's, so the next change is planned beside it.
        from agent.store.tables.caps import Reservation

        try:
            row = s.get(Reservation, int(reserved))
        except OverflowError:
            row = None
        if row is not None:
            as_of = row.planned_for
    return render(request, "whatif.html", as_of, packs, form={}, result=None, error=None,
                  reserved=reserved or None, **_planner_ctx(s, packs))


def _form_as_of(form: Any) -> date:
    """A form's ``as_of`` day (its page's date); today when the field is empty. Refused naming ``as_of``."""
    return parse_as_of(str(form.get("as_of") or "").strip() or utc_today().isoformat(), "as_of")


_INT_DIGITS = 4300  # int() reads no longer number (Python's str-to-int limit)


def _form_int(form: Any, key: str, default: int | None = 0) -> int:
    """A count of chips in the digits 0-9 from a form's field; an empty field is ``default``, or refused when
    there is none."""
    raw = str(form.get(key) or "").strip()
    if not raw:
        if default is None:
            raise PolicyError(f"{key}: empty; give a whole number")
        return default
    if not raw.isascii():
        # int() reads any script's digits ("１２", "٣"); the API (pydantic) refuses them, and so does the form.
        raise PolicyError(f"{key}: {raw!r} is not written in the digits 0-9; type the number with the digits 0-9")
    digits = raw.lstrip("+-")
    if digits.isdigit() and len(digits) > _INT_DIGITS:  # int() refuses it ("Exceeds the limit"): not "not whole"
        if raw.startswith("-"):
            raise PolicyError(f"{key}: N must be zero or more")  # as the core says it of a shorter one
        from policies.compute import MAX_CHIPS

        raise PolicyError(f"{key}: {raw[:12]}… ({len(digits):,} digits) is more chips than any fleet holds; "
                          f"give at most {MAX_CHIPS:,}")
    try:
        return int(raw)
    except ValueError:
        raise PolicyError(f"{key}: {raw!r} is not a whole number") from None


def _whatif_of(s: Session, packs: PackRegistry, form: Mapping[str, Any], n: int | None = None) -> dict[str, Any]:
    """The planner's answer for a what-if form's fields (``n`` instead of its count when given)."""
    return svc.whatif(
        s, packs, str(form.get("authorization", "")), op=str(form.get("op", "add")),  # type: ignore[arg-type]
        # The count is required (as in the API): an emptied field is not a change of no chips.
        n=_form_int(form, "n", None) if n is None else n, chip_name=str(form.get("chip", "")),
        site=str(form.get("site", "")),
        # The destination field stays in the form (hidden) when the operation is switched from move.
        to_site=(str(form.get("to_site") or "") or None) if form.get("op") == "move" else None,
        as_of=_form_as_of(form),
        owner=str(form.get("owner") or "") or None, operator=str(form.get("operator") or "") or None,
    )


@router.post("/whatif", response_class=HTMLResponse)
def whatif_run(
    request: Request, form: dict[str, Any] = PostedForm, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> HTMLResponse:
    """The what-if's answer for a posted form (API-style clients; the dashboard's form is a GET of /whatif)."""
    return _whatif_answer(request, s, packs, form)


def _whatif_answer(request: Request, s: Session, packs: PackRegistry, form: dict[str, Any]) -> HTMLResponse:
    """The planner with the answer for a what-if form's fields, or with its error (422) and the fields as sent."""
    result, fe = None, NO_ERROR
    d = utc_today()
    try:
        d = _form_as_of(form)
        result = _whatif_of(s, packs, form)
    except (PolicyError, OverflowError) as exc:
        fe = page_error(exc, WHATIF_FORM)
    resp = render(request, "whatif.html", d, packs, form=form, result=result, error=fe.message or None, fe=fe,
                  **_planner_ctx(s, packs))
    if fe.message:
        resp.status_code = 422
    return resp


@router.post("/reservations", response_class=HTMLResponse)
def reserve(
    request: Request, form: dict[str, Any] = PostedForm, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> Response:
    d = utc_today()
    try:
        d = _form_as_of(form)
        expires = str(form.get("expires_on") or "").strip()
        until = parse_date(expires, "expires_on") if expires else None
        row = svc.reserve(s, packs, str(form.get("authorization", "")), n=_form_int(form, "n"),
                          chip_name=str(form.get("chip", "")), site=str(form.get("site", "")), planned_for=d,
                          owner=str(form.get("owner") or "") or None,
                          operator=str(form.get("operator") or "") or None, note=str(form.get("note", "")),
                          expires_on=until)
    except (PolicyError, OverflowError) as exc:
        s.rollback()
        fe = page_error(exc, RESERVE_FORM, date_field="expires_on" if form.get("expires_on") else "as_of")
        if fe.fields and not set(fe.fields) & set(RESERVE_OWN):  # a what-if field: marked in the what-if form
            fe = FormError(WHATIF_FORM.form, fe.message, fe.fields)
        # The reservation form comes back as it was sent, under the planner's answer for the same change.
        result = None
        for n in (None, 0):  # its count, or (a count the planner refuses too) none: the caps as they stand
            try:
                result = _whatif_of(s, packs, {**form, "op": "add"}, n=n)
                break
            except (PolicyError, OverflowError):
                s.rollback()
        # The page is at the date planned for (as the what-if's answer is), or today's when that date is refused.
        resp = render(request, "whatif.html", d, packs, form=form, result=result, reserve_sent=form,
                      error=f"Reservation refused: {fe.message}", fe=fe, **_planner_ctx(s, packs))
        resp.status_code = 409 if isinstance(exc, svc.CapExceeded | svc.Conflict) else 422
        return resp
    # Back to the planner, which shows it at the date planned for (whatif_form).
    return RedirectResponse(f"/whatif?reserved={row.id}", status_code=303)


@router.post("/reservations/{rid}/release")
def release(request: Request, rid: int, form: dict[str, Any] = PostedForm, s: Session = DbSession,
            packs: PackRegistry = Depends(get_packs)) -> Response:
    # The planner's date (its release buttons send it): the page comes back at that date.
    as_of = _form_as_of_or_today(form)
    try:
        try:
            svc.close_reservation(s, rid, "released")
        except OverflowError:  # an id no store holds (a hand-made address): no such reservation either
            raise svc.NotFound(f"reservation: #{rid} does not exist") from None
    except PolicyError as exc:
        # Released twice (two tabs, a back button): the planner page says so, not a JSON body.
        s.rollback()
        shown = svc.shown_count(rid, grouped=False)
        resp = render(request, "whatif.html", as_of, packs, form={}, result=None,
                      error=f"Reservation #{shown}: {_shorten(form_detail(str(exc), {}))}", **_planner_ctx(s, packs))
        resp.status_code = 409 if isinstance(exc, svc.Conflict) else 404 if isinstance(exc, svc.NotFound) else 422
        return resp
    return RedirectResponse(f"/whatif?{urlencode({'as_of': as_of.isoformat()})}", status_code=303)


@router.get("/shipments", response_class=HTMLResponse)
def shipments(
    request: Request, offset: int = Offset, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    offset = max(offset, 0)
    rows, total = svc.list_shipments(s, limit=PAGE, offset=offset)
    alloc = svc.caps_report(svc.allocation_caps(s, packs, as_of), as_of)
    return render(request, "shipments.html", as_of, packs, rows=[svc.shipment_dict(s, packs, r) for r in rows],
                  total=total, offset=offset, limit=PAGE, alloc=alloc)


# ------------------------------------------------------------------------------- cases and models


@router.get("/cases", response_class=HTMLResponse)
def cases_page(
    request: Request, status: str = "open", resolved: str = "", customer: str = "", offset: int = Offset,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    # Red flag 28 is in effect from 2025-01-13: a date before it is refused naming as of (date), as on every page.
    packs.provision("red-flag-28", as_of)
    return render(request, "cases.html", as_of, packs, **_case_list(s, status, customer, max(offset, 0), as_of),
                  error=None, resolved=resolved if resolved.isascii() and resolved.isdigit() else None, form={},
                  form_case=None)


def _case_list(s: Session, status: str, customer: str, offset: int, as_of: date) -> dict[str, Any]:
    """The cases page's list: a page of PAGE cases as of ``as_of`` (as the API lists them), its count, and the
    filters its pager and tabs keep."""
    from agent import cases

    pg = cases.cases_page(s, status or None, customer.strip() or None, PAGE, offset, as_of)
    keep = {"status": status, **({"customer": customer.strip()} if customer.strip() else {}),
            "as_of": as_of.isoformat()}
    return {"cases": pg.items, "total": pg.total, "offset": offset, "limit": PAGE, "status": status,
            "customer": customer.strip(), "list_qs": urlencode(keep),
            "tab_qs": urlencode({k: v for k, v in keep.items() if k != "status"}),
            "dated": as_of != utc_today()}


# The red-flag-28 answers.
CASE_FORM = FormSpec("case", {
    "export_intent": "Will the model weights be exported?", "licence": "Licence number", "scope": "Licence scope",
    "informed": "Customer informed of its licence obligation", "notes": "Notes",
}, {"license": "licence"}, rewrites=(
    # "--export-intent yes: ... (--license NUM) or ... (--informed)": the fields to answer are the other two.
    (r"^export_intent yes: (.*?) \(licence NUM\)(.*?) \(informed\)$",
     r"licence/informed: with the weights exported (yes), \1\2"),
))


@router.post("/cases/{case_id}/resolve", response_class=HTMLResponse)
def resolve_case(
    case_id: int, request: Request, form: dict[str, Any] = PostedForm, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> Response:
    """The red-flag-28 answers: export intent, licence on file or customer informed, and notes."""
    from agent import cases
    from agent.audit import current_actor

    principal = getattr(request.state, "principal", None)
    by = str(getattr(principal, "actor", "") or "") or current_actor()
    intent = str(form.get("export_intent", ""))
    # The amend form of a resolved case: new answers replace the old (the audit trail keeps both).
    amend = str(form.get("amend", "")) in ("1", "on", "true")
    as_of = _form_as_of_or_today(form)
    try:
        if intent not in ("yes", "no"):
            # Anything but an explicit answer would be recorded as "no export intent", an answer never given.
            raise PolicyError(f"export_intent: {intent[:40]!r} is not an answer; choose yes or no" if intent
                              else "export_intent: no answer chosen; choose yes or no")
        cases.resolve_case(
            s, packs, case_id, export_intent=intent == "yes",
            licence=str(form.get("licence", "")), scope=str(form.get("scope", "")),
            informed=str(form.get("informed", "")) == "on", by=by, notes=str(form.get("notes", "")), amend=amend,
        )
    except PolicyError as exc:
        s.rollback()
        # Back to the list the form was on, its answers kept, so one wrong field does not cost the rest.
        fe = CASE_FORM.error(str(exc), f"case-{case_id}")
        message = fe.message
        answered = isinstance(exc, cases.CaseAnswered)
        if answered:  # answered meanwhile (another tab, a colleague): its amend form, not a JSON flag, changes it
            message = message.split("; set ")[0].split("; tick amend")[0] + "; to change the answers, amend them below"
        shown = "resolved" if amend or answered else "open"
        listed = _case_list(s, shown, "", 0, as_of)
        if not isinstance(exc, cases.UnknownCase) and all(c["id"] != case_id for c in listed["cases"]):
            # The form's case stays on the page wherever it falls in the list (a later page, answered after the
            # page's date), so its answers come back beside the error.
            listed["cases"] = [cases.case_view(cases.get_case(s, case_id)), *listed["cases"]]
        resp = render(request, "cases.html", as_of, packs, **listed,
                      error=f"Case #{case_id}: {message}", resolved=None, form=form, form_case=case_id, fe=fe,
                      page_address=f"/cases?{urlencode({'status': shown, 'as_of': as_of.isoformat()})}")
        resp.status_code = 404 if isinstance(exc, cases.UnknownCase) else 409 if isinstance(exc, svc.Conflict) else 422
        return resp
    q = urlencode({"status": "resolved", "resolved": case_id, "as_of": as_of.isoformat()})
    return RedirectResponse(f"/cases?{q}", status_code=303)


def _form_as_of_or_today(form: Mapping[str, Any]) -> date:
    """The date a page was shown at (its forms send it), to come back at; today when it is unreadable: what the
    form records (a release, a case's answers) is done now whatever the page's date, so a hand-edited date must
    not cost it."""
    try:
        return _form_as_of(form)
    except (PolicyError, OverflowError):
        return utc_today()


@router.get("/models", response_class=HTMLResponse)
def models_page(
    request: Request, offset: int = Offset, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    from agent import ledger

    offset = max(offset, 0)
    pg = ledger.list_models(s, packs, as_of, limit=PAGE, offset=offset)
    return render(request, "models.html", as_of, packs, models=pg.items, total=pg.total, offset=offset, limit=PAGE)


# ------------------------------------------------------------------------------------------ exports

# What each export is for, in the words of the reports it feeds (display text only).
EXPORT_TITLES: dict[str, tuple[str, str]] = {
    "installed-base": ("Installed base", "Holdings by site, country and tier on the 'to' date with TPP and each "
                       "VEU authorization's cap positions: the semi-annual VEU report's inventory."),
    "transfers": ("Transfers and new sites", "Moves between countries, changes of owner, new sites, attrition and "
                  "holdings returned to service in the period, from the holdings history (the advance-notice duty)."),
    "red-flags": ("Red-flag register", "Every red flag 28 case: customer, effective tier and why, model, estimate "
                  "and method, decision, answers, who and when."),
    "model-ledger": ("Model ledger", "Models at or near the 4E091 threshold with cumulative operations and the "
                     "explanation."),
    "shipments": ("Shipments ledger", "Shipments against Tier 2 allocations and LPP per consignee per year; "
                  "each with its consignee's address and value (USD)."),
    "decisions": ("Admission decisions", "Every admission decision of the period."),
    "audit-log": ("Audit log", "The audit trail itself for the period."),
}


def _half_year_start(d: date) -> date:
    # The VEU report periods are half-years (§ 748.15(f)): default to the current one.
    return date(d.year, 1 if d.month <= 6 else 7, 1)


# The period and format of each export's download form (the labels it shows: "from", "to").
EXPORT_FORM = FormSpec("export", {"from": "from", "to": "to", "format": "format", "authorization": "authorization"})


def _exports_page(request: Request, s: Session, packs: PackRegistry, as_of: date, error: str | None = None,
                  form: dict[str, str] | None = None, signed: str | None = None,
                  fe: FormError = NO_ERROR) -> HTMLResponse:
    from agent import audit
    from agent import exports as ex

    kinds = [{"kind": k, "available": ex.available(k), "source": src,
              "title": EXPORT_TITLES.get(k, (k, ""))[0], "about": EXPORT_TITLES.get(k, (k, ""))[1]}
             for k, (_mod, src) in ex.KINDS.items()]
    verify = audit.verify_chain(s).as_dict()
    form = form or {}
    return render(request, "exports.html", as_of, packs, kinds=kinds, verify=verify, error=error, signed=signed,
                  formats=ex.FORMATS, authorizations=[a.name for a in svc.list_authorizations(s)],
                  start=form.get("from") or _half_year_start(as_of).isoformat(),
                  end=form.get("to") or as_of.isoformat(), chosen=form.get("format") or "csv",
                  chosen_authorization=form.get("authorization") or "", fe=fe)


@router.get("/exports", response_class=HTMLResponse)
def exports_page(
    request: Request, signed: str = "", s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    return _exports_page(request, s, packs, as_of, signed=signed or None)


@router.post("/audit/checkpoint")
def sign_checkpoint(request: Request, form: dict[str, Any] = PostedForm, s: Session = DbSession) -> Response:
    """Sign the head of the audit chain now (anchors the tail so truncation becomes detectable)."""
    from agent import audit

    # Back to the exports page at its date (its periods default to it); a checkpoint is signed now whatever it.
    as_of = _form_as_of_or_today(form)
    cp = audit.checkpoint(s)
    q = urlencode({"signed": cp.seq if cp else "", "as_of": as_of.isoformat()})
    return RedirectResponse(f"/exports?{q}", status_code=303)


@router.get("/exports/{kind}/download", response_model=None)
def export_download(
    kind: str, request: Request, from_: str = Query("", alias="from"), to: str = "",
    format_: str = Query("csv", alias="format"), authorization: str = "",
    as_of: str = Query("", description="The exports page's date, to show it again at if the download is refused"),
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> Response:
    """A ZIP of the export's files and its signed manifest (the API's download, under the session cookie)."""
    from agent.api.routes import exports as api

    try:
        return api.download(kind, from_=from_, to=to, format_=[format_], authorization=authorization or None,
                            s=s, packs=packs)
    except HTTPException as exc:
        status, fe = exc.status_code, EXPORT_FORM.error(str(exc.detail), f"export-{kind}")
    except (PolicyError, OverflowError) as exc:
        status, fe = 422, page_error(exc, EXPORT_FORM, f"export-{kind}", date_field="to")
    s.rollback()
    page_day = _form_as_of_or_today({"as_of": as_of})  # the page's date; today when it is unreadable
    resp = _exports_page(request, s, packs, page_day, error=f"Export {_clip(kind)}: {fe.message}", fe=fe,
                         form={"from": from_, "to": to, "format": format_, "kind": kind,
                               "authorization": authorization})
    resp.status_code = status
    return resp


# ------------------------------------------------------------------------------ obligations: deadlines


def _principal_can(request: Request, permission: str) -> bool:
    p = getattr(request.state, "principal", None)
    return p is None or bool(p.can(permission))


def _actor(request: Request) -> str:
    from agent.audit import current_actor

    p = getattr(request.state, "principal", None)
    return str(getattr(p, "actor", "") or "") or current_actor()


# The filing form of each open deadline; the page fills in its key (named in the message's own "Deadline KEY: ")
# and its as-of date (the header's).
DEADLINE_FORM = FormSpec("deadline", {
    "key": None, "as_of": PARAM_LABELS["as_of"], "filed_on": "Filed on", "reference": "Reference", "early": "early",
}, {"KEY": "key", "on": "filed_on"})


def _deadlines_page(request: Request, s: Session, packs: PackRegistry, as_of: date, status: str,
                    error: str | None = None, filed: str | None = None, fe: FormError = NO_ERROR,
                    sent: Mapping[str, Any] | None = None, keep: str | None = None) -> HTMLResponse:
    """The deadlines page on the ``status`` tab; with ``keep`` (a refused filing's key), the "all" tab when that
    deadline is not on ``status``'s, so its form is shown as sent."""
    from agent import obligations as ob
    from policies import obligations as core

    every = ob.deadline_list(s, packs, as_of)
    counts = {st: sum(1 for d in every if d.status == st) for st in core.DEADLINE_STATUSES}
    if keep is not None and not any(d.key == keep and d.status == status for d in every):
        status = ""
    rows = [d.to_dict() for d in every if not status or d.status == status]
    extra: dict[str, Any] = {}
    if request.method == "POST":  # a refused form: Back and reload show its tab, not the "all" one
        q = {"as_of": as_of.isoformat(), **({"status": status} if status else {})}
        extra["page_address"] = f"/deadlines?{urlencode(q)}"
    return render(request, "deadlines.html", as_of, packs, deadlines=rows, counts=counts, status=status,
                  statuses=core.DEADLINE_STATUSES, error=error, filed=filed, notifications=ob.notifications(s, 20),
                  can_file=_principal_can(request, "compliance"), fe=fe, sent=sent or {}, **extra)


def deadline_form(key: str) -> str:
    """The id of a deadline's filing form (its row's key, made an id)."""
    return "deadline-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)


@router.get("/deadlines", response_class=HTMLResponse)
def deadlines_page(
    request: Request, status: str = "", filed: str = "", s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    from agent import obligations as ob
    from policies import obligations as core

    if status and status not in core.DEADLINE_STATUSES:
        # A mistyped tab listed every deadline under no tab, read as the ones asked for: refused naming status
        # (the error page), in the API's words (the service refuses it before working anything out).
        ob.deadline_list(s, packs, as_of, status)
    return _deadlines_page(request, s, packs, as_of, status, filed=filed or None)


@router.post("/deadlines/filings", response_class=HTMLResponse)
def file_deadline(
    request: Request, form: dict[str, Any] = PostedForm, s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs),
) -> Response:
    """Mark a deadline done: record the filing (date and reference) through the obligations service."""
    from agent import obligations as ob
    from policies import obligations as core

    key = str(form.get("key", ""))
    # The tab the form was on (overdue, due...): the answer comes back to it; anything else is the "all" tab.
    tab = str(form.get("status", ""))
    tab = tab if tab in core.DEADLINE_STATUSES else ""
    as_of = utc_today()
    try:
        as_of = _form_as_of(form)
        filed_on = parse_date(str(form.get("filed_on") or ""), "filed_on")
        ob.file_deadline(s, packs, key, filed_on, str(form.get("reference", "")), _actor(request), as_of=as_of,
                         early=bool(form.get("early")))
    except (PolicyError, OverflowError) as exc:
        s.rollback()
        # The row's form comes back as it was sent (its date and reference), the field in error marked.
        fe = page_error(exc, DEADLINE_FORM, deadline_form(key))
        # A date too far ahead for the deadlines to be worked out is shown against today's list.
        shown = utc_today() if isinstance(exc, OverflowError) else as_of
        try:
            resp = _deadlines_page(request, s, packs, shown, tab, error=f"Deadline {_clip(key)}: {fe.message}",
                                   fe=fe, sent=form, keep=key)
        except PolicyError as page_exc:
            # A page date before the rules (a hand-edited as_of): the list cannot be worked out then either, so
            # today's list carries the message, naming that date (it was a bare JSON body). The page date's own
            # error, not the filing's: that one may be about another field (filed_on), and is not the page's.
            s.rollback()
            fe = page_error(PolicyError(f"as_of: {page_exc}"), DEADLINE_FORM, deadline_form(key))
            resp = _deadlines_page(request, s, packs, utc_today(), "", error=f"Deadline {_clip(key)}: {fe.message}",
                                   fe=fe, sent=form)
        resp.status_code = 404 if isinstance(exc, ob.NotFound) else 409 if isinstance(exc, svc.Conflict) else 422
        return resp
    q = {"as_of": as_of.isoformat(), **({"status": tab} if tab else {}), "filed": key}
    return RedirectResponse(f"/deadlines?{urlencode(q)}", status_code=303)


# ----------------------------------------------------------------------- obligations: controls register


@router.get("/controls", response_class=HTMLResponse)
def controls_index(
    request: Request, s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
    as_of: date = Depends(get_as_of),
) -> HTMLResponse:
    """Every site and authorization with the register entries recorded for it, by status."""
    from agent.store.tables.obligations import ControlEntry

    recorded: dict[tuple[str, str], dict[str, int]] = {}
    for e in s.exec(select(ControlEntry)).all():
        by = recorded.setdefault((e.scope, e.subject), {})
        by[e.status] = by.get(e.status, 0) + 1
    sites_ = [(x.name, x.country) for x in s.exec(select(Site).order_by(Site.name)).all()]
    auths = [(a.name, a.kind) for a in svc.list_authorizations(s)]
    return render(request, "controls_index.html", as_of, packs, sites=sites_, authorizations=auths,
                  recorded=recorded)


# A register paragraph's row: its entry (owner, status, review date: the columns' headings) and its evidence.
ENTRY_FORM = FormSpec("entry", {
    "as_of": PARAM_LABELS["as_of"], "owner": "Owner", "status": "Status", "review_date": "Review date",
}, {"review": "review_date"})
EVIDENCE_FORM = FormSpec("evidence", {
    "as_of": PARAM_LABELS["as_of"], "kind": "Evidence kind", "uri": "Document link",
    "statement": "Attestation statement", "attested_by": "Attested by", "attested_on": "Attested on",
}, {"by": "attested_by", "on": "attested_on"})


def register_form(paragraph: int, kind: str) -> str:
    """The id of a paragraph's entry or evidence form (``p14-entry``)."""
    return f"p{paragraph}-{kind}"


def _register_page(request: Request, s: Session, packs: PackRegistry, scope: str, subject: str, as_of: date,
                   error: str | None = None, saved: str | None = None,
                   sent: tuple[int, str, dict[str, Any]] | None = None, fe: FormError = NO_ERROR) -> HTMLResponse:
    """The register page; ``sent`` (paragraph, form kind, fields) is a refused form, shown again as it was sent."""
    from agent import obligations as ob
    from policies import obligations as core

    try:
        reg = ob.register(s, packs, scope, subject, as_of)
    except PolicyError as exc:
        resp = render(request, "error.html", as_of, packs, heading="Controls register",
                      message=form_detail(str(exc), {}), links=[("/controls", "Every controls register")])
        resp.status_code = 404 if isinstance(exc, ob.NotFound) else 422
        return resp
    resp = render(request, "controls.html", as_of, packs, reg=reg, scope=scope, subject=subject, error=error,
                  saved=saved, entry_statuses=core.ENTRY_STATUSES, evidence_kinds=ob.EVIDENCE_KINDS,
                  can_edit=_principal_can(request, "compliance"), sent_p=sent[0] if sent else None,
                  sent_kind=sent[1] if sent else None, sent=sent[2] if sent else {}, fe=fe)
    if error:
        resp.status_code = 422
    return resp


# A register paragraph's form address (``iad-dc1/7``, ``iad-dc1/14/evidence``) read as a subject.
_PARAGRAPH_ADDRESS = re.compile(r"^(.+)/(\d+)(?:/evidence)?$")


@router.get("/controls/{scope}/{subject:path}", response_class=HTMLResponse)  # a site name may hold a "/"
def controls_page(
    scope: str, subject: str, request: Request, saved: str = "", s: Session = DbSession,
    packs: PackRegistry = Depends(get_packs), as_of: date = Depends(get_as_of),
) -> Response:
    resp = _register_page(request, s, packs, scope, subject, as_of, saved=saved or None)
    m = _PARAGRAPH_ADDRESS.match(subject)
    if resp.status_code == 404 and m:
        # A paragraph's form address opened with GET (signing in again after the session ran out while saving
        # it comes back to it): the paragraph on its register, not a 404 naming a site "iad-dc1/7". A subject of
        # that name, if one is registered, is its own register (tried first).
        q = urlencode({"as_of": as_of.isoformat()})
        return RedirectResponse(f"/controls/{quote(scope, safe='')}/{quote(m.group(1), safe='')}?{q}#p{m.group(2)}",
                                status_code=303)
    return resp


@router.get("/cases/{case_id}/resolve", include_in_schema=False)
@router.get("/deadlines/filings", include_in_schema=False)
@router.get("/audit/checkpoint", include_in_schema=False)
@router.get("/reservations", include_in_schema=False)
@router.get("/reservations/{rid}/release", include_in_schema=False)
def form_address(request: Request) -> RedirectResponse:
    """A form's POST address opened with GET leads to the form's page. Signing in again after the session ran
    out while a form was sent comes back to its address (``/login?next=/cases/2/resolve``): that was a JSON
    "Method Not Allowed". Nothing is submitted: the answers sent were lost with the session."""
    page = form_page_path(request.url.path) or "/"
    return RedirectResponse(page + (f"?{request.url.query}" if request.url.query else ""), status_code=303)


def _register_redirect(scope: str, subject: str, as_of: date, paragraph: int) -> RedirectResponse:
    q = urlencode({"as_of": as_of.isoformat(), "saved": paragraph})
    return RedirectResponse(f"/controls/{quote(scope, safe='')}/{quote(subject, safe='')}?{q}#p{paragraph}",
                            status_code=303)


@router.post("/controls/{scope}/{subject:path}/{paragraph:int}", response_class=HTMLResponse)
def set_control(
    scope: str, subject: str, paragraph: int, request: Request, form: dict[str, Any] = PostedForm,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> Response:
    """Set a paragraph's owner, status and review date (an empty review date keeps the recorded one)."""
    from agent import obligations as ob

    def save(form: dict[str, Any]) -> None:
        review = str(form.get("review_date") or "").strip()
        ob.set_entry(s, scope, subject, paragraph, owner=str(form.get("owner", "")),
                     status=str(form.get("status") or "") or None,
                     review_date=parse_date(review, "review_date") if review else None, actor=_actor(request))

    return _register_form(request, form, s, packs, scope, subject, paragraph, ENTRY_FORM, save)


@router.post("/controls/{scope}/{subject:path}/{paragraph:int}/evidence", response_class=HTMLResponse)
def add_control_evidence(
    scope: str, subject: str, paragraph: int, request: Request, form: dict[str, Any] = PostedForm,
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> Response:
    """Attach a document link or an attestation to a paragraph's register entry."""
    from agent import obligations as ob

    def save(form: dict[str, Any]) -> None:
        attested = str(form.get("attested_on") or "").strip()
        if str(form.get("kind", "link")) == "attestation":  # the core names both ("--statement/--by") for either
            missing = [k for k in ("statement", "attested_by") if not str(form.get(k, "")).strip()]
            if missing:
                raise PolicyError(f"{'/'.join(missing)}: an attestation needs the statement and who attests it")
        ob.add_evidence(s, scope, subject, paragraph, str(form.get("kind", "link")), uri=str(form.get("uri", "")),
                        statement=str(form.get("statement", "")), attested_by=str(form.get("attested_by", "")),
                        attested_on=parse_date(attested, "attested_on") if attested else None,
                        actor=_actor(request))

    return _register_form(request, form, s, packs, scope, subject, paragraph, EVIDENCE_FORM, save)


def _register_form(request: Request, form: dict[str, Any], s: Session, packs: PackRegistry, scope: str, subject: str,
                   paragraph: int, spec: FormSpec, save: Callable[[dict[str, Any]], None]) -> Response:
    """Apply a register form (its ``as_of`` read first): back to the paragraph, or the page with the error."""
    as_of = utc_today()
    kind = spec.form  # "entry" or "evidence"
    try:
        as_of = _form_as_of(form)
        save(form)
    except (PolicyError, OverflowError) as exc:
        s.rollback()
        fe = page_error(exc, spec, register_form(paragraph, kind))
        what = " evidence" if kind == "evidence" else ""
        # The refused form comes back as it was sent: an attestation's statement is not retyped for one field.
        return _register_page(request, s, packs, scope, subject, as_of, error=f"¶{paragraph}{what}: {fe.message}",
                              sent=(paragraph, kind, form), fe=fe)
    return _register_redirect(scope, subject, as_of, paragraph)


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response((HERE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml")


# Every form's labels for the templates (``forms.whatif.labels.n``), and its per-row form ids.
templates.env.globals.update(forms={spec.form: spec for spec in (
    WHATIF_FORM, RESERVE_FORM, CASE_FORM, DEADLINE_FORM, ENTRY_FORM, EVIDENCE_FORM, EXPORT_FORM)},
    deadline_form=deadline_form, register_form=register_form,
    # The case form's maxlength: the core's limits, by the form's field names (its licence is the CLI's --license).
    case_maxlen={CASE_FORM.renames.get(k, k): n for k, n in ANSWER_MAXLEN.items()})


def setup(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
