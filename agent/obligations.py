"""Obligations service: path finder over the store, Supp. 10 register, weight custody, deadlines, reminders.

This is the I/O side of ``policies/paths.py`` and ``policies/obligations.py``: it reads parties, sites,
holdings history, authorizations, the shipments ledger, the model ledger and webhook decisions from the
store, records register entries, weight custody, events and filings (each write audited in the same
transaction), and sends reminders by webhook or SMTP from an APScheduler job.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import smtplib
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from fractions import Fraction
from typing import Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import event, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from agent.audit import current_actor, record
from agent.parties import Conflict, named, party_refs
from agent.store.tables.caps import VeuAuthorization
from agent.store.tables.core import Holding, Party, Site, as_utc, utcnow
from agent.store.tables.obligations import (
    ControlEntry,
    ControlEvidence,
    ObligationAuthorization,
    ObligationEvent,
    ObligationFiling,
    ObligationNotification,
    WeightAccess,
    WeightExport,
    WeightStorage,
)
from agent.text import check_text
from policies import obligations as core
from policies.compute import at_least
from policies.errors import NotInEffect, PartyError, PolicyError, UnknownAccelerator, cli_word
from policies.jurisdictions import country_code, tier
from policies.packs import PackRegistry
from policies.parties import effective_tier
from policies.paths import AuthorizationRef, ItemLine, Proposal, ShipmentRef, find_paths, parse_items
from policies.redflag import DENY_TIER3

log = logging.getLogger(__name__)

SCOPES = ("site", "authorization")
EVENT_KINDS = ("new-location", "transfer", "incident")
EVIDENCE_KINDS = ("link", "attestation")


class NotFound(PolicyError):
    """An id the user named does not exist (API 404)."""


# ------------------------------------------------------------------------------------------- items


def _classify(packs: PackRegistry, acc: Any, on: date) -> str:
    """3A090.a / 3A090.b / not-3A090 from the catalog's classifier, with the thresholds in force on ``on``."""
    from policies.classification import classify_accelerator

    return classify_accelerator(packs, acc, on).eccn


def resolve_items(packs: PackRegistry, text: str, on: date) -> tuple[ItemLine, ...]:
    """``"H100 SXM x 2048"`` -> catalog-resolved, classified item lines."""
    from agent.kb import catalog

    try:
        parsed = parse_items(text)
    except PolicyError:
        raise
    except ValueError:  # int() refuses a count of thousands of digits: a traceback named no option
        raise PolicyError("--items: a count has too many digits to be a number of chips") from None
    out = []
    total = 0.0
    for name, count in parsed:
        res = catalog().resolve(name)
        acc = res.accelerator
        if res.fraction != 1:
            # Read as its GPU at full TPP, seven slices counted seven GPUs (what-if, reservations and shipments
            # refuse a slice too).
            from agent.caps import refuse_mig_slice

            refuse_mig_slice("--items", name, Fraction(res.fraction).limit_denominator(64), acc.name,
                             "the count after x")
        try:
            total += float(acc.tpp) * count
        except OverflowError:  # a count beyond a float: the generic "too large for the store" named no option
            total = math.inf
        if not math.isfinite(total):
            raise PolicyError(f"--items: the count for {name!r} puts the proposal's TPP beyond any number the "
                              "caps can compare; give the number of chips")
        out.append(ItemLine(acc.name, count, float(acc.tpp), _classify(packs, acc, on), bool(acc.datacenter)))
    return tuple(out)


# ---------------------------------------------------------------------------------- authorizations


def add_authorization(
    s: Session, packs: PackRegistry, name: str, granted: date, kind: str | None = None, holder: str | None = None,
    country: str | None = None, expires: date | None = None, locations: Sequence[str] = (),
    actor: str | None = None,
) -> ObligationAuthorization:
    """Record the dated terms of a Data Center VEU authorization (grant, expiry, application locations).

    The authorization itself lives in the caps register (``veuctl authorizations``); when it is not there
    yet and ``kind``/``holder`` are given, it is registered there first, so there is one list.
    """
    from agent import caps as capsvc

    name = name.strip()
    for c in locations:  # before anything is registered: a refused location leaves no half-made authorization
        _not_tier3(packs, _named_country(c, "--location"), granted, "--location")
    row = s.exec(select(VeuAuthorization).where(VeuAuthorization.name == name)).first()
    if row is None:
        if not kind or not holder:
            raise NotFound(f"authorization: {name!r} is not registered; give --kind and --holder to register it")
        row = capsvc.add_authorization(s, packs, name, kind, holder, country, actor=actor)
    else:
        held = s.get(Party, row.holder_id)
        cc = _named_country(country, "--country") if country else None
        for label, given, have in (("--kind", kind, row.kind), ("--holder", holder, held.name if held else None),
                                   ("--country", cc, row.country)):
            if given is not None and given != have:
                raise Conflict(f"{label}: {given!r} disagrees with the registered authorization {name!r} ({have!r})")
    if granted > utcnow().date():
        # The grant date starts report and notice clocks: a future one would hide deadlines already running.
        raise PolicyError(f"--granted: {granted} is after today; record an authorization once it is granted")
    if expires is not None and expires <= granted:
        raise PolicyError("--expires: must be after --granted")
    if row.kind != "uveu" and locations:
        raise PolicyError("--location: application locations apply to a UVEU; an NVEU covers its one country")
    locs = sorted({_named_country(c, "--location") for c in locations})
    holder_row = s.get(Party, row.holder_id)
    t = s.exec(select(ObligationAuthorization).where(ObligationAuthorization.name == name)).first()
    t = t or ObligationAuthorization(name=name, kind=row.kind, holder="", granted=granted)
    t.kind, t.holder, t.country = row.kind, holder_row.name if holder_row else "", row.country
    t.granted, t.expires, t.locations = granted, expires, ",".join(locs)
    s.add(t)
    s.flush()
    record(s, actor=actor or current_actor(), action="obligations.authorization.terms",
           subject=f"authorization:{name}", payload={"granted": granted, "expires": expires, "locations": locs})
    return t


@dataclass(frozen=True)
class _Auth:
    """An authorization from the caps register joined with its dated terms (if recorded)."""

    name: str
    kind: str
    holder: str
    country: str | None
    granted: date | None
    expires: date | None
    locations: tuple[str, ...] | None  # None: application locations not recorded
    registered_on: date


def _authorizations(s: Session) -> list[_Auth]:
    terms = {t.name: t for t in s.exec(select(ObligationAuthorization)).all()}
    ids = {p.id: p.name for p in s.exec(select(Party)).all()}
    out = []
    for a in s.exec(select(VeuAuthorization).order_by(VeuAuthorization.name)).all():
        t = terms.get(a.name)
        out.append(_Auth(a.name, a.kind, ids.get(a.holder_id, ""), a.country, t.granted if t else None,
                         t.expires if t else None,
                         tuple(c for c in t.locations.split(",") if c) if t else None, a.created_at.date()))
    return out


def _filings(s: Session) -> dict[str, date]:
    return {f.key: f.filed_on for f in s.exec(select(ObligationFiling)).all()}


def _new_location_events(s: Session) -> list[ObligationEvent]:
    return list(s.exec(select(ObligationEvent).where(ObligationEvent.kind == "new-location")).all())


def _location_key(ev: ObligationEvent) -> str:
    return f"uveu-new-location:{ev.authorization}:{ev.to_country}:{ev.site}"


def _limit_text(c: Mapping[str, Any]) -> str:
    """A cap's limit (a ``cap_to_dict``) in words: a share as a percentage, an absolute cap in TPP."""
    if c["kind"] == "share":
        return f"limit {float(c['limit']) * 100:g}% of the base"
    return f"limit {c['limit']:,.0f} TPP"


def _no_limit_reason(packs: PackRegistry, c: Mapping[str, Any], day: date) -> str:
    """Why a cap (a ``cap_to_dict``) has no limit on ``day``: its note (the provision that sets none), after
    Table 1 to § 748.15(a)(2)(iii)(B) the day its last row ended, and what that means for the proposal."""
    why = str(c["explanation"]["note"] or f"no limit is in effect on {day.isoformat()}")
    if c["id"].startswith("nveu.installed_base."):
        rows = [r for r in packs.history("nveu-allocation") if r.effective_to is not None]
        last = max(rows, key=lambda r: r.effective_from, default=None)
        if last is not None and last.effective_to is not None and day >= last.effective_to:
            ended = last.effective_to - timedelta(days=1)
            why += (f"; the table's last row ({last.values.get('quarter', '')}) ended {ended.isoformat()} "
                    f"({last.citation})")
    return f"{why}; nothing may be installed against an allocation that is not in effect"


def _caps_block(
    s: Session, packs: PackRegistry, a: _Auth, lines: Sequence[ItemLine], country: str, on: date,
    operator: str | None,
) -> tuple[str | None, str]:
    """Whether the proposal, placed in ``country``, breaches one of the authorization's caps (caps engine)."""
    from fractions import Fraction

    from agent import caps as capsvc
    from policies import caps as capcore

    row = capsvc.get_authorization(s, a.name)
    auth = capsvc.to_core(s, row)
    delta = [capcore.Placement("(proposed)", country, ln.name, Fraction(ln.count), capcore.exact(ln.tpp), ln.eccn,
                               a.holder, operator or a.holder, label="path finder") for ln in lines]
    # The fleets the what-if planner checks (capsvc.planned_fleets): every authorization's open reservations (a
    # group's UVEUs share one owned base); an NVEU's plans on their own dates, against their quarter's allocation,
    # not today's.
    checked = 0
    fleets = capsvc.planned_fleets(s, packs, row, capsvc.placements(s, packs, on), on)
    for day, fleet in fleets:
        after = capcore.authorization_caps(packs, party_refs(s, day), auth, fleet + delta, day, [country])
        checked = checked or len(after)
        bad = [c for c in after if c.binding and not c.ok]
        if bad:
            c = capcore.cap_to_dict(bad[0], 0)
            when = "" if day == on else f" on {day.isoformat()}, when the chips reserved for then are installed"
            if c["limit"] is None:  # no allocation in effect on that day: say why, never "limit None"
                return (f"{a.name}: the proposal would breach cap {c['id']} ({c['title']}){when}: "
                        f"{_no_limit_reason(packs, c, day)}"), ""
            return f"{a.name}: the proposal would breach cap {c['id']} ({c['title']}; {_limit_text(c)}){when}", ""
    n = len(fleets) - 1
    also = f", and on the date of each of {n} later plan{'s' if n != 1 else ''}" if n else ""
    return None, f"{a.name}: every binding cap holds after the proposal ({checked} caps checked{also})"


def authorization_refs(
    s: Session, packs: PackRegistry | None = None, lines: Sequence[ItemLine] = (), country: str | None = None,
    on: date | None = None, holder: str | None = None, operator: str | None = None,
) -> list[AuthorizationRef]:
    """Authorizations as the path finder sees them: notified UVEU locations, dates and the caps check."""
    filings = _filings(s)
    events = _new_location_events(s)
    out = []
    for a in _authorizations(s):
        locs: dict[str, date | None] = {c: None for c in a.locations or ()}
        for ev in events:
            if ev.authorization == a.name and ev.to_country not in locs:
                filed = filings.get(_location_key(ev))
                if filed is not None:
                    locs[ev.to_country] = filed
        block, note = None, ""
        if packs is not None and lines and country and on and a.holder == holder:
            block, note = _caps_block(s, packs, a, lines, country_code(country), on, operator)
        out.append(AuthorizationRef(
            a.name, a.kind, a.holder, a.granted or date.min, a.country, a.expires, locs, None, note,
            locations_known=a.locations is not None or a.kind == "nveu", caps_block=block,
            dated=a.granted is not None,
        ))
    return out


# ------------------------------------------------------------------------------------- shipments


def shipment_refs(s: Session, packs: PackRegistry, on: date) -> list[ShipmentRef]:
    """The caps shipments ledger (3A090.a/4A090.a lines) per ultimate consignee (§ 740.29(h)(1))."""
    from agent import caps as capsvc
    from policies.caps import ultimate_parent

    refs = party_refs(s, on)
    scope = set(packs.value("licence-3a090a-worldwide", "eccns", on))
    return [ShipmentRef(x.day, ultimate_parent(refs, x.consignee), x.destination, float(x.tpp), x.via.upper())
            for x in capsvc.shipments_core(s) if x.eccn in scope]


# -------------------------------------------------------------------------------------------- paths


def paths(
    s: Session, packs: PackRegistry, items: str, consignee: str, country: str, on: date, kind: str = "export",
    operator: str | None = None, end_use: str | None = None, aia_certified: bool = False,
) -> dict[str, Any]:
    try:
        lines = resolve_items(packs, items, on)
    except UnknownAccelerator as exc:  # the catalog names the chip: say which option gave it
        raise UnknownAccelerator(f"--items: {exc}") from None
    _named_country(country, "--country")
    refs = party_refs(s, on)
    for option, name in (("--consignee", consignee), ("--operator", operator)):
        if name is not None and name not in refs:
            raise PartyError(f"{option}: {name!r} is not registered; add it with "
                             f"`veuctl parties add {cli_word(name)} --hq CC`")
    try:
        rep = find_paths(
            packs, refs,
            Proposal(kind, lines, consignee, country, on, operator, end_use, aia_certified),
            authorization_refs(s, packs, lines, country, on, consignee, operator), shipment_refs(s, packs, on),
        )
    except NotInEffect as exc:
        if str(exc).startswith("--date"):
            raise
        # A provision the paths rely on (the worldwide licence, the UVEU allocations) has no version that day:
        # the date given is the mistake, not the provision.
        raise NotInEffect(f"--date: the AI Diffusion paths are not in effect on {on.isoformat()} ({exc}); "
                          "choose a later --date") from None
    out = rep.to_dict()
    out["packs"] = packs.versions()
    return out


# ---------------------------------------------------------------------------------- controls register


def _not_tier3(packs: PackRegistry, code: str, on: date, option: str) -> None:
    """Refuse a UVEU data-center country in Macau or D:5 on ``on`` (§ 748.15(b)(2)(i)), naming ``option``."""
    if packs.find("tier3-destinations", on) is None:
        return  # before the AI Diffusion tiers: nothing to say about the place
    t = tier(packs, code, on)
    if t.tier == 3:
        raise PolicyError(f"{option}: {code} is a Tier 3 destination on {on} ({t.basis}); UVEU data centers may be "
                          "located anywhere except Macau and D:5 (15 CFR 748.15(b)(2)(i))")


def _named_country(country: str, option: str) -> str:
    """The ISO code of ``country``; an unknown one is refused naming ``option`` (the resolver says "country")."""
    with named(option):
        return country_code(country)


def _check_subject(s: Session, scope: str, subject: str) -> None:
    if scope not in SCOPES:
        raise PolicyError(f"--scope: {scope!r} is not one of {', '.join(SCOPES)}")
    if scope == "site":
        if s.exec(select(Site).where(Site.name == subject)).first() is None:
            raise NotFound(f"site: {subject!r} is not registered; add it with `veuctl sites add`")
    elif s.exec(select(VeuAuthorization).where(VeuAuthorization.name == subject)).first() is None:
        raise NotFound(f"authorization: {subject!r} is not registered; add it with `veuctl authorizations add`")


def _entry(s: Session, scope: str, subject: str, paragraph: int) -> ControlEntry | None:
    return s.exec(select(ControlEntry).where(
        ControlEntry.scope == scope, ControlEntry.subject == subject, ControlEntry.paragraph == paragraph)).first()


def set_entry(
    s: Session, scope: str, subject: str, paragraph: int, owner: str | None = None, status: str | None = None,
    review_date: date | None = None, notes: str | None = None, actor: str | None = None,
) -> ControlEntry:
    """Create or update one register entry; unchanged fields keep their values."""
    # The register is read on pages and in exports: a bidi override or a control character would change what
    # the reader sees from what was recorded.
    if owner is not None:
        check_text("--owner", owner)
    if notes is not None:
        check_text("--notes", notes, lines=True)
    _check_subject(s, scope, subject)
    core.check_paragraph(paragraph)
    if status is not None:
        core.check_status(status)
    who = actor or current_actor()
    e = _entry(s, scope, subject, paragraph) or ControlEntry(scope=scope, subject=subject, paragraph=paragraph)
    if owner is not None:
        e.owner = owner.strip()[:200]
    if status is not None:
        e.status = status
    if review_date is not None:
        e.review_date = review_date
    elif e.review_date is None and e.status in ("compliant", "non-compliant"):
        # A judgement on a paragraph is only as good as its last review: schedule the next one.
        from agent.packs import registry

        today = datetime.now(UTC).date()
        days = int(registry().value("obligation-reminders", "review_interval_days", today))
        e.review_date = today + timedelta(days=days)
    if notes is not None:
        e.notes = notes[:4000]
    e.updated_by, e.updated_at = who, utcnow()
    s.add(e)
    s.flush()
    record(s, actor=who, action="obligations.control.set", subject=f"{scope}:{subject}:p{paragraph}",
           payload={"owner": e.owner, "status": e.status, "review_date": e.review_date, "notes": e.notes})
    return e


# Where evidence documents live: web (document systems, wikis), object stores and file shares. Anything else
# (javascript:, data:, vbscript:) is refused: the dashboard shows evidence as links.
EVIDENCE_URI_SCHEMES = ("https", "http", "s3", "gs", "az", "file", "smb")


def _check_evidence_uri(uri: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme.lower() not in EVIDENCE_URI_SCHEMES or not (parts.netloc or parts.path.strip("/")):
        raise PolicyError(f"--uri: {uri[:80]!r} is not a document URI; use one of "
                          f"{', '.join(s + '://' for s in EVIDENCE_URI_SCHEMES)}")
    if any(ord(c) < 33 for c in uri):
        raise PolicyError("--uri: a URI has no spaces or control characters (percent-encode them)")


# The earliest date a linked document is taken to be dated (an input check, not a rule): a certificate or audit
# report issued before the rules can stand behind a control, a document dated 0001-01-01 is a typo.
EARLIEST_DOCUMENT = date(2000, 1, 1)


def _check_evidence_date(attested_on: date, paragraph: int, kind: str) -> None:
    """Refuse an attestation dated before the paragraph took effect (Supp. 10 from 2025-01-13), and a linked
    document dated before :data:`EARLIEST_DOCUMENT`: 0001-01-01 or an attestation from 2019 is a typo, or about
    something else, yet stood behind "compliant" on every date."""
    from agent.packs import registry

    if kind != "attestation":
        if attested_on < EARLIEST_DOCUMENT:
            raise PolicyError(f"--on: {attested_on} is before {EARLIEST_DOCUMENT}; date the linked document the day "
                              "it was issued")
        return
    versions = registry().history(core.paragraph_id(paragraph))
    if not versions:
        return  # no such paragraph: the register refuses it, naming -p
    first = min(v.effective_from for v in versions)
    if attested_on < first:
        raise PolicyError(f"--on: {attested_on} is before {versions[0].citation} took effect on "
                          f"{first}; an attestation of it is dated the day it was attested, on or after {first} (a "
                          "document issued earlier is a --kind link)")


def add_evidence(
    s: Session, scope: str, subject: str, paragraph: int, kind: str, uri: str = "", statement: str = "",
    attested_by: str = "", attested_on: date | None = None, actor: str | None = None,
) -> ControlEvidence:
    if kind not in EVIDENCE_KINDS:
        raise PolicyError(f"--kind: {kind!r} is not one of {', '.join(EVIDENCE_KINDS)}")
    # A link's text is shown as the link: an override could show another file name than the one it opens.
    check_text("--uri", uri)
    check_text("--statement", statement, lines=True)
    check_text("--by", attested_by)
    if kind == "link" and not uri.strip():
        raise PolicyError("--uri: a link needs the document's URI")
    if kind == "link":
        _check_evidence_uri(uri.strip())
    if kind == "attestation" and not (statement.strip() and attested_by.strip()):
        raise PolicyError("--statement/--by: an attestation needs the statement and who attests it")
    if attested_on is not None and attested_on > utcnow().date():
        # Evidence is of something done: a future date (a typo, 2099) stood behind "compliant" on every date.
        raise PolicyError(f"--on: {attested_on} is after today; date the evidence the day it was attested or issued")
    if attested_on is not None:
        _check_evidence_date(attested_on, paragraph, kind)
    e = _entry(s, scope, subject, paragraph) or set_entry(s, scope, subject, paragraph, actor=actor)
    ev = ControlEvidence(entry_id=e.id, kind=kind, uri=uri.strip(), statement=statement.strip(),  # type: ignore[arg-type]
                         attested_by=attested_by.strip(), attested_on=attested_on)
    s.add(ev)
    s.flush()
    record(s, actor=actor or current_actor(), action="obligations.evidence.add",
           subject=f"{scope}:{subject}:p{paragraph}",
           payload={"kind": kind, "uri": ev.uri, "statement": ev.statement, "attested_by": ev.attested_by,
                    "attested_on": attested_on})
    return ev


def register(s: Session, packs: PackRegistry, scope: str, subject: str, as_of: date) -> dict[str, Any]:
    """The 19-paragraph checklist for one site or authorization, with ¶7 and ¶8 detail for a site."""
    _check_subject(s, scope, subject)
    rows = s.exec(select(ControlEntry).where(ControlEntry.scope == scope, ControlEntry.subject == subject)).all()
    entries: dict[int, core.EntryView] = {}
    for e in rows:
        ev = s.exec(select(ControlEvidence).where(ControlEvidence.entry_id == e.id).order_by(ControlEvidence.id)).all()
        entries[e.paragraph] = core.EntryView(
            e.owner, e.status, e.review_date,
            tuple({"kind": x.kind, "uri": x.uri, "statement": x.statement, "attested_by": x.attested_by,
                   "attested_on": x.attested_on.isoformat() if x.attested_on else None} for x in ev),
            e.notes)
    kind = None
    if scope == "authorization":
        a = s.exec(select(VeuAuthorization).where(VeuAuthorization.name == subject)).first()
        kind = a.kind if a else None
    items = core.checklist(packs, as_of, entries, kind)
    out: dict[str, Any] = {"scope": scope, "subject": subject, "as_of": as_of.isoformat(),
                           "summary": core.checklist_summary(items), "paragraphs": items,
                           "packs": packs.versions()}
    if scope == "site":
        out["para7"] = para7_for_site(s, packs, subject, as_of)
        out["para8"] = weights_report(s, packs, as_of, site=subject)
    return out


# ------------------------------------------------------------------------- ¶7 training runs (webhook)


def _ledger_status(s: Session, packs: PackRegistry, model: str, on: date) -> Any:
    """The model's ``ModelStatus`` from the compute engineer's ledger, or None if the ledger lacks the model."""
    try:
        from agent import ledger
    except ImportError:
        return None
    try:
        return ledger.model_status(s, packs, model, on)
    except PolicyError:
        return None


def _model_status(s: Session, packs: PackRegistry, model: str, on: date) -> str | None:
    st = _ledger_status(s, packs, model, on)
    return str(st.status) if st is not None else None


def _ledger_runs(s: Session, packs: PackRegistry, site: str, loc: Any, as_of: date) -> list[core.TrainingRun]:
    """Training runs recorded in the model ledger at ``site``, with the owner as the customer."""
    try:
        from agent.store.tables.ledger import LedgerModel, LedgerRun
    except ImportError:
        return []
    refs = party_refs(s, as_of)
    ids = {p.id: p.name for p in s.exec(select(Party)).all()}
    models: dict[int | None, Any] = {m.id: m for m in s.exec(select(LedgerModel)).all()}
    statuses: dict[str, Any] = {}

    def status_of(name: str) -> Any:
        if name not in statuses:
            statuses[name] = _ledger_status(s, packs, name, as_of)
        return statuses[name]

    out = []
    # A run withdrawn as recorded in error was never trained: no ¶7 row, for any date.
    for r in s.exec(select(LedgerRun).where(LedgerRun.site == site, col(LedgerRun.withdrawn_at).is_(None))
                    .order_by(LedgerRun.id)).all():
        start = r.period_start
        if start is not None and start > as_of:
            continue
        m = models.get(r.model_id)
        customer = ids.get(m.owner_id) if m else None
        if m is None or customer not in refs:
            continue
        st = status_of(m.name)
        chain = _fine_tune_chain(m, models, status_of) if st is not None and m.base_id else []
        original, tuning = core.fine_tune_original(packs, as_of, chain) if len(chain) > 1 else (None, 0.0)
        base = models.get(m.base_id) if m.base_id else None
        out.append(core.TrainingRun(
            run=f"ledger-run-{r.id}" + (f" ({r.job_ref})" if r.job_ref else ""), site=site, location=loc,
            customer=effective_tier(packs, refs, customer or "", as_of), model=m.name,
            model_status=str(st.status) if st else "unknown",
            # ¶7 compares the fine-tuning operations (the chain's own runs below the original) with the original's.
            operations=tuning if original is not None else float(r.operations),
            fine_tune_of=original.name if original is not None else base.name if base else None,
            base_status=original.status if original is not None else None,
            base_operations=original.total if original is not None else None,
            decision="ledger", on=start,
        ))
    return out


def _fine_tune_chain(m: Any, models: dict[int | None, Any], status_of: Any) -> list[core.ChainModel]:
    """The model and its bases, up (each once: a lineage cycle is refused on write, but a stored one must not
    loop here), as ¶7 reads them; a base the ledger cannot evaluate ends the chain."""
    chain: list[core.ChainModel] = []
    seen: set[int] = set()
    while m is not None and m.id not in seen:
        seen.add(m.id)
        st = status_of(m.name)
        if st is None:
            break
        chain.append(core.ChainModel(m.name, str(st.status), float(st.cumulative.own), float(st.cumulative.total)))
        m = models.get(m.base_id) if m.base_id else None
    return chain


def _charged_name(s: Session, key: str, customer: str, on: date, by_name: Mapping[str, Any],
                  cache: dict[Any, Any]) -> str:
    """The ledger lineage a customer's job naming ``key`` trains, as metering charges it
    (:func:`agent.ledger.charged_model`). ``cache`` keeps the answers and the customers read across one listing (a
    cluster's decisions repeat a few jobs and customers many times)."""
    got = cache.get((key, customer, on))
    if got is not None:
        return str(got)
    from agent.ledger import charged_model

    if ("party", customer) not in cache:
        cache[("party", customer)] = s.exec(select(Party).where(Party.name == customer)).first()
    name = charged_model(s, key, cache[("party", customer)], on, by_name.get)[0]
    cache[(key, customer, on)] = name
    return name


def _charged_by_job(s: Session, as_of: date) -> dict[tuple[int, str], float]:
    """What the ledger charges each job on each model so far: max(its declared runs, its metered usage, the job's
    and its pods'), as the ledger reads a job (agent.ledger._merge_usage). Read once for a listing, grouped in
    the database: a query per decision took seconds over a cluster's history."""
    from agent.ledger import POD_SEP
    from agent.store.tables.ledger import LedgerRun, MeteredUsage

    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    metered: dict[tuple[int, str], float] = {}
    for model_id, ref, ops in s.execute(
            sa_select(col(MeteredUsage.model_id), col(MeteredUsage.job_ref), func.sum(col(MeteredUsage.operations)))
            .where(col(MeteredUsage.period_start) < end, col(MeteredUsage.job_ref) != "",
                   col(MeteredUsage.model_id).is_not(None))
            .group_by(col(MeteredUsage.model_id), col(MeteredUsage.job_ref))):
        k = (int(model_id), str(ref).split(POD_SEP, 1)[0])
        metered[k] = metered.get(k, 0.0) + float(ops or 0.0)
    out = dict(metered)
    for model_id, ref, ops in s.execute(
            sa_select(col(LedgerRun.model_id), col(LedgerRun.job_ref), func.sum(col(LedgerRun.operations)))
            .where(col(LedgerRun.withdrawn_at).is_(None), col(LedgerRun.job_ref) != "")
            .group_by(col(LedgerRun.model_id), col(LedgerRun.job_ref))):
        k = (int(model_id), str(ref))
        out[k] = max(out.get(k, 0.0), float(ops or 0.0))
    return out


def _decision_runs(s: Session, packs: PackRegistry, site: Site, loc: Any, as_of: date) -> list[core.TrainingRun]:
    """Training jobs the admission webhook decided on in the site's cluster (agent/cases.py decisions).

    Both of ¶7's prongs: a job for a customer outside Tier 1 (its lineage projected by the webhook) and a Tier 1
    customer's job (its model and run estimate recorded, no lineage projected), listed by core.para7 when the site
    is outside Tier 1. The model is the lineage metering charges; its status and fine-tuning chain are the
    ledger's, as for ledger runs; the job counts at max(its admitted estimate, what the ledger charged it).
    """
    if not site.cluster:
        return []
    try:
        from agent.store.tables.cases import AdmissionDecision
        from agent.store.tables.ledger import LedgerModel
    except ImportError:
        return []
    refs = party_refs(s, as_of)
    end = datetime.combine(as_of, datetime.max.time(), tzinfo=UTC)
    q = select(AdmissionDecision).where(AdmissionDecision.customer_name != "",
                                        AdmissionDecision.decided_at <= end)  # type: ignore[operator]
    thr = float(packs.value("eccn-4e091", "operations_threshold", as_of))
    models: dict[int | None, Any] | None = None
    by_name: dict[str, Any] = {}
    statuses: dict[str, Any] = {}
    cache: dict[Any, Any] = {}
    charged_by_job: dict[tuple[int, str], float] | None = None

    def status_of(name: str) -> Any:
        if name not in statuses:
            statuses[name] = _ledger_status(s, packs, name, as_of)
        return statuses[name]

    out = []
    # In decision order (ids increase within a webhook process but interleave by block across replicas).
    for d in s.exec(q.order_by(col(AdmissionDecision.decided_at), col(AdmissionDecision.id))).all():
        detail = json.loads(d.detail or "{}")
        if detail.get("asked", {}).get("cluster") != site.cluster or d.customer_name not in refs:
            continue
        if d.run_operations is None and d.lineage_operations is None:
            continue  # not a training job the webhook estimated
        if d.code == DENY_TIER3 and not d.allowed:
            # Refused outright (enforce mode): its run estimate is on record for the audit, but it never ran. (A
            # refused hold is listed, marked denied: it is the training the inquiry was about.)
            continue
        if models is None:
            models = {m.id: m for m in s.exec(select(LedgerModel)).all()}
            by_name = {m.name: m for m in models.values()}
        model = (_charged_name(s, d.model_key, d.customer_name, d.decided_at.date(), by_name, cache)
                 if d.model_key else "")
        m = by_name.get(model)
        st = status_of(model) if m is not None else None
        if st is not None:
            status = str(st.status)
        elif d.lineage_operations is not None:
            status = "4E091" if at_least(d.lineage_operations, thr) else "below-threshold"
        else:
            # No lineage projected (a Tier 1 customer's job) and none in the ledger: the run alone may reach the
            # threshold; below it, earlier runs of the lineage may not be known.
            status = "4E091" if at_least(d.run_operations or 0.0, thr) else "unknown"
        run_ops = float(d.run_operations or 0.0)
        if m is not None and charged_by_job is None:
            charged_by_job = _charged_by_job(s, as_of)
        charged = (charged_by_job or {}).get((m.id, d.job_ref), 0.0) if m is not None and m.id is not None else 0.0
        chain = _fine_tune_chain(m, models, status_of) if st is not None and m is not None and m.base_id else []
        original, tuning = core.fine_tune_original(packs, as_of, chain) if len(chain) > 1 else (None, 0.0)
        base = models.get(m.base_id) if m is not None and m.base_id else None
        out.append(core.TrainingRun(
            run=f"decision-{d.id} ({d.job_ref})", site=site.name, location=loc,
            customer=effective_tier(packs, refs, d.customer_name, as_of), model=model, model_status=status,
            # As for a ledger run: a fine-tune's operations are the chain's below the original, with this job's
            # admitted estimate where it exceeds what the ledger charged the job so far.
            operations=(tuning + max(0.0, run_ops - charged)) if original is not None else max(run_ops, charged),
            fine_tune_of=original.name if original is not None else base.name if base else None,
            base_status=original.status if original is not None else None,
            base_operations=original.total if original is not None else None,
            decision=f"{d.code} ({'allowed' if d.allowed else 'denied'}, {d.mode})", on=d.decided_at.date()))
    return out


def para7_for_site(s: Session, packs: PackRegistry, site: str, as_of: date) -> dict[str, Any]:
    """¶7 rows for a site: runs in the model ledger and the webhook's admission decisions in its cluster."""
    site_row = s.exec(select(Site).where(Site.name == site)).first()
    if site_row is None:
        raise NotFound(f"site: {site!r} is not registered")
    loc = tier(packs, site_row.country, as_of)
    runs = _ledger_runs(s, packs, site, loc, as_of) + _decision_runs(s, packs, site_row, loc, as_of)
    note = "" if site_row.cluster else "the site has no cluster: webhook decisions cannot be attributed to it"
    return {"runs": core.para7(packs, as_of, runs), "note": note}


# ----------------------------------------------------------------------------- ¶8 model-weight custody


def _site(s: Session, name: str) -> Site:
    row = s.exec(select(Site).where(Site.name == name)).first()
    if row is None:
        raise NotFound(f"--site: {name!r} is not registered; add it with `veuctl sites add`")
    return row


def store_weights(
    s: Session, model: str, site: str, devices: Sequence[str], dedicated: bool, actor: str | None = None,
) -> WeightStorage:
    """Record that a model's weights are stored at a site on these devices (replaces the open record there)."""
    model = model.strip()
    if not model:
        raise PolicyError("--model: give the model name")
    row = _site(s, site)
    check_text("--model", model)
    for d in devices:
        check_text("--device", d)
    devs = sorted({d.strip() for d in devices if d.strip()})
    if not devs:
        raise PolicyError("--device: give at least one device the weights are stored on")
    cur = s.exec(select(WeightStorage).where(WeightStorage.model == model, WeightStorage.site_id == row.id,
                                             WeightStorage.removed_at == None)).first()  # noqa: E711
    if cur is not None:
        cur.removed_at = utcnow()
        s.add(cur)
    w = WeightStorage(model=model, site_id=row.id, devices=",".join(devs), dedicated=dedicated)  # type: ignore[arg-type]
    s.add(w)
    s.flush()
    record(s, actor=actor or current_actor(), action="obligations.weights.store", subject=f"model:{model}",
           payload={"site": site, "devices": devs, "dedicated": dedicated})
    return w


def remove_weights(s: Session, model: str, site: str, actor: str | None = None) -> int:
    row = _site(s, site)
    n = 0
    for w in s.exec(select(WeightStorage).where(WeightStorage.model == model, WeightStorage.site_id == row.id,
                                                WeightStorage.removed_at == None)).all():  # noqa: E711
        w.removed_at = utcnow()
        s.add(w)
        n += 1
    if n == 0:
        raise NotFound(f"--model: no weights of {model!r} are recorded at {site}")
    record(s, actor=actor or current_actor(), action="obligations.weights.remove", subject=f"model:{model}",
           payload={"site": site})
    return n


ACCESS_COLUMNS = ("timestamp", "model", "principal", "action")


# Column widths of weight_access, read off the table: a longer value is refused naming its row and column
# (PostgreSQL refused the whole import with a DataError naming neither; SQLite kept it whole).
_ACCESS_WIDTHS: dict[str, int] = {
    c: WeightAccess.__table__.c[c].type.length  # type: ignore[attr-defined]
    for c in ("model", "principal", "action", "device", "site")
}


def _access_rows(reader: csv.DictReader[str], source: str) -> list[WeightAccess]:
    missing = [c for c in ACCESS_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise PolicyError(f"{source}: the access-log CSV lacks column(s) {', '.join(missing)}; "
                          f"required: {', '.join(ACCESS_COLUMNS)} (optional: device, site)")
    parsed: list[WeightAccess] = []
    rows = iter(reader)
    while True:
        read_to = reader.line_num
        try:
            r = next(rows)
        except StopIteration:
            return parsed
        except csv.Error as exc:
            # The csv module's own refusals (a field past its size limit): bad input naming the line after the last
            # record read, not a server fault; nothing was added (the import is all rows or none).
            raise PolicyError(f"{source}:{read_to + 1}: not a readable CSV ({str(exc)[:200]})") from None
        n = reader.line_num  # the file's line (a quoted field may span lines; blank lines are skipped)
        try:
            ts = datetime.fromisoformat(str(r["timestamp"]).strip().replace("Z", "+00:00"))
        except ValueError:
            raise PolicyError(f"{source}:{n}: timestamp {str(r['timestamp'])[:60]!r} is not ISO 8601") from None
        if ts.tzinfo is None:
            raise PolicyError(f"{source}:{n}: timestamp {r['timestamp']!r} has no timezone; add Z or +00:00")
        if not (r["model"] or "").strip() or not (r["principal"] or "").strip():
            raise PolicyError(f"{source}:{n}: model and principal are required")
        values = {c: (r.get(c) or "").strip() for c in _ACCESS_WIDTHS}
        for column, width in _ACCESS_WIDTHS.items():
            if len(values[column]) > width:
                raise PolicyError(f"{source}:{n}: {column} is {len(values[column])} characters; at most {width}")
        parsed.append(WeightAccess(
            model=values["model"], principal=values["principal"], action=values["action"] or "read",
            device=values["device"], site=values["site"], accessed_at=ts.astimezone(UTC), source=source[:500]))


def import_access_log(s: Session, text: str, source: str, actor: str | None = None) -> dict[str, int]:
    """Import an access-log CSV (timestamp, model, principal, action[, device, site]); all rows or none."""
    parsed = _access_rows(csv.DictReader(io.StringIO(text, newline="")), source)
    added = skipped = 0
    for w in parsed:
        dup = s.exec(select(WeightAccess).where(
            WeightAccess.model == w.model, WeightAccess.principal == w.principal, WeightAccess.action == w.action,
            WeightAccess.device == w.device, WeightAccess.accessed_at == w.accessed_at)).first()
        if dup is not None:
            skipped += 1
            continue
        s.add(w)
        added += 1
    s.flush()
    record(s, actor=actor or current_actor(), action="obligations.weights.access_import", subject=f"file:{source}",
           payload={"rows": len(parsed), "added": added, "skipped": skipped})
    return {"rows": len(parsed), "added": added, "skipped": skipped}


def record_export(
    s: Session, packs: PackRegistry, model: str, recipient: str, country: str, on: date,
    licence: str = "", declared_status: str | None = None, published: bool = False, actor: str | None = None,
) -> dict[str, Any]:
    """Record an export of a model's weights; flag it when the weights are 4E091 and no path is open."""
    refs = party_refs(s, on)
    try:
        rec = effective_tier(packs, refs, recipient, on)
    except PartyError as exc:
        raise PartyError(f"--to: {str(exc).removeprefix('party: ')}") from None
    dest = tier(packs, _named_country(country, "--country"), on)
    if declared_status is not None:
        from policies.ledger import BELOW, EXCLUDED_DERIVATIVE, EXCLUDED_LESS_CAPABLE, EXCLUDED_PUBLISHED

        known = ("4E091", BELOW, EXCLUDED_PUBLISHED, EXCLUDED_DERIVATIVE, EXCLUDED_LESS_CAPABLE)
        # A typo must not read as "not 4E091" and clear the flag: only the ledger's own statuses are accepted.
        match = next((k for k in known if k.lower() == declared_status.strip().lower()), None)
        if match is None:
            raise PolicyError(f"--model-status: {declared_status[:60]!r} is not one of {', '.join(known)}")
        declared_status = match
    status = _model_status(s, packs, model, on) or declared_status or "unknown"
    verdict = core.weight_export_paths(packs, on, status, rec, dest, licence or None, published)
    if status == "unknown":
        verdict = {**verdict, "flagged": True,
                   "reason": "the model's 4E091 status is unknown (not in the ledger): treat as controlled"}
    row = WeightExport(model=model, recipient=recipient, country=dest.country, exported_on=on, model_status=status,
                       licence=licence, paths=",".join(verdict["paths"]), flagged=bool(verdict["flagged"]),
                       reason=str(verdict["reason"])[:2000])
    s.add(row)
    s.flush()
    record(s, actor=actor or current_actor(), action="obligations.weights.export", subject=f"model:{model}",
           payload={"recipient": recipient, "country": dest.country, "on": on, "status": status, **verdict})
    return {"id": row.id, "model": model, "recipient": recipient, "country": dest.country, "date": on.isoformat(),
            "model_status": status, **verdict}


def _site_compliant(s: Session, site: str, paragraphs: Iterable[int]) -> bool:
    for n in paragraphs:
        e = _entry(s, "site", site, n)
        if e is None or e.status != "compliant":
            return False
    return True


def weights_report(s: Session, packs: PackRegistry, as_of: date, site: str | None = None) -> dict[str, Any]:
    """¶8: every stored model with site, devices, status and verdict; accesses; exports and flags."""
    refs = party_refs(s, as_of)
    sites = {x.id: x for x in s.exec(select(Site)).all()}
    ids = {p.id: p.name for p in s.exec(select(Party)).all()}
    sec = [int(x) for x in packs.value("supp10-model-weight-storage", "security_paragraphs", as_of)]
    q = select(WeightStorage).where(WeightStorage.removed_at == None)  # noqa: E711
    if site:
        q = q.where(WeightStorage.site_id == _site(s, site).id)
    locs = []
    for w in s.exec(q.order_by(WeightStorage.model)).all():
        st = sites[w.site_id]
        holders = s.exec(select(Holding).where(Holding.site_id == st.id)).all()
        names = {ids[h.owner_id] for h in holders if h.owner_id in ids} | {
            ids[h.operator_id] for h in holders if h.operator_id in ids}
        locs.append(core.WeightLocation(
            model=w.model, model_status=_model_status(s, packs, w.model, as_of) or "unknown", site=st.name,
            location=tier(packs, st.country, as_of),
            facility_parties=tuple(effective_tier(packs, refs, n, as_of) for n in sorted(names) if n in refs),
            devices=tuple(d for d in w.devices.split(",") if d), dedicated=w.dedicated,
            security_compliant=_site_compliant(s, st.name, sec)))
    storage = core.para8(packs, as_of, locs)
    models = {r["model"] for r in storage}
    acc_q = select(WeightAccess).order_by(WeightAccess.accessed_at.desc())  # type: ignore[attr-defined]
    accesses = [
        {"model": a.model, "principal": a.principal, "action": a.action, "device": a.device, "site": a.site,
         "at": a.accessed_at.isoformat(), "source": a.source}
        for a in s.exec(acc_q.limit(500)).all() if not site or a.model in models
    ]
    exports = [
        {"id": e.id, "model": e.model, "recipient": e.recipient, "country": e.country,
         "date": e.exported_on.isoformat(), "model_status": e.model_status, "paths": e.paths.split(",") if e.paths
         else [], "flagged": e.flagged, "reason": e.reason, "licence": e.licence}
        for e in s.exec(select(WeightExport).order_by(WeightExport.exported_on)).all() if not site or e.model in models
    ]
    return {"as_of": as_of.isoformat(), "storage": storage, "accesses": accesses, "exports": exports,
            "flagged_exports": sum(1 for e in exports if e["flagged"]),
            "violations": sum(1 for r in storage if r["verdict"] == "violation")}


# ------------------------------------------------------------------------------------------ deadlines


def add_event(
    s: Session, kind: str, ref: str, on: date, authorization: str = "", site: str = "",
    from_country: str = "", to_country: str = "", description: str = "", source: str = "manual",
    actor: str | None = None,
) -> ObligationEvent:
    """Record a planned new UVEU location, an inter-country transfer, or a theft/loss incident."""
    if kind not in EVENT_KINDS:
        raise PolicyError(f"--kind: {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    ref = ref.strip()
    if not ref:
        raise PolicyError("--ref: give a reference for the event")
    check_text("--ref", ref)
    check_text("--site", site)
    check_text("--description", description, lines=True)
    if kind in ("new-location", "transfer") and not authorization:
        raise PolicyError(f"--authorization: required for a {kind} (the UVEU or NVEU it is made under)")
    if authorization:
        names = {a.name for a in _authorizations(s)}
        if authorization not in names:
            raise NotFound(f"--authorization: {authorization!r} is not registered; add it with "
                           f"`veuctl authorizations add {cli_word(authorization)} --kind uveu|nveu --holder PARTY`")
    if kind == "incident" and on > utcnow().date():
        # A planned transfer or location is dated ahead; a theft or loss is dated the day it was discovered, and
        # a future date would push its 30-day report (¶16) out of sight.
        raise PolicyError(f"--on: {on} is after today; an incident is recorded on the date it was discovered")
    if kind == "incident" and site:
        _site(s, site)  # a theft or loss happens at a site the register knows (a new location's is not yet)
    fc = _named_country(from_country, "--from") if from_country else ""
    tc = _named_country(to_country, "--to") if to_country else ""
    if kind == "transfer" and not (fc and tc and fc != tc):
        raise PolicyError("--from/--to: a transfer between countries needs two different countries")
    if kind == "new-location":
        if not tc:
            raise PolicyError("--to: give the country of the new data center")
        if not site:
            raise PolicyError("--site: give the new data center's name")
        from agent.packs import registry

        _not_tier3(registry(), tc, on, "--to")
    ev = s.exec(select(ObligationEvent).where(ObligationEvent.kind == kind, ObligationEvent.ref == ref)).first()
    ev = ev or ObligationEvent(kind=kind, ref=ref, occurred_on=on)
    ev.occurred_on, ev.authorization, ev.site, ev.from_country, ev.to_country = on, authorization, site, fc, tc
    ev.description, ev.source = description[:2000], source
    s.add(ev)
    s.flush()
    record(s, actor=actor or current_actor(), action="obligations.event.set", subject=f"{kind}:{ref}",
           payload={"on": on, "authorization": authorization, "site": site, "from": fc, "to": tc,
                    "description": description})
    return ev


def _holdings_history(s: Session, auths: Sequence[_Auth]) -> tuple[
        list[core.Transfer], list[core.NewLocation]]:
    """Transfers between countries and first use of new UVEU locations, derived from the holdings history.

    A version's chips count under the UVEU of its owner, else of its operator. A transfer is a version of such
    chips at a site in another country than the holding's version before it (whoever's that one was, and after a
    gap: retired in one country, seen again in another). The database does the reading: every version of a large
    fleet read into Python took most of the deadlines page (and of `veuctl export transfers`)."""
    try:
        from agent.store.tables.inventory import HoldingPeriod
    except ImportError:
        return [], []
    sites = {x.id: x for x in s.exec(select(Site)).all()}
    ids = {p.id: p.name for p in s.exec(select(Party)).all()}
    uveu_by_holder = {a.holder: a for a in auths if a.kind == "uveu"}
    if not uveu_by_holder:
        return [], []  # nothing below is about any holding that is no UVEU holder's

    def uveu(owner_id: int | None, operator_id: int | None) -> _Auth | None:
        holder = ids.get(owner_id) if owner_id else None
        return uveu_by_holder.get(holder or "") or uveu_by_holder.get(ids.get(operator_id, "") or "")

    hp = HoldingPeriod.__table__  # type: ignore[attr-defined]
    site = Site.__table__  # type: ignore[attr-defined]
    # First use of each site: the earliest version per owner, operator and site (a few rows for any fleet).
    first_in: dict[tuple[str, str, str], date] = {}
    for owner_id, operator_id, site_id, since in s.execute(
            sa_select(hp.c.owner_id, hp.c.operator_id, hp.c.site_id, func.min(hp.c.valid_from))
            .group_by(hp.c.owner_id, hp.c.operator_id, hp.c.site_id)):
        a = uveu(owner_id, operator_id)
        if a is not None:
            k = (a.name, sites[site_id].country, sites[site_id].name)
            first_in[k] = min(first_in.get(k, since.date()), since.date())
    # Moves between countries: each version with the country of the holding's version before it (LAG), read only
    # for holdings that have been in more than one country, kept where the two differ.
    ever_moved = (sa_select(hp.c.holding_id).join(site, site.c.id == hp.c.site_id).group_by(hp.c.holding_id)
                  .having(func.min(site.c.country) != func.max(site.c.country)))
    before = func.lag(site.c.country).over(partition_by=hp.c.holding_id, order_by=(hp.c.valid_from, hp.c.id))
    v = (sa_select(hp.c.id, hp.c.holding_id, hp.c.owner_id, hp.c.operator_id, hp.c.valid_from,
                   before.label("from_country"), site.c.country.label("to_country"))
         .join(site, site.c.id == hp.c.site_id).where(hp.c.holding_id.in_(ever_moved)).subquery("v"))
    moves = s.execute(sa_select(v.c.holding_id, v.c.owner_id, v.c.operator_id, v.c.valid_from, v.c.from_country,
                                v.c.to_country)
                      .where(v.c.from_country != v.c.to_country).order_by(v.c.holding_id, v.c.valid_from, v.c.id))
    transfers: list[core.Transfer] = []
    for hid, owner_id, operator_id, since, from_country, to_country in moves:
        a = uveu(owner_id, operator_id)
        if a is not None:
            transfers.append(core.Transfer(a.name, from_country, to_country, since.date(), f"#h{hid}"))
    locs = []
    # Only authorizations whose application locations are recorded can tell a new location from an old one.
    app = {a.name: set(a.locations) for a in auths if a.locations is not None}
    for (name, cc, site_name), first in sorted(first_in.items()):
        if name in app and cc not in app[name]:
            locs.append(core.NewLocation(name, cc, site_name, first))
    return transfers, locs


def _unmet_since(s: Session, entries: Sequence[ControlEntry]) -> list[tuple[str, date]]:
    """Each non-compliant register entry with the day it last became non-compliant (Supp. 10 ¶11: notify BIS "if,
    at any time, any requirements have not been met").

    The entry's ``updated_at`` moves with every edit (owner, notes, review date): read as the day the requirement
    went unmet, a note added months later moved the notice's due date to that day and hid it from every as-of
    date before. The day comes from the entry's audit trail (``obligations.control.set``, each carrying the
    status): the last change into non-compliant. Where the trail holds no such change (pruned after the
    retention period), the earliest entry left that shows it non-compliant, else ``updated_at``.
    """
    from agent.store.tables.audit import AuditEntry

    refs = {f"{e.scope}:{e.subject}:p{e.paragraph}": e.updated_at.date() for e in entries}
    if not refs:
        return []
    since: dict[str, date] = {}
    last: dict[str, str | None] = {}
    at = AuditEntry.__table__  # type: ignore[attr-defined]
    rows = s.execute(sa_select(at.c.subject, at.c.ts, at.c.payload)
                     .where(at.c.action == "obligations.control.set", at.c.subject.in_(list(refs)))
                     .order_by(at.c.seq))
    for subject, ts, payload in rows:
        try:
            status = json.loads(payload).get("status")
        except (ValueError, AttributeError):
            continue
        if status == "non-compliant" and last.get(subject) != "non-compliant":
            since[subject] = as_utc(ts).astimezone(UTC).date()  # PostgreSQL: in the session's zone
        last[subject] = status
    return [(ref, min(since.get(ref, day), day)) for ref, day in refs.items()]


def deadline_list(s: Session, packs: PackRegistry, as_of: date, status: str | None = None) -> list[core.Deadline]:
    """Every deadline, from authorizations, recorded events and the holdings history, with its status."""
    if status is not None and status not in core.DEADLINE_STATUSES:
        raise PolicyError(f"--status: {status!r} is not one of {', '.join(core.DEADLINE_STATUSES)}")
    auths = _authorizations(s)
    # Without recorded terms the authorization counts from the day it was registered.
    views = [core.VeuAuthorization(a.name, a.kind, a.holder, a.granted or a.registered_on, a.expires, a.country)
             for a in auths]
    events = s.exec(select(ObligationEvent)).all()
    app = {a.name: set(a.locations or ()) for a in auths}
    new_locs = [core.NewLocation(e.authorization, e.to_country, e.site, e.occurred_on,
                                 new_country=e.to_country not in app.get(e.authorization, set()))
                for e in events if e.kind == "new-location"]
    transfers = [core.Transfer(e.authorization, e.from_country, e.to_country, e.occurred_on, f"#{e.ref}")
                 for e in events if e.kind == "transfer"]
    incidents = [core.Incident(e.ref, e.occurred_on, e.description) for e in events if e.kind == "incident"]
    h_transfers, h_locs = _holdings_history(s, auths)
    planned = {(n.authorization, n.country) for n in new_locs}
    new_locs += [n for n in h_locs if (n.authorization, n.country) not in planned]
    transfers += h_transfers
    unmet = _unmet_since(s, s.exec(select(ControlEntry).where(ControlEntry.status == "non-compliant")).all())
    out = core.deadlines(packs, as_of, views, new_locs, transfers, incidents, _filings(s), unmet)
    return [d for d in out if status is None or d.status == status]


def report_period(d: core.Deadline) -> tuple[str, date, date] | None:
    """The period a periodic report covers (label, first day, last day); None for a deadline that covers none.

    § 748.15(f)(1)(iii): the report due July 15 covers January 1 through June 30, the one due January 15 the
    previous July 1 through December 31. (Supp. 10 ¶10's chip accounting is dated, not a period: not here.)
    """
    if d.period is None:
        return None
    start, end = d.period
    return f"{start.year} H{1 if start.month <= 6 else 2}", start, end


def file_deadline(
    s: Session, packs: PackRegistry, key: str, on: date, reference: str = "", actor: str | None = None,
    as_of: date | None = None, *, early: bool = False,
) -> ObligationFiling:
    """Mark a deadline done by recording the filing (the key must be one of the generated deadlines).

    A periodic report filed on or before the last day of the period it covers is refused unless ``early``:
    the report covers the whole period and is due after it ends, so such a date is almost always a typo (or
    the wrong period's key), and recording it would mark the real report done before it exists. With
    ``early`` the filing is kept and its audit entry says it was filed early. A chip accounting (Supp. 10 ¶10,
    as of its reporting date, no period) filed before it is due, i.e. before the reminder lead (``lead_days``)
    ahead of its reporting date, is refused the same way unless ``early``.
    """
    today = utcnow().date()
    if on > today:
        raise PolicyError(f"--on: {on} is after today; record a filing once it is made")
    check_text("--reference", reference)
    current = {d.key: d for d in deadline_list(s, packs, as_of or today)}
    deadline = current.get(key)
    if deadline is None:
        raise NotFound(f"KEY: {key!r} is not a current deadline; list them with `veuctl deadlines list`")
    early_end: date | None = None  # the end of the period a report was filed before, when --early allowed it
    period = report_period(deadline)
    if period is not None and on <= period[2]:
        label, start, end = period
        if not early:
            raise PolicyError(
                f"--on: {on} is before the end of the reporting period {label} ({start} to {end}) that {key} "
                f"covers; that period ends on {end}, and a report covering it is filed after that (due "
                f"{deadline.due}): check the date, or pass --early if it really was filed before the period ended")
        early_end = end
    if deadline.kind == "theft-loss-report":
        # Supp. 10 ¶16 reports an incident "within 30 days" of its discovery: a report dated before the discovery
        # is a typo in one of the two dates, and recorded it showed the report done before there was anything to
        # report. No --early: either the filing date or the incident's date is wrong.
        inc = s.exec(select(ObligationEvent).where(ObligationEvent.kind == "incident",
                                                   ObligationEvent.ref == deadline.subject)).first()
        if inc is not None and on < inc.occurred_on:
            raise PolicyError(
                f"--on: {on} is before incident {deadline.subject} was discovered ({inc.occurred_on}); a report of "
                f"it is filed from that day on (due {deadline.due}, Supp. 10 ¶16): check the date, or correct the "
                f"incident's date with `veuctl deadlines event {cli_word(deadline.subject)} --kind incident "
                "--on DATE`")
    early_due: date | None = None  # the reporting date a chip accounting was filed well before, with --early
    if deadline.kind == "chip-accounting-report":
        # Supp. 10 ¶10 accounts for the chips "each February 1 and August 1" (¶6 measures "on the reporting
        # dates"): the accounting is as of its reporting date and has no period. Filed within the reminder lead
        # (when `deadlines list` shows it due) it is on time; months before, it is a typo or the wrong date's key.
        lead = int(packs.provision("obligation-reminders", as_of or today).value("lead_days"))
        opens = deadline.due - timedelta(days=lead)
        if on < opens:
            if not early:
                raise PolicyError(
                    f"--on: {on} is before {key} is due: it is the chip accounting as of the reporting date "
                    f"{deadline.due} (Supp. 10 ¶10), due from {opens} ({lead} days before, obligation-reminders "
                    "lead_days): check the date, or pass --early if it really was filed that early")
            early_due = deadline.due
    filed = s.exec(select(ObligationFiling).where(ObligationFiling.key == key)).first()
    if filed is not None:
        ref = f", reference {filed.reference!r}" if filed.reference else ""
        raise Conflict(f"KEY: {key!r} is already filed (on {filed.filed_on}{ref}, by {filed.filed_by or '?'})")
    who = actor or current_actor()
    f = ObligationFiling(key=key, filed_on=on, reference=reference[:400], filed_by=who)
    s.add(f)
    s.flush()
    payload: dict[str, Any] = {"filed_on": on, "reference": reference}
    if early_end is not None:
        # The override is part of the record: an auditor sees the report was filed before its period ended.
        payload["early"] = True
        payload["period_end"] = early_end
    if early_due is not None:
        payload["early"] = True
        payload["due"] = early_due
    record(s, actor=who, action="obligations.deadline.file", subject=f"deadline:{key}", payload=payload)
    return f


# --------------------------------------------------------------------------------------- notification


class NotifySettings(BaseSettings):
    """Where reminders go: a webhook URL (JSON POST) and/or SMTP; read from VEU_NOTIFY_* variables."""

    model_config = SettingsConfigDict(env_prefix="VEU_NOTIFY_", extra="ignore")

    webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "veu-governor@localhost"
    smtp_to: str = ""  # comma-separated
    interval_minutes: int = 60
    scheduler: bool = False  # VEU_NOTIFY_SCHEDULER=1 starts the reminder job inside the API server
    statuses: str = "due,overdue"

    def channels(self) -> list[tuple[str, str, str]]:
        """(channel, the target as recorded and shown, the address sent to)."""
        out = []
        if self.webhook_url:
            out.append(("webhook", redact_url(self.webhook_url), self.webhook_url))
        if self.smtp_host and self.smtp_to:
            out.append(("smtp", smtp_target(self.smtp_to), self.smtp_to))
        return out


def smtp_recipients(smtp_to: str) -> list[str]:
    """The addresses of a comma-separated recipient list, as given (stripped); empty entries left out."""
    return [a.strip() for a in smtp_to.split(",") if a.strip()]


def smtp_target(smtp_to: str) -> str:
    """The SMTP target a reminder is recorded as sent to: the recipients with the domain lower-cased (the local
    part may be case-sensitive), de-duplicated and sorted, joined by ",". Reordering the list, a space after a
    comma or ``Example.COM`` is then the same target, not a new one every reminder is sent to again; a single
    address written plainly is its own target, as it was recorded before targets were normalised."""
    def norm(address: str) -> str:
        local, at, domain = address.rpartition("@")
        return f"{local}@{domain.lower()}" if at else address

    return ",".join(sorted({norm(a) for a in smtp_recipients(smtp_to)}))


def smtp_to_problem(smtp_to: str) -> str | None:
    """Why a recipient list cannot be used (an empty address in it: ``a@x.com,,``, a trailing comma), else None."""
    if not smtp_to:
        return None
    for n, address in enumerate(smtp_to.split(","), 1):
        if not address.strip():
            return (f"{smtp_to!r}: address {n} is empty; give comma-separated addresses without an empty one "
                    "(no doubled or trailing comma)")
    return None


def notify_settings() -> NotifySettings:
    """The VEU_NOTIFY_* settings; a value that does not parse is one line naming its variable (at `veuctl serve`
    start-up, `deadlines notify` and the reminder job alike), not a pydantic traceback."""
    from pydantic import ValidationError

    try:
        cfg = NotifySettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PolicyError(f"VEU_NOTIFY_{str(first['loc'][0]).upper()}: {first['msg']}") from None
    if cfg.smtp_host and not 0 < cfg.smtp_port < 65536:
        raise PolicyError(f"VEU_NOTIFY_SMTP_PORT: {cfg.smtp_port} is not a TCP port (1-65535)")
    if cfg.interval_minutes < 1:
        raise PolicyError(f"VEU_NOTIFY_INTERVAL_MINUTES: {cfg.interval_minutes} is not a number of minutes (1 or more)")
    problem = smtp_to_problem(cfg.smtp_to)
    if problem:
        raise PolicyError(f"VEU_NOTIFY_SMTP_TO: {problem}")
    return cfg


def redact_url(url: str) -> str:
    """A webhook URL as it may be shown, logged and recorded: scheme and host, and a digest that tells two
    URLs apart. Chat webhooks carry their credential in the path or query, which only the server may see."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…#{digest}"


class _HideWebhookUrls(logging.Filter):
    """httpx logs every request's full URL at INFO (``HTTP Request: POST https://…``), and the API server logs
    at INFO: a webhook URL sent to is shown redacted there too."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and self.urls:
            record.args = tuple(redact_url(str(a)) if str(a) in self.urls else a for a in record.args)
        return True


_HIDE_WEBHOOK_URLS = _HideWebhookUrls()


def _send_webhook(url: str, payload: dict[str, Any]) -> None:
    _HIDE_WEBHOOK_URLS.urls.update((url, str(httpx.URL(url))))
    httpx_log = logging.getLogger("httpx")
    if _HIDE_WEBHOOK_URLS not in httpx_log.filters:
        httpx_log.addFilter(_HIDE_WEBHOOK_URLS)
    # A redirect is not followed (the payload would go to an address nobody configured): it is a failure.
    r = httpx.post(url, json=payload, timeout=10.0)
    r.raise_for_status()


def _send_failure(exc: BaseException, address: str, target: str) -> str:
    """A failed send as it is recorded, logged, audited and shown: never a webhook URL's path or query (the
    credential of a chat webhook), whichever form the HTTP library printed it in (normalised host, a
    redirect's Location), and never a character of the SMTP user or password."""
    import re

    if isinstance(exc, httpx.HTTPStatusError):
        r = exc.response
        text = f"HTTPStatusError: HTTP {r.status_code} {r.reason_phrase}".rstrip()
        if r.is_redirect:
            text += " (a redirect; reminders are not sent on to another address)"
    elif isinstance(exc, UnicodeError):
        text = f"{type(exc).__name__}: the SMTP user, password or an address is not ASCII"
    else:
        text = f"{type(exc).__name__}: {exc}".replace(address, target)
        text = re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+",
                      lambda m: m.group(0) if m.group(0) == target else redact_url(m.group(0)), text)
    return text[:2000]


def rule_status(d: Mapping[str, Any]) -> str:
    """A deadline's (or paragraph's) rule status in words, as its ``codified``/``enforced``/``confirmed`` say:
    "codified, not enforced", with UNCONFIRMED where it is."""
    words = ["codified" if d.get("codified") else "not codified",
             "enforced" if d.get("enforced") else "not enforced"]
    if d.get("confirmed") is False:
        words.append("UNCONFIRMED")
    return ", ".join(words)


def _mail_rule_status(d: Mapping[str, Any]) -> str:
    """"; codified, not enforced" for a deadline whose rule is not enforced (or not codified, or UNCONFIRMED)."""
    if d.get("enforced") is not False and d.get("codified") is not False and d.get("confirmed") is not False:
        return ""
    return "; " + rule_status(d)


def _send_smtp(cfg: NotifySettings, deadlines: Sequence[dict[str, Any]]) -> None:
    msg = EmailMessage()
    msg["From"] = cfg.smtp_from
    msg["To"] = cfg.smtp_to
    worst = "overdue" if any(d["status"] == "overdue" for d in deadlines) else "due"
    msg["Subject"] = f"[veu-governor] {len(deadlines)} export-control deadline(s) {worst}"
    # The rule's status said per line, as the list shows it: a reminder for a deadline under a rule BIS does not
    # enforce (the AI Diffusion rule from 2025-05-13) read as if it were enforced.
    lines = [f"- {d['due']} [{d['status'].upper()}] {d['title']} ({d['subject']}; {d['citation']}"
             f"{_mail_rule_status(d)})" for d in deadlines]
    msg.set_content("Deadlines needing action:\n\n" + "\n".join(lines) + "\n\nMark one done with "
                    "`veuctl deadlines file KEY --on DATE`.\n")
    with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=10) as smtp:
        if cfg.smtp_starttls:
            smtp.starttls()
        if cfg.smtp_user:
            smtp.login(cfg.smtp_user, cfg.smtp_password)
        smtp.send_message(msg, to_addrs=smtp_recipients(cfg.smtp_to))


def send_reminders(
    s: Session, packs: PackRegistry, as_of: date, cfg: NotifySettings | None = None,
) -> dict[str, Any]:
    """Send each due/overdue deadline once per status and channel; record what was sent (or failed)."""
    if as_of > utcnow().date():
        # A reminder sent "as of" a future day would be recorded as sent and suppress the real one then.
        raise PolicyError(f"--as-of: {as_of} is after today; reminders are sent for today's deadlines "
                          "(preview later ones with `veuctl deadlines list --as-of`)")
    cfg = cfg or notify_settings()
    from agent.store.db import lock_for_transaction, lock_key

    # One reminder run at a time per store (API replicas each running the job, a CLI `notify` beside it):
    # a second run waits for the first to commit, then reads what it sent, instead of sending it again.
    if s.get_bind().dialect.name == "postgresql":
        lock_for_transaction(s, lock_key("obligations", "reminders"))
    else:
        _hold_sqlite_reminder_lock(s)
    wanted = {x.strip() for x in cfg.statuses.split(",") if x.strip()}
    todo = [d for d in deadline_list(s, packs, as_of) if d.status in wanted]
    sent: list[dict[str, Any]] = []
    for channel, target, address in cfg.channels():
        fresh = [d for d in todo if not any(r.ok for r in _notified(s, d, channel, target))]
        if not fresh:
            continue
        payloads = [d.to_dict() for d in fresh]
        error = ""
        try:
            if channel == "webhook":
                _send_webhook(address, {"source": "veu-governor", "as_of": as_of.isoformat(), "deadlines": payloads})
            else:
                _send_smtp(cfg, payloads)
        except (httpx.HTTPError, OSError, smtplib.SMTPException, ValueError) as exc:
            # ValueError: a non-ASCII login (smtplib encodes it as ASCII) or a header with a line break.
            error = _send_failure(exc, address, target)
            log.warning("reminder via %s to %s failed: %s", channel, target, error)
        for d in fresh:
            # A failure recorded under the old raw text of the same recipients is updated (and renamed to the
            # normalised target): one row per deadline, status and target, as before.
            old = sorted(_notified(s, d, channel, target), key=lambda r: r.target != target)
            row = old[0] if old else ObligationNotification(key=d.key, status=d.status, channel=channel,
                                                            target=target, due=d.due)
            row.target, row.ok, row.error, row.sent_at = target, not error, error, utcnow()
            s.add(row)
        s.flush()
        record(s, actor="scheduler:obligations", action="obligations.reminder.send", subject=f"{channel}:{target}",
               payload={"keys": [d.key for d in fresh], "ok": not error, "error": error})
        sent.append({"channel": channel, "target": target, "count": len(fresh), "ok": not error, "error": error})
    return {"as_of": as_of.isoformat(), "candidates": len(todo), "sent": sent}


def _notified(s: Session, d: core.Deadline, channel: str, target: str) -> list[ObligationNotification]:
    """What is recorded for deadline ``d`` in its status over ``channel`` to ``target`` (sent or failed).

    SMTP rows written before targets were normalised hold the raw VEU_NOTIFY_SMTP_TO text
    (``"b@x.com, a@x.com"``): they count for the recipients they name, so an upgrade sends nothing again."""
    rows = s.exec(select(ObligationNotification).where(
        ObligationNotification.key == d.key, ObligationNotification.status == d.status,
        ObligationNotification.channel == channel)).all()
    return [r for r in rows if r.target == target or (channel == "smtp" and smtp_target(r.target) == target)]


def _open_lock_file(lock_path: str, store: str) -> int:
    """The lock file, opened for the lock; made as SQLite makes its ``-wal`` and ``-shm`` beside the store: with
    the store file's permissions (not narrowed by the umask) and, made by root, its owner. Made 0600 by whoever
    ran first, it shut every other account writing the store out of reminders (root's after a `sudo veuctl`)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return os.open(lock_path, os.O_RDWR)
    try:
        st = os.stat(store)
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o666)
        if os.geteuid() == 0:
            os.fchown(fd, st.st_uid, st.st_gid)
    except OSError:
        pass  # a lock file this account can use is made; only sharing it with others is not
    return fd


_REMINDER_LOCK = "veu_reminder_lock"  # Session.info: the transaction the SQLite reminder lock is held for
# How long a reminder run on SQLite waits for another one on the same store to finish (sends and commit).
NOTIFY_LOCK_WAIT_SECONDS = 300.0


def _hold_sqlite_reminder_lock(s: Session) -> None:
    """SQLite: hold the file lock ``<database>-notify`` next to the store until the session's transaction ends.

    What was sent is recorded in the run's transaction, committed after the sends: without the lock two runs at
    once (two `veuctl deadlines notify`, the API's job beside one) both found nothing recorded and both sent.
    SQLite's own write lock would serialise them too, but held through the sends (up to 10 s each) it would
    stop every other write, admission's included. A second run waits here for the first to commit, then reads
    what it sent. Without a file (in-memory) there is no other process to share the store with."""
    path = s.get_bind().engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    if s.in_transaction() and s.info.get(_REMINDER_LOCK) is s.get_transaction():
        return  # held already: a second run in the same transaction would wait for itself
    lock_path = f"{path}-notify"
    try:
        fd = _open_lock_file(lock_path, path)
    except OSError as exc:
        raise PolicyError(f"deadline reminders: cannot open the lock file {lock_path} ({exc.strerror}); it and "
                          "the store's directory must be writable by this account") from None
    deadline = time.monotonic() + NOTIFY_LOCK_WAIT_SECONDS
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: excludes threads of a process too
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Conflict(f"deadline reminders: another reminder run on this store has held {lock_path} "
                                   f"for over {NOTIFY_LOCK_WAIT_SECONDS:.0f} s; nothing was sent; check for a "
                                   "stuck `veuctl deadlines notify` or API server and retry") from None
                time.sleep(0.1)
        s.connection()  # the transaction the lock is held for (begun now if not yet)
        root = s.get_transaction()
    except BaseException:
        os.close(fd)
        raise
    s.info[_REMINDER_LOCK] = root

    def release(session: Session, transaction: Any) -> None:
        # After the commit (or rollback): the next run reads what this one recorded.
        if transaction is root and session.info.get(_REMINDER_LOCK) is root:
            del session.info[_REMINDER_LOCK]
            os.close(fd)  # releases the lock

    event.listen(s, "after_transaction_end", release)


def notifications(s: Session, limit: int = 200) -> list[dict[str, Any]]:
    rows = s.exec(select(ObligationNotification).order_by(
        ObligationNotification.sent_at.desc()).limit(limit)).all()  # type: ignore[attr-defined]
    return [{"key": r.key, "status": r.status, "channel": r.channel, "target": r.target, "due": r.due.isoformat(),
             "ok": r.ok, "error": r.error, "sent_at": r.sent_at.isoformat()} for r in rows]


def reminder_job(database_url: str | None = None, cfg: NotifySettings | None = None) -> dict[str, Any]:
    """One scheduler tick: generate today's deadlines and send reminders (own transaction)."""
    from agent.packs import registry
    from agent.store import session_scope

    with session_scope(database_url) as s:
        return send_reminders(s, registry(), datetime.now(UTC).date(), cfg)


def start_scheduler(database_url: str | None = None, cfg: NotifySettings | None = None) -> Any:
    """Start a background APScheduler running :func:`reminder_job` every ``interval_minutes``."""
    from apscheduler.schedulers.background import BackgroundScheduler

    cfg = cfg or notify_settings()
    sched = BackgroundScheduler(timezone="UTC")
    sched.add_job(reminder_job, "interval", minutes=max(cfg.interval_minutes, 1), args=[database_url, cfg],
                  id="obligation-reminders", replace_existing=True, max_instances=1, coalesce=True,
                  next_run_time=datetime.now(UTC))
    sched.start()
    return sched


def to_json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))
