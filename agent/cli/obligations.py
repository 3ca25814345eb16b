"""`veuctl paths`, `veuctl controls`, `veuctl weights`, `veuctl deadlines`: obligations beyond admission."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from agent import obligations as svc
from agent.cli._common import AsOfOpt, DbOpt, JsonOpt, UsageError, as_of, console, db_url, emit, err_console, table
from agent.cli._options import option
from agent.packs import registry
from agent.store import session_scope
from policies import obligations as core
from policies.errors import PartyError, PolicyError
from policies.packs import parse_date

controls_app = typer.Typer(help="Supp. No. 10 controls register, per site and per authorization.",
                           no_args_is_help=True)
weights_app = typer.Typer(help="Model-weight custody (Supp. 10 ¶8): storage, access logs, exports.",
                          no_args_is_help=True)
deadlines_app = typer.Typer(help="Reports and notices to BIS with their deadlines; reminders.", no_args_is_help=True)

ScopeOpt = typer.Option("site", "--scope", help="site | authorization")
SubjectArg = typer.Argument(..., help="Site name, or authorization name with --scope authorization.")
ModelArg = typer.Argument(..., help="Model name (as in the model ledger).")


def _date(text: str | None, field: str) -> Any:
    # An empty value is a mistake to name, not "no date": `--review ""` used to leave the date unchanged.
    return parse_date(text, field) if text is not None else None


def _paths_human(d: dict[str, Any]) -> None:
    loc = d["location"]
    # The consignee's name is stored text (a party "Lab [/x]"), never Rich markup.
    console.print(f"[bold]{escape(d['kind'])}[/bold] {d['controlled_tpp']:,.0f} TPP to "
                  f"{escape(d['consignee']['name'])} in {escape(loc['name'])} (Tier {loc['tier']}) on {d['date']}; "
                  f"{escape(d['licence_basis'])}")
    rows = [{"path": p["path"], "open": "OPEN" if p["open"] else "closed", "presumption": p["presumption"] or "",
             # Folded by the table, never cut: a reason cut short dropped the fact that decides it (the country
             # of a consignee's ultimate parent, the allocation figures).
             "why": "; ".join(p["reasons"]), "conditions": "; ".join(p["conditions"]),
             "enforced": p["enforced"]} for p in d["paths"]]
    table(rows, ["path", "open", "presumption", "why", "conditions", "enforced"])


def paths_cmd(
    items: str = typer.Option(..., "--items", help="'NAME x COUNT[, NAME x COUNT]' e.g. 'H100 SXM x 2048'."),
    consignee: str = typer.Option(..., "--consignee", help="Receiving party (registered)."),
    country: str = typer.Option(..., "--country", help="Country where the items will be located."),
    date_: str | None = typer.Option(None, "--date", help="Date of the export (YYYY-MM-DD); default today."),
    kind: str = typer.Option("export", "--kind", help="export | reexport | transfer (in-country)"),
    operator: str | None = typer.Option(None, "--operator", help="Party operating the items, if not the consignee."),
    end_use: str | None = typer.Option(None, "--end-use", help="For ACM: development | production | storage."),
    aia_certified: bool = typer.Option(False, "--aia-certified", help="The § 740.27(b)(2) certification is on file."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Which licence exceptions, VEU authorizations or licence presumptions open this export, and why."""
    on = parse_date(date_, "--date") if date_ is not None else as_of(None)
    with session_scope(db_url(db)) as s:
        data = svc.paths(s, registry(), items, consignee, country, on, kind, operator, end_use, aia_certified)
    emit(data, json_, _paths_human)


# ------------------------------------------------------------------------------------------ controls


@controls_app.command("paragraphs")
def paragraphs(json_: bool = JsonOpt, as_of_: str | None = AsOfOpt) -> None:
    """The 19 paragraphs of Supp. No. 10 with compliance dates and status."""
    rows = [p.to_dict() for p in core.paragraphs(registry(), as_of(as_of_))]
    emit(rows, json_, lambda r: table(r, ["number", "heading", "section", "compliance_from", "applies_to",
                                           "confirmed"]))


@controls_app.command("show")
def show(
    subject: str = SubjectArg, scope: str = ScopeOpt, json_: bool = JsonOpt, as_of_: str | None = AsOfOpt,
    db: str | None = DbOpt,
) -> None:
    """The checklist for one site or authorization (owner, evidence, status, review date, flags)."""
    with session_scope(db_url(db)) as s:
        data = svc.register(s, registry(), scope, subject, as_of(as_of_))

    def human(d: dict[str, Any]) -> None:
        # A paragraph the reference only names (¶9, ¶13) is marked as the JSON marks it ("confirmed": false).
        table([{**r, "evidence": len(r["evidence"]), "flags": "; ".join(r["flags"]),
                "heading": r["heading"] + ("" if r["confirmed"] else " (UNCONFIRMED)")} for r in d["paragraphs"]],
              ["number", "heading", "owner", "status", "review_date", "evidence", "compliance_from", "flags"],
              title=f"Supp. No. 10 register: {d['scope']} {d['subject']} as of {d['as_of']}")
        # "open 19 · in-progress 0 · ... · flagged 0", as the dashboard's register shows it (was a Python dict)
        console.print(" · ".join(f"{k} {n}" for k, n in d["summary"].items()), highlight=False, markup=False)
        _status_note(d["paragraphs"], d["as_of"], "paragraph")

    emit(data, json_, human)


@controls_app.command("set")
def set_(
    subject: str = SubjectArg,
    paragraph: int = typer.Option(..., "--paragraph", "-p", help="Paragraph number 1-19."),
    scope: str = ScopeOpt,
    owner: str | None = typer.Option(None, "--owner", help="Who owns this paragraph's control (person or team)."),
    status: str | None = typer.Option(None, "--status", help="|".join(core.ENTRY_STATUSES)),
    review: str | None = typer.Option(None, "--review", help="Next review date (YYYY-MM-DD)."),
    notes: str | None = typer.Option(None, "--notes", help="Free-text notes ('' clears them)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Set the owner, status, review date or notes of one paragraph."""
    with session_scope(db_url(db)) as s:
        e = svc.set_entry(s, scope, subject, paragraph, owner, status, _date(review, "--review"), notes)
        data = {"scope": e.scope, "subject": e.subject, "paragraph": e.paragraph, "owner": e.owner,
                "status": e.status, "review_date": e.review_date, "notes": e.notes}
    emit(data, json_)


@controls_app.command("evidence")
def evidence(
    subject: str = SubjectArg,
    paragraph: int = typer.Option(..., "--paragraph", "-p", help="Paragraph number 1-19."),
    scope: str = ScopeOpt,
    kind: str = typer.Option("link", "--kind", help="link | attestation"),
    uri: str = typer.Option("", "--uri", help="Document link."),
    statement: str = typer.Option("", "--statement", help="Attestation text."),
    by: str = typer.Option("", "--by", help="Who attests."),
    on: str | None = typer.Option(None, "--on", help="Date of the attestation."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Attach a document link or an attestation to a paragraph."""
    with session_scope(db_url(db)) as s:
        ev = svc.add_evidence(s, scope, subject, paragraph, kind, uri, statement, by, _date(on, "--on"))
        data = {"id": ev.id, "kind": ev.kind, "uri": ev.uri, "statement": ev.statement,
                "attested_by": ev.attested_by, "attested_on": ev.attested_on}
    emit(data, json_)


# ------------------------------------------------------------------------------------------- weights


@weights_app.command("store")
def store(
    model: str = ModelArg,
    site: str = typer.Option(..., "--site", help="Site where the weights are stored (registered)."),
    device: list[str] = typer.Option([], "--device", help="Device holding the weights (repeat)."),
    dedicated: bool = typer.Option(False, "--dedicated/--shared", help="Devices not used by other organizations."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record where a model's weights are stored."""
    from agent.ledger import get_model

    name = model.strip()
    with session_scope(db_url(db)) as s:
        try:
            get_model(s, name)
            unknown = None
        except PolicyError as exc:  # not in the ledger: allowed (its 4E091 status is then unknown), but said first
            unknown = str(exc) if name else None
        try:
            w = svc.store_weights(s, model, site, device, dedicated)
        except PolicyError as exc:
            # A model name that is not in the ledger is the likelier typo: name it first, then what else is wrong.
            raise (type(exc)(f"{unknown}; also {exc}") if unknown else exc) from None
        data = {"id": w.id, "model": w.model, "site": site, "devices": w.devices.split(","), "dedicated": w.dedicated}
    emit(data, json_)
    if unknown and not json_:
        err_console.print(f"[yellow]warning[/]: recorded, but {escape(unknown)} (until then its 4E091 status is "
                          "unknown)", soft_wrap=True)


@weights_app.command("remove")
def remove(
    model: str = ModelArg,
    site: str = typer.Option(..., "--site", help="Site the weights were removed from."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record that a model's weights were removed from a site."""
    with session_scope(db_url(db)) as s:
        n = svc.remove_weights(s, model, site)
    emit({"model": model, "site": site, "closed": n}, json_)


@weights_app.command("import-access")
def import_access(
    path: Path = typer.Argument(..., help="Access-log CSV file (UTF-8)."), json_: bool = JsonOpt,
    db: str | None = DbOpt,
) -> None:
    """Import an access-log CSV: timestamp, model, principal, action[, device, site]."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with session_scope(db_url(db)) as s:
        data = svc.import_access_log(s, text, str(path))
    emit(data, json_)


@weights_app.command("export")
def export(
    model: str = ModelArg,
    to: str = typer.Option(..., "--to", help="Recipient party (registered)."),
    country: str = typer.Option(..., "--country", help="Destination country (ISO code or name)."),
    on: str | None = typer.Option(None, "--on", help="Export date; default today."),
    licence: str = typer.Option("", "--licence", help="Licence number, if one was issued."),
    status: str | None = typer.Option(None, "--model-status", help="Declared status when the ledger lacks the model."),
    published: bool = typer.Option(False, "--published", help="The weights are published (§ 734.7(a))."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record an export of model weights; 4E091 weights without a path are flagged."""
    d = parse_date(on, "--on") if on is not None else as_of(None)
    with session_scope(db_url(db)) as s, option("--to", PartyError, generic=("party",)):
        data = svc.record_export(s, registry(), model, to, country, d, licence, status, published)
    emit(data, json_)
    if data["flagged"] and not json_:
        console.print(f"[red]FLAGGED[/red]: {escape(data['reason'])}")


@weights_app.command("show")
def weights_show(
    site: str | None = typer.Option(None, "--site", help="Only this site."), json_: bool = JsonOpt,
    as_of_: str | None = AsOfOpt,
    db: str | None = DbOpt,
) -> None:
    """Where controlled weights are stored, who accessed them, exports and flags (¶8)."""
    with session_scope(db_url(db)) as s:
        data = svc.weights_report(s, registry(), as_of(as_of_), site)

    def human(d: dict[str, Any]) -> None:
        table([{**r, "problems": "; ".join(r["problems"])} for r in d["storage"]],
              ["model", "model_status", "site", "country", "devices", "dedicated", "verdict", "problems"])
        table(d["exports"], ["date", "model", "recipient", "country", "paths", "flagged", "reason"], title="Exports")

    emit(data, json_, human)


# ------------------------------------------------------------------------------------------ deadlines


@deadlines_app.command("authorize")
def authorize(
    name: str = typer.Argument(..., help="Authorization name (registered, or registered now with --kind/--holder)."),
    granted: str = typer.Option(..., "--granted", help="Date the authorization was granted."),
    kind: str | None = typer.Option(None, "--kind", help="uveu | nveu (registers it if new)."),
    holder: str | None = typer.Option(None, "--holder", help="Holder party (registers it if new)."),
    country: str | None = typer.Option(None, "--country", help="NVEU destination country."),
    expires: str | None = typer.Option(None, "--expires", help="Expiry date (YYYY-MM-DD), if it has one."),
    location: list[str] = typer.Option([], "--location", help="UVEU data-center country in the application (repeat)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record the grant date, expiry and application locations of a UVEU/NVEU (drives reports and notices)."""
    with session_scope(db_url(db)) as s:
        a = svc.add_authorization(s, registry(), name, parse_date(granted, "--granted"), kind, holder, country,
                                  _date(expires, "--expires"), location)
        data = {"name": a.name, "kind": a.kind, "holder": a.holder, "granted": a.granted, "expires": a.expires,
                "country": a.country, "locations": [c for c in a.locations.split(",") if c]}
    emit(data, json_)


@deadlines_app.command("event")
def event(
    ref: str = typer.Argument(..., help="Your reference for the event (recording it again updates it)."),
    kind: str = typer.Option(..., "--kind", help="new-location | transfer | incident"),
    on: str = typer.Option(..., "--on", help="Planned first export / transfer date, or date of discovery."),
    authorization: str = typer.Option("", "--authorization", help="UVEU/NVEU it is made under (required for a "
                                      "new location or a transfer)."),
    site: str = typer.Option("", "--site", help="New location: the new data center's name; incident: the site."),
    from_: str = typer.Option("", "--from", help="Transfer: from country."),
    to: str = typer.Option("", "--to", help="Transfer or new location: to country."),
    description: str = typer.Option("", "--description", help="What happened or is planned (free text)."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Record a planned new UVEU location, an inter-country transfer, or a theft/loss incident."""
    with session_scope(db_url(db)) as s:
        ev = svc.add_event(s, kind, ref, parse_date(on, "--on"), authorization, site, from_, to, description)
        data = {"kind": ev.kind, "ref": ev.ref, "on": ev.occurred_on, "authorization": ev.authorization,
                "site": ev.site, "from": ev.from_country, "to": ev.to_country}
    emit(data, json_)


@deadlines_app.command("list")
def list_(
    status: str | None = typer.Option(None, "--status", help="|".join(core.DEADLINE_STATUSES)),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
) -> None:
    """Every report and notice deadline with its status (upcoming, due, overdue, done)."""
    with session_scope(db_url(db)) as s:
        rows = [d.to_dict() for d in svc.deadline_list(s, registry(), as_of(as_of_), status)]

    def human(r: list[dict[str, Any]]) -> None:
        # A filing after the due date is done but late: the JSON says so ("late"), and so must the table. The
        # rule's status on the date is shown as the JSON gives it ("codified", "enforced"): inside the AI
        # Diffusion rule's non-enforcement a deadline is listed, never hidden, and marked not enforced.
        table([{**d, "status": f"{d['status']} (filed {d['done_on']}, late)" if d["late"] else d["status"],
                "rule": _rule_label(d)} for d in r], ["due", "status", "title", "subject", "citation", "rule", "key"])
        _status_note(r, as_of(as_of_).isoformat(), "deadline")

    emit(rows, json_, human)


def _rule_label(d: dict[str, Any]) -> str:
    """A row's legal status as a word or three (:func:`agent.obligations.rule_status`); "" for a row without one."""
    if d.get("codified") is None and d.get("enforced") is None:
        return ""
    return svc.rule_status(d)


def _status_note(rows: list[dict[str, Any]], day: str, noun: str) -> None:
    """One line under a table when some of its rows rest on a rule that is not enforced (or not codified) on
    ``day``: they are still listed, because the rule's text still stands."""
    off = [r for r in rows if r.get("enforced") is False]
    if off:
        codified = all(r.get("codified") for r in off)
        console.print(f"note: {len(off)} {noun}(s) rest on provisions that are "
                      f"{'codified but ' if codified else ''}not enforced as of {day}; listed because the "
                      "regulation's text still stands (see `veuctl policy show PROVISION`)", highlight=False,
                      markup=False, soft_wrap=True)


@deadlines_app.command("file")
def file_(
    key: str = typer.Argument(..., help="Deadline key (from `veuctl deadlines list`)."),
    on: str = typer.Option(..., "--on", help="Date filed."),
    reference: str = typer.Option("", "--reference", help="Filing reference (e.g. the BIS submission number)."),
    early: bool = typer.Option(False, "--early", help="A periodic report (semi-annual) filed before its period "
                               "ended, or a chip accounting filed before it is due (before the reminder lead "
                               "ahead of its reporting date): record it anyway; the audit entry says it was "
                               "filed early."),
    json_: bool = JsonOpt, db: str | None = DbOpt,
) -> None:
    """Mark a deadline done by recording the filing with BIS."""
    with session_scope(db_url(db)) as s:
        f = svc.file_deadline(s, registry(), key, parse_date(on, "--on"), reference, early=early)
        data = {"key": f.key, "filed_on": f.filed_on, "reference": f.reference, "filed_by": f.filed_by}
    emit(data, json_)


@deadlines_app.command("notify")
def notify(
    webhook_url: str | None = typer.Option(None, "--webhook-url", help="Overrides VEU_NOTIFY_WEBHOOK_URL."),
    smtp_host: str | None = typer.Option(None, "--smtp-host", help="Overrides VEU_NOTIFY_SMTP_HOST."),
    smtp_port: int | None = typer.Option(None, "--smtp-port", help="Overrides VEU_NOTIFY_SMTP_PORT."),
    smtp_to: str | None = typer.Option(None, "--smtp-to", help="Overrides VEU_NOTIFY_SMTP_TO (recipient addresses, "
                                          "comma-separated)."),
    json_: bool = JsonOpt, as_of_: str | None = AsOfOpt, db: str | None = DbOpt,
) -> None:
    """Send reminders now for due and overdue deadlines (each once per status and channel); exit 1 if a channel
    failed (recorded, and retried on the next run)."""
    try:
        cfg = svc.notify_settings()
    except PolicyError as exc:  # a VEU_NOTIFY_* value that does not parse: named, before anything is sent
        raise UsageError(str(exc)) from None
    for k, v in (("webhook_url", webhook_url), ("smtp_host", smtp_host), ("smtp_port", smtp_port),
                 ("smtp_to", smtp_to)):
        if v is not None:
            setattr(cfg, k, v)
    if not cfg.channels():
        raise PolicyError("--webhook-url/--smtp-host: no notification channel configured (VEU_NOTIFY_*)")
    _check_channels(webhook_url, smtp_host)
    if not 0 < cfg.smtp_port < 65536 and cfg.smtp_host:
        raise UsageError(f"--smtp-port: {cfg.smtp_port} is not a TCP port (1-65535)")
    problem = svc.smtp_to_problem(smtp_to) if smtp_to is not None else None
    if problem:
        raise UsageError(f"--smtp-to: {problem}")
    with session_scope(db_url(db)) as s:
        data = svc.send_reminders(s, registry(), as_of(as_of_), cfg)
    emit(data, json_)
    failed = [x for x in data["sent"] if not x["ok"]]
    for x in failed:
        err_console.print(f"error: reminder via {x['channel']} to {escape(x['target'])} failed: {escape(x['error'])}",
                          soft_wrap=True, highlight=False)
    if failed:  # a cron job must notice: nothing was delivered on that channel
        raise typer.Exit(1)


def _check_channels(webhook_url: str | None, smtp_host: str | None) -> None:
    """A webhook URL or SMTP host that no request can be made to, refused before anything is sent or recorded: an
    address with a control character or no http(s) scheme, or a host name longer than DNS allows, was a traceback
    from the HTTP or SMTP library (not the per-channel failure a refused connection is)."""
    import httpx

    if webhook_url is not None:
        try:
            url = httpx.URL(webhook_url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageError(f"--webhook-url: {webhook_url!r} is not a URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise UsageError(f"--webhook-url: {webhook_url!r} is not an http:// or https:// URL with a host")
    if smtp_host is not None:
        labels = smtp_host.rstrip(".").split(".")
        if (not smtp_host.strip() or len(smtp_host) > 253 or not smtp_host.isprintable() or " " in smtp_host
                or any(not 0 < len(x) <= 63 for x in labels)):
            raise UsageError(f"--smtp-host: {smtp_host!r} is not a host name or address")


@deadlines_app.command("notifications")
def notifications(json_: bool = JsonOpt, db: str | None = DbOpt) -> None:
    """Reminders sent (and failures)."""
    with session_scope(db_url(db)) as s:
        rows = svc.notifications(s)
    emit(rows, json_, lambda r: table(r, ["sent_at", "channel", "target", "status", "key", "ok", "error"]))


def register(app: typer.Typer) -> None:
    app.command("paths")(paths_cmd)
    app.add_typer(controls_app, name="controls")
    app.add_typer(weights_app, name="weights")
    app.add_typer(deadlines_app, name="deadlines")
