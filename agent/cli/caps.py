"""`veuctl authorizations|caps|whatif|reservations|shipments`: how much more compute fits, and where."""

from __future__ import annotations

import math
from typing import Any

import typer
from rich.markup import escape

from agent import caps as svc
from agent.cli._common import (
    AsOfOpt,
    DbOpt,
    JsonOpt,
    UsageError,
    as_of,
    console,
    db_url,
    emit,
    fits_the_store,
    not_blank,
    table,
)
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utc_today
from policies.errors import cli_word
from policies.packs import parse_date

auth_app = typer.Typer(help="Data Center VEU authorizations (UVEU / NVEU).", no_args_is_help=True)
caps_app = typer.Typer(help="Caps: UVEU shares, NVEU installed base, Tier 2 allocations, LPP.", no_args_is_help=True)
res_app = typer.Typer(help="Reservations: planned placements holding headroom.", no_args_is_help=True)
ship_app = typer.Typer(help="The shipments ledger (country allocations and LPP).", no_args_is_help=True)


def _fmt(x: Any, share: bool = False) -> str:
    """A share (value or limit of a share cap) as a percentage, whatever its size; anything else as a number."""
    if x is None:
        return "-"
    if share and isinstance(x, int | float):
        return f"{x:.4%}"
    if isinstance(x, int | float):
        return f"{x:,.0f}"
    return str(x)


def _share_value(value: Any, limit: Any) -> str:
    """A share cap's value as a percentage, with the digits it takes not to read as its limit when it is not.

    At four decimals 7.0000462% printed as 7.0000%, the limit itself, beside OVER.
    """
    if not isinstance(value, int | float) or not isinstance(limit, int | float) or value == limit:
        return _fmt(value, True)
    digits = svc.share_digits_apart(value, limit, 4, 12)
    return _fmt(value, True) if digits is None else f"{value:.{digits}%}"


def _headroom(x: Any) -> str:
    """Headroom in whole TPP, rounded down: what is shown as room fits, and a shortfall shown is at least what must
    go (rounded half up, 1,055,466.67 TPP of room printed as 1,055,467)."""
    if isinstance(x, int | float) and math.isfinite(x):
        return f"{math.floor(x):,}"
    return _fmt(x)


# A cap whose limit is None has no allocation in effect on the date (Table 1 to § 748.15(a)(2)(iii)(B) has no row
# for it, or the 2025-2027 country allocations ended): it is OVER by design, as nothing may be placed against an
# allocation that is not in effect. The words say so; Python's None never reaches the user.
NO_LIMIT = "none in effect"
NO_ALLOCATION = "OVER: no allocation in effect"


def _limit(x: Any, share: bool = False) -> str:
    """A cap's limit (``_fmt``), or that none is in effect."""
    return NO_LIMIT if x is None else _fmt(x, share)


def _status(ok: bool, limit: Any) -> str:
    """OK / OVER, and why a cap with no limit is OVER."""
    if ok:
        return "OK"
    return NO_ALLOCATION if limit is None else "OVER"


def _why_no_limit(c: dict[str, Any]) -> str:
    note = c.get("explanation", {}).get("note") or f"{c['title']}: no limit is in effect on this date"
    return f"{c['id']}: {NO_ALLOCATION}: {note}; nothing may be placed against an allocation that is not in effect"


def _print_caps(data: dict[str, Any]) -> None:
    title = f"{data.get('authorization') or 'allocations'} as of {data['as_of']}"
    if not data["caps"] and data.get("note"):  # an empty table said nothing of why
        console.print(f"{title}: {data['note']}", soft_wrap=True, markup=False, highlight=False)
        return
    rows = []
    for c in data["caps"]:
        flags = ("" if c["confirmed"] else " ?") + ("" if c["enforced"] else " ~")
        share = c["kind"] == "share"
        value = _share_value(c["value"], c["limit"]) if share else _fmt(c["value"])
        rows.append({"cap": c["id"], "view": "binding" if c["binding"] else "info", "value": value,
                     "limit": _limit(c["limit"], share), "headroom TPP": _headroom(c["headroom"]),
                     "ok": _status(c["ok"], c["limit"]) + flags})
    table(rows, ["cap", "view", "value", "limit", "headroom TPP", "ok"], title=title)
    for c in data["caps"]:
        if c["limit"] is None and not c["ok"]:
            console.print(_why_no_limit(c), soft_wrap=True, markup=False, highlight=False)
    console.print("? a provision behind the figure is UNCONFIRMED   ~ codified but not enforced on this date   "
                  "(--json for the explanation down to the holdings)")


def _owner_operator(owner: str | None, operator: str | None) -> None:
    """A blank --owner or --operator is refused: it read as left out, the holder (the owner) in its place."""
    not_blank(owner, "--owner", "give the owner party, or leave --owner out for the authorization's holder")
    not_blank(operator, "--operator", "give the operator party, or leave --operator out for the owner")


@auth_app.command("add")
def auth_add(
    name: str = typer.Argument(..., help="Name of the authorization (e.g. aurora-uveu)."),
    kind: str = typer.Option(..., "--kind", help="uveu | nveu"),
    holder: str = typer.Option(..., "--holder", help="The party holding the authorization."),
    country: str | None = typer.Option(None, "--country", help="NVEU only: the one destination country."),
    reference: str = typer.Option("", "--reference", help="BIS authorization reference."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Register a UVEU or an NVEU."""
    with session_scope(db_url(db)) as s:
        row = svc.add_authorization(s, registry(), name, kind, holder, country, reference)
        data = svc.authorization_dict(s, row)
    emit(data, json_)


@auth_app.command("list")
def auth_list(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Every authorization."""
    with session_scope(db_url(db)) as s:
        rows = [svc.authorization_dict(s, a) for a in svc.list_authorizations(s)]
    emit(rows, json_, lambda r: table(r, ["name", "kind", "holder", "country", "reference"]))


@caps_app.command("show")
def caps_show(
    name: str | None = typer.Argument(None, help="Authorization; omit for the Tier 2 and LPP allocations."),
    as_of_: str | None = AsOfOpt,
    no_reservations: bool = typer.Option(False, "--no-reservations", help="Ignore active reservations."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Every cap with its limit, value, headroom and the holdings behind it."""
    d = as_of(as_of_)
    packs = registry()
    not_blank(name, "NAME", "give an authorization, or leave it out for the Tier 2 and LPP allocations")
    if no_reservations and not name:
        # The allocations come from the shipments ledger: no reservation is in them, so the flag changed nothing.
        raise UsageError("--no-reservations: reservations count in an authorization's caps only; give its NAME, "
                         "or leave --no-reservations out for the Tier 2 and LPP allocations")
    with session_scope(db_url(db)) as s:
        if name:
            caps = svc.caps_for(s, packs, name, d, include_reservations=not no_reservations, with_ids=True)
            data = svc.caps_report(caps, d, authorization=name)
        else:
            data = svc.allocations_report(s, packs, d)
    emit(data, json_, _print_caps)


@caps_app.command("explain")
def caps_explain(
    name: str = typer.Argument(..., help="Authorization, or 'allocations'."),
    cap_id: str = typer.Argument(..., help="Cap id from `veuctl caps show`."),
    part: str = typer.Option("numerator", "--part", help="numerator | all (every holding in the denominator)"),
    limit: int = typer.Option(100, "--limit", help="Holdings per page (1-1000)."),
    offset: int = typer.Option(0, "--offset", help="Skip this many holdings, e.g. 100 for the next page."),
    as_of_: str | None = AsOfOpt, json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """One cap down to the holdings behind it, page by page."""
    # Each names the option at fault and the value given (one message said "--limit: 1-1000; --offset: 0 or more").
    if part not in ("numerator", "all"):
        raise UsageError(f"--part: {part!r} is not numerator or all")
    if not 1 <= limit <= 1000:
        raise UsageError(f"--limit: {limit} is not 1-1000; give the holdings per page, e.g. --limit 100")
    if offset < 0:
        raise UsageError(f"--offset: {offset} is below 0; give the holdings to skip, e.g. --offset 100 for the next "
                         "page")
    fits_the_store("--offset", offset, "give a smaller offset, e.g. --offset 100 for the next 100 holdings")
    with session_scope(db_url(db)) as s:
        data = svc.explain(s, registry(), name, cap_id, as_of(as_of_), limit, offset, part)

    def human(d: dict[str, Any]) -> None:
        # Stored names (a party "Lab [/x]") and labels ("[pack version; status]") are text, not Rich markup.
        console.print(f"[bold]{escape(d['title'])}[/bold]  {escape(d['explanation']['formula'])}")
        share = d["kind"] == "share"
        value = _share_value(d["value"], d["limit"]) if share else _fmt(d["value"])
        console.print(f"value {value}  limit {_limit(d['limit'], share)}  "
                      f"headroom {_headroom(d['headroom'])} TPP  "
                      f"{_status(d['ok'], d['limit'])}")
        if d["limit"] is None and not d["ok"]:
            console.print(_why_no_limit(d), soft_wrap=True, markup=False, highlight=False)
        for p in d["explanation"]["provisions"]:
            console.print(f"  {p['label']}", markup=False, highlight=False)
        h = d["holdings"]
        table(h["items"], ["id", "site", "country", "accelerator", "count", "tpp", "owner", "operator"],
              title=f"holdings {h['offset'] + 1}-{h['offset'] + len(h['items'])} of {h['total']}")

    emit(data, json_, human)


def whatif(
    name: str = typer.Argument(..., help="Authorization (UVEU or NVEU) whose caps to check."),
    add: int | None = typer.Option(None, "--add", help="Add N chips at --site."),
    move: int | None = typer.Option(None, "--move", help="Move N chips from --site to --to."),
    retire: int | None = typer.Option(None, "--retire", help="Retire N chips at --site."),
    chip: str = typer.Option(..., "--chip", help="Chip name (any catalog alias)."),
    site: str = typer.Option(..., "--site", help="Site where chips are added, retired or moved from."),
    to: str | None = typer.Option(None, "--to", help="Destination site of a move."),
    owner: str | None = typer.Option(None, "--owner", help="Owner of the chips (default: the holder)."),
    operator: str | None = typer.Option(None, "--operator", help="Operator (default: the owner)."),
    as_of_: str | None = AsOfOpt, json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Every cap before and after a planned change, whether it fits, what binds, and the most that fits."""
    given = [(op, n) for op, n in (("add", add), ("move", move), ("retire", retire)) if n is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --add N, --move N (with --to SITE) or --retire N")
    op, n = given[0]
    _owner_operator(owner, operator)
    with session_scope(db_url(db)) as s:
        data = svc.whatif(s, registry(), name, op=op, n=n, chip_name=chip, site=site, to_site=to,  # type: ignore[arg-type]
                          as_of=as_of(as_of_), owner=owner, operator=operator)

    def human(d: dict[str, Any]) -> None:
        def row(c: dict[str, Any]) -> dict[str, str]:
            share = c["before"]["denominator_tpp"] is not None
            def v(x: Any) -> str:
                return _share_value(x, c["limit"]) if share else _fmt(x)

            return {"cap": c["id"], "limit": _limit(c["limit"], share), "before": v(c["before"]["value"]),
                    "after": v(c["after"]["value"]), "ok": _status(c["after"]["ok"], c["limit"])}

        rows = [row(c) for c in d["caps"] if c["binding"]]
        table(rows, ["cap", "limit", "before", "after", "ok"], title=f"{op} {n} x {d['change']['chip_name']}")
        for c in d["caps"]:
            if c["binding"] and c["limit"] is None:
                how = f"`veuctl caps explain {cli_word(name)} {c['id']} --as-of {d['as_of']}`"
                console.print(f"{c['id']}: {NO_ALLOCATION} on {d['as_of']}, so nothing may be placed against it "
                              f"({how} gives the provision)", soft_wrap=True, markup=False, highlight=False)
        mf = "unlimited by these caps" if d["max_fit_unbounded"] else d["max_fit"]
        least = f"   min N: {d['min_fit']:,}" if d["min_fit"] else ""  # a cap over already: only more N cures it
        on = f" on {d['binding_on']}" if d.get("binding_on", d["as_of"]) != d["as_of"] else ""
        console.print(f"fits: {'yes' if d['ok'] else 'NO'}   binding: {d['binding'] or '-'}{on}   max N: {mf}{least}")
        k, mine = d["reservations_counted"], d["reservations_in_caps"]
        past = d["as_of"] < utc_today().isoformat()
        note = f"; caps show --as-of {d['as_of']} counts those open then" if past else ""
        which = d["reservations"].replace("as_of", d["as_of"])  # an NVEU's: "due by as_of"
        console.print(f"reservations: {which} ({k} counted as placed, every authorization's; {mine} of them in "
                      f"these caps{note})", soft_wrap=True)
        for later in d.get("later", []):  # an NVEU's plans for later quarters, each checked on its own date
            mf_on = "no limit" if later["max_fit"] is None else later["max_fit"]
            console.print(f"  with the plans due by {later['on']}: {'fits' if later['ok'] else 'OVER'} "
                          f"(max N {mf_on}, {later['reservations_counted']} reservations counted)", soft_wrap=True)
        for p in d.get("pack_dates", []):  # a later date a pack changes these caps on: the change is still there
            if p.get("note"):
                state = p["note"]
            elif p["breaks"]:
                state = f"OVER: {', '.join(p['breaks'])} (max N {'no limit' if p['max_fit'] is None else p['max_fit']})"
            else:
                state = "fits"
            if p["over_already"]:
                state += f"; over without this change: {', '.join(p['over_already'])}"
                further = [c for c in p["breaks"] if c in p["over_already"]]
                if further:  # blamed on the change all the same: it takes them further over
                    state += f" (this change takes {', '.join(further)} further over)"
            console.print(f"  on {p['on']} (pack change: {', '.join(p['provisions'])}): {state}", soft_wrap=True,
                          markup=False, highlight=False)
        horizon = f"; the packs know no change after {d['pack_horizon']}" if d.get("pack_horizon") else ""
        console.print(f"dates checked: {', '.join(d.get('dates_checked', [d['as_of']]))}{horizon}", soft_wrap=True,
                      highlight=False)

    emit(data, json_, human)


@res_app.command("add")
def res_add(
    name: str = typer.Argument(..., help="Authorization whose headroom the reservation holds."),
    count: int = typer.Option(..., "--count", help="Number of chips."),
    chip: str = typer.Option(..., "--chip", help="Chip name (any catalog alias)."),
    site: str = typer.Option(..., "--site", help="Site where the chips will be installed."),
    planned_for: str | None = typer.Option(None, "--planned-for", help="Installation date (YYYY-MM-DD)."),
    expires: str | None = typer.Option(None, "--expires", help="Stop holding the headroom on this date "
                                       "(YYYY-MM-DD) unless released or installed before; default: never."),
    owner: str | None = typer.Option(None, "--owner", help="Owner of the chips (default: the holder)."),
    operator: str | None = typer.Option(None, "--operator", help="Operator (default: the owner)."),
    note: str = typer.Option("", "--note", help="Free-text note kept with the reservation."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Reserve headroom for a planned placement (refused if it would exceed a cap)."""
    d = parse_date(planned_for, "--planned-for") if planned_for is not None else as_of(None)
    until = parse_date(expires, "--expires") if expires is not None else None
    _owner_operator(owner, operator)
    with session_scope(db_url(db)) as s:
        row = svc.reserve(s, registry(), name, n=count, chip_name=chip, site=site, planned_for=d, owner=owner,
                          operator=operator, note=note, expires_on=until)
        data = svc.reservation_dict(s, row)
    emit(data, json_)


@res_app.command("list")
def res_list(
    authorization: str | None = typer.Option(None, "--authorization", help="Only this authorization's."),
    all_: bool = typer.Option(False, "--all", help="Include released and installed reservations."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Reservations (active ones by default)."""
    not_blank(authorization, "--authorization", "give an authorization, or leave --authorization out for every one")
    with session_scope(db_url(db)) as s:
        rows = [svc.reservation_dict(s, r) for r in svc.list_reservations(s, authorization, None if all_ else "active")]
    emit(rows, json_, lambda r: table(r, ["id", "authorization", "site", "accelerator", "count", "planned_for",
                                          "expires_on", "expired", "status"]))


def _close(rid: int, status: str, json_: bool, db: str | None) -> None:
    with session_scope(db_url(db)) as s:
        data = svc.reservation_dict(s, svc.close_reservation(s, rid, status))
    emit(data, json_)


@res_app.command("release")
def res_release(rid: int = typer.Argument(..., help="Reservation id (from `veuctl reservations list`)."),
                json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Release a reservation's headroom."""
    _close(rid, "released", json_, db)


@res_app.command("installed")
def res_installed(rid: int = typer.Argument(..., help="Reservation id (from `veuctl reservations list`)."),
                  json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Mark a reservation installed (the chips now appear in the inventory)."""
    _close(rid, "installed", json_, db)


@ship_app.command("add")
def ship_add(
    day: str = typer.Option(..., "--date", help="Shipment date (YYYY-MM-DD)."),
    consignee: str = typer.Option(..., "--consignee", help="Consignee party."),
    destination: str = typer.Option(..., "--destination", help="Destination country."),
    chip: str = typer.Option(..., "--chip", help="Chip name (any catalog alias)."),
    count: float = typer.Option(..., "--count", help="Number of chips shipped."),
    via: str = typer.Option(..., "--via", help="licence | lpp | uveu | nveu | aia | other"),
    reference: str = typer.Option("", "--reference", help="Licence number or other reference."),
    authorization: str | None = typer.Option(None, "--authorization", help="UVEU/NVEU used."),
    value_usd: float | None = typer.Option(None, "--value-usd", help="Value of the items in US dollars "
                                           "(reported per shipment by a Data Center VEU)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record a shipment in the ledger."""
    packs = registry()
    with session_scope(db_url(db)) as s:
        row = svc.add_shipment(s, packs, day=day, consignee=consignee, destination=destination, chip_name=chip,
                               count=count, via=via, reference=reference, authorization=authorization,
                               value_usd=value_usd)
        data = svc.shipment_dict(s, packs, row)
    emit(data, json_)


@ship_app.command("list")
def ship_list(
    consignee: str | None = typer.Option(None, "--consignee", help="Only shipments to this party."),
    destination: str | None = typer.Option(None, "--destination", help="Only shipments to this country."),
    via: str | None = typer.Option(None, "--via", help="Only shipments via licence | lpp | uveu | nveu | aia | other."),
    limit: int = typer.Option(100, "--limit", help="Shipments per page (1-1000)."),
    offset: int = typer.Option(0, "--offset", help="Skip this many shipments, e.g. 100 for the next page."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Shipments, newest first."""
    for option, value in (("--consignee", consignee), ("--destination", destination), ("--via", via)):
        not_blank(value, option, f"give a value, or leave {option} out for every shipment")
    fits_the_store("--offset", offset, "give a smaller offset, e.g. --offset 100 for the next 100 shipments")
    packs = registry()
    with session_scope(db_url(db)) as s:
        rows, _total = svc.list_shipments(s, consignee, destination, via, limit, offset)
        data = [svc.shipment_dict(s, packs, r) for r in rows]
    emit(data, json_, lambda r: table(r, ["id", "date", "consignee", "destination", "accelerator", "count", "tpp",
                                          "value_usd", "via", "reference"]))


def register(app: typer.Typer) -> None:
    app.add_typer(auth_app, name="authorizations")
    app.add_typer(caps_app, name="caps")
    app.command("whatif")(whatif)
    app.add_typer(res_app, name="reservations")
    app.add_typer(ship_app, name="shipments")
