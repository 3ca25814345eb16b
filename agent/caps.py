"""Caps in the store: authorizations, the installed base as placements, what-if, reservations, shipments.

The arithmetic lives in :mod:`policies.caps`; this module reads the store (one aggregated query per
evaluation, however many holdings there are), resolves chips through the catalog, and writes
authorizations, reservations and shipments with an audit entry in the same transaction.

Reservations serialise: the first statement of a reservation's transaction takes one lock for every
reservation (a transaction-level advisory lock on PostgreSQL, the database write lock on SQLite), so two
planners racing for the last headroom, under one authorization or two that share it, are evaluated one after
the other and neither over-commits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal, NoReturn

from sqlalchemy import and_, case, exists, func, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from agent.audit import current_actor, record
from agent.exports.base import chip_count  # a chip count as the exports write it: 500, never 500.0
from agent.parties import Conflict, get_party, named, party_refs
from agent.store.db import MAX_ROW_ID, lock_for_transaction, lock_key
from agent.store.tables.caps import Reservation, Shipment, VeuAuthorization
from agent.store.tables.core import Holding, Party, Site, utc_today, utcnow
from agent.store.tables.inventory import HoldingPeriod
from agent.text import check_text
from policies import caps as core
from policies.caps import SHIPMENT_VIAS, Authorization, CapResult, Placement, cap_to_dict, exact
from policies.classification import classify_accelerator
from policies.compute import MAX_CHIPS  # a what-if N, a reservation, a shipment
from policies.errors import NotInEffect, PolicyError, cli_word
from policies.jurisdictions import country_code, tier
from policies.packs import PackRegistry, parse_date
from policies.parties import PartyRef, effective_tier, ownership_chain

Op = Literal["add", "move", "retire"]
MAX_LISTED_HOLDINGS = 50_000
# The same kind of bound on a shipment's value in US dollars (ten trillion): a typo, not a shipment.
MAX_VALUE_USD = 1e13
MAX_NOTE = 500  # characters of a reservation's note (reservation.note)
MAX_PAGE = 1000  # shipments per page, as `veuctl models list` and the API's pages
# The lock every reservation takes (agent.store.db.lock_for_transaction), whatever its authorization.
RESERVATION_LOCK_KEY = lock_key("reservations")
# Taken by an LPP shipment before its calendar-year check reads the year's shipments: two recorded at once each
# checked a year without the other and both committed past the limit. One key for every consignee: whose
# ultimate parent a shipment counts under is known only after the read.
LPP_LOCK_KEY = lock_key("shipments", "lpp")


class CapExceeded(PolicyError):
    """A reservation or planned change would take a binding cap over its limit."""


class NotFound(PolicyError):
    """An authorization, site or reservation that does not exist (HTTP 404)."""


@contextmanager
def dated(option: str) -> Iterator[None]:
    """Name the date option at fault when a provision is not in effect on the date it gave."""
    try:
        yield
    except NotInEffect as exc:
        text = str(exc)
        if text.startswith(f"{option}:"):
            raise
        text = text.replace("choose a later --as-of", f"choose a later {option}")
        raise NotInEffect(f"{option}: {text}") from None


def check_caps_in_effect(packs: PackRegistry, a: VeuAuthorization, on: date) -> None:
    """Refuse an NVEU's caps on a date before the rules, saying so (inside :func:`dated`, which names the option).

    An NVEU's installed base counts the chip class the UVEU allocation provision names: without this, the
    refusal named a UVEU provision as what an NVEU lacked. (A UVEU's own refusal names its provision.)
    """
    if a.kind != "nveu" or packs.find(core.COUNTED_CLASS_PROVISION, on) is not None:
        return
    starts = sorted(p.effective_from for p in packs.history(core.COUNTED_CLASS_PROVISION) if p.effective_from > on)
    since = f" (they take effect on {starts[0]})" if starts else ""
    raise NotInEffect(f"Data Center VEU caps are not in effect on {on}{since}: NVEU {a.name!r} has no cap "
                      "before then; choose a later date")


def check_nveu_covers(a: VeuAuthorization, country: str, option: str, site: str | None = None) -> None:
    """An NVEU covers its one destination country: refuse a shipment, reservation or what-if elsewhere."""
    if a.kind == "nveu" and a.country != country:
        where = f" (site {site!r} is in {country})" if site else ""
        raise PolicyError(f"{option}: NVEU {a.name!r} covers {a.country} only, not {country}{where}")


# ------------------------------------------------------------------------------------------- chips


@dataclass(frozen=True)
class ChipInfo:
    id: str
    name: str
    tpp: Fraction
    eccn: str
    fraction: Fraction  # a MIG slice is a fraction of its parent chip


def chip(packs: PackRegistry, name: str, as_of: date) -> ChipInfo:
    """Resolve any catalog alias (or MIG slice) to its TPP and ECCN class as of a date."""
    return _chip_cached(packs, name, as_of)


@lru_cache(maxsize=4096)
def _chip_cached(packs: PackRegistry, name: str, as_of: date) -> ChipInfo:
    from agent.kb import catalog

    res = catalog().resolve(name)
    acc = res.accelerator
    eccn = classify_accelerator(packs, acc, as_of).eccn
    return ChipInfo(acc.id, acc.name, exact(acc.tpp), eccn, Fraction(res.fraction))


# ------------------------------------------------------------------------------------ authorizations


def get_authorization(s: Session, name: str, option: str = "authorization") -> VeuAuthorization:
    """The authorization ``name``; ``option`` is what an error names (``--authorization`` where an option gave it)."""
    row = s.exec(select(VeuAuthorization).where(VeuAuthorization.name == name)).first()
    if row is None:
        raise NotFound(
            f"{option}: {name!r} is not registered; add it with "
            f"`veuctl authorizations add {cli_word(name)} --kind uveu|nveu --holder PARTY`"
        )
    return row


def to_core(s: Session, a: VeuAuthorization) -> Authorization:
    holder = s.get(Party, a.holder_id)
    assert holder is not None
    return Authorization(a.name, a.kind, holder.name, a.country)  # type: ignore[arg-type]


def add_authorization(
    s: Session, packs: PackRegistry, name: str, kind: str, holder: str, country: str | None,
    reference: str = "", actor: str | None = None,
) -> VeuAuthorization:
    """Register a UVEU (no country) or an NVEU (exactly one destination country)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise PolicyError("name: an authorization name is 1-200 characters")
    # The name labels metrics, pages and export files: a bidi override would show it as another authorization's.
    check_text("name", name)
    check_text("--reference", reference)
    kind = kind.strip().lower()
    if kind not in ("uveu", "nveu"):
        raise PolicyError(f"--kind: {kind!r} is not uveu or nveu")
    if name.lower() == "allocations":
        raise PolicyError("name: 'allocations' names the Tier 2 and LPP allocations in `veuctl caps`; choose another")
    existing = s.exec(select(VeuAuthorization).where(VeuAuthorization.name == name)).first()
    if existing is not None:
        # A conflict with a stored record (HTTP 409), whatever else the request says.
        raise Conflict(f"name: authorization {name!r} already exists ({_described(s, existing)}); "
                       "choose another name")
    with named("--holder"):
        party = get_party(s, holder)
    code: str | None = None
    if kind == "nveu":
        if not country:
            raise PolicyError("--country: an NVEU covers exactly one destination country; give it (e.g. --country AE)")
        with named("--country"):
            code = country_code(country)
        t = tier(packs, code, utc_today())
        if t.tier == 3:
            raise PolicyError(f"--country: {code} is a Tier 3 destination ({t.basis}); no NVEU may operate there")
    elif country:
        raise PolicyError("--country: a UVEU is not limited to one country; omit --country (or use --kind nveu)")
    _check_holder_eligible(packs, party_refs(s), party.name, kind, utc_today())
    # A licence's own cap is looked up by provision id nveu-licence-<name>: two names that map to one id would
    # share it, and a name with nothing to map has no id.
    cap_id = core.licence_cap_id(name)
    if not re.search(r"[A-Za-z0-9]", name):
        raise PolicyError(f"name: {name!r} needs letters or digits (A-Z, 0-9): an NVEU's own licence cap is the "
                          "provision nveu-licence-<name>")
    clash = next((x for x in s.exec(select(VeuAuthorization)).all()
                  if x.name != name and core.licence_cap_id(x.name) == cap_id), None)
    if clash is not None:
        raise Conflict(f"name: {name!r} and the existing authorization {clash.name!r} ({_described(s, clash)}) "
                       f"would share the licence-cap provision id {cap_id}; choose a name that differs in letters "
                       "or digits")
    row = VeuAuthorization(name=name, kind=kind, holder_id=party.id, country=code, reference=reference)  # type: ignore[arg-type]
    s.add(row)
    s.flush()
    record(s, actor=actor or current_actor(), action="authorization.create", subject=f"authorization:{name}",
           payload={"kind": kind, "holder": party.name, "country": code, "reference": reference})
    return row


def _described(s: Session, a: VeuAuthorization) -> str:
    """A stored authorization as a conflict message names it: ``UVEU held by Aurora Compute Inc.``."""
    holder = s.get(Party, a.holder_id)
    where = f" for {a.country}" if a.country else ""
    return f"{a.kind.upper()}{where} held by {holder.name if holder else '?'}, id {a.id}"


def _check_holder_eligible(
    packs: PackRegistry, parties: Mapping[str, PartyRef], holder: str, kind: str, on: date,
) -> None:
    """§ 748.15(b)(2) at registration, by the rule the caps apply on every later date
    (:func:`policies.caps.holder_ineligible`), so the refusal gives the reason `caps show` would."""
    why = core.holder_ineligible(packs, parties, holder, kind, on)
    if why is None:
        return
    # A holder refused a UVEU only for headquarters outside Supp. 5(a) may still hold an NVEU.
    hint = "; use --kind nveu" if kind == "uveu" and core.holder_ineligible(
        packs, parties, holder, "nveu", on) is None else ""
    raise PolicyError(f"--holder: {why}{hint}")


def ineligible_authorizations(s: Session, packs: PackRegistry, party: str, on: date) -> list[str]:
    """Each authorization held by ``party``, or by a party it owns (up any chain of parents), whose holder is not
    eligible on ``on`` (:func:`policies.caps.holder_ineligible`), as a warning line naming it and why.

    A party update is recorded whatever it does to eligibility (the registry holds the truth); these lines say
    what it did: each such authorization covers no chip from then on (cap ``<kind>.holder_eligibility``).
    """
    refs = party_refs(s, on)
    holders = {p.id: p.name for p in s.exec(select(Party)).all()}
    out = []
    for a in list_authorizations(s):
        holder = holders.get(a.holder_id)
        if holder is None or holder not in refs or party not in {r.name for r in ownership_chain(refs, holder)}:
            continue
        why = core.holder_ineligible(packs, refs, holder, a.kind, on)
        if why is not None:
            out.append(f"{a.kind.upper()} {a.name!r} (held by {holder}) is not eligible on {on}: {why}; it covers "
                       f"no chip: cap {a.kind}.holder_eligibility, limit 0 (`veuctl caps show {cli_word(a.name)}`)")
    return out


def authorization_dict(s: Session, a: VeuAuthorization) -> dict[str, Any]:
    holder = s.get(Party, a.holder_id)
    return {"name": a.name, "kind": a.kind, "holder": holder.name if holder else None, "country": a.country,
            "reference": a.reference, "created_at": a.created_at.isoformat()}


def list_authorizations(s: Session) -> list[VeuAuthorization]:
    return list(s.exec(select(VeuAuthorization).order_by(VeuAuthorization.name)).all())


# ------------------------------------------------------------------------------------ installed base


def instant(as_of: date) -> datetime:
    """The instant a date stands for (end of the UTC day), as the inventory reads its history."""
    from agent.inventory import instant_of

    return instant_of(as_of)


def _period_filter(at: datetime) -> Any:
    return and_(
        col(HoldingPeriod.valid_from) <= at,
        or_(col(HoldingPeriod.valid_to).is_(None), col(HoldingPeriod.valid_to) > at),
    )


def _holding_filter(at: datetime) -> Any:
    """Holdings without a history (written directly, not by a collector) count from first_seen to retired_at."""
    no_history = ~exists().where(HoldingPeriod.holding_id == Holding.id)
    return and_(
        no_history, col(Holding.first_seen) <= at,
        or_(col(Holding.retired_at).is_(None), col(Holding.retired_at) > at),
    )


def _all_have_history(s: Session) -> bool:
    """Whether every holding has history rows (then the fallback scan of ``holding`` is skipped).

    Cheap: both counts read an index. Period holding ids are a subset of holding ids (foreign key), so equal
    counts mean no holding lacks history.
    """
    n_h = s.execute(sa_select(func.count()).select_from(Holding)).scalar_one()
    n_p = s.execute(sa_select(func.count(func.distinct(HoldingPeriod.holding_id)))).scalar_one()
    return int(n_h) == int(n_p)


def _groups(s: Session, at: datetime) -> list[tuple[int, str, int | None, int | None, float, int]]:
    """(site_id, accelerator, owner_id, operator_id, count, holdings) of the installed base, aggregated in SQL."""
    hp, h = HoldingPeriod, Holding
    q1 = (
        sa_select(hp.site_id, hp.accelerator, hp.owner_id, hp.operator_id, func.sum(hp.count), func.count())
        .where(_period_filter(at)).group_by(hp.site_id, hp.accelerator, hp.owner_id, hp.operator_id)
    )
    q2 = (
        sa_select(h.site_id, h.accelerator, h.owner_id, h.operator_id, func.sum(h.count), func.count())
        .where(_holding_filter(at)).group_by(h.site_id, h.accelerator, h.owner_id, h.operator_id)
    )
    out: dict[tuple[int, str, int | None, int | None], list[float]] = {}
    for q in (q1,) if _all_have_history(s) else (q1, q2):
        for sid, acc, own, opr, cnt, n in s.execute(q).all():
            cur = out.setdefault((sid, acc, own, opr), [0.0, 0])
            cur[0] += float(cnt or 0)
            cur[1] += int(n)
    return [(k[0], k[1], k[2], k[3], v[0], int(v[1])) for k, v in out.items()]


def holding_rows(
    s: Session, at: datetime, site_id: int | None = None, limit: int | None = None, offset: int = 0,
    country: str | None = None, owner_ids: Sequence[int] | None = None, accelerator: str | None = None,
    owner_or_operator_ids: Sequence[int] | None = None, countries: Sequence[str] | None = None,
    accelerators: Sequence[str] | None = None, operator_ids: Sequence[int] | None = None,
) -> list[tuple[int, int, str, int | None, int | None, float]]:
    """Individual holdings in force at ``at``: (holding_id, site_id, accelerator, owner_id, operator_id, count)."""
    hp, h = HoldingPeriod, Holding
    q1 = sa_select(hp.holding_id, hp.site_id, hp.accelerator, hp.owner_id, hp.operator_id, hp.count).where(
        _period_filter(at))
    q2 = sa_select(h.id, h.site_id, h.accelerator, h.owner_id, h.operator_id, h.count).where(_holding_filter(at))
    rows: list[tuple[int, int, str, int | None, int | None, float]] = []
    for q, t in ((q1, hp),) if _all_have_history(s) else ((q1, hp), (q2, h)):
        if site_id is not None:
            q = q.where(t.site_id == site_id)
        if country is not None:
            q = q.where(t.site_id.in_(sa_select(Site.id).where(Site.country == country)))  # type: ignore[union-attr]
        if accelerators is not None:
            q = q.where(col(t.accelerator).in_(list(accelerators)))
        if countries is not None:
            q = q.where(t.site_id.in_(sa_select(Site.id).where(col(Site.country).in_(list(countries)))))  # type: ignore[union-attr]
        if owner_ids is not None:
            q = q.where(col(t.owner_id).in_(list(owner_ids)))
        if operator_ids is not None:
            q = q.where(col(t.operator_id).in_(list(operator_ids)))
        if accelerator is not None:
            q = q.where(t.accelerator == accelerator)
        if owner_or_operator_ids is not None:
            ids = list(owner_or_operator_ids)
            q = q.where(or_(col(t.owner_id).in_(ids), col(t.operator_id).in_(ids)))
        rows.extend((int(r[0]), int(r[1]), str(r[2]), r[3], r[4], float(r[5])) for r in s.execute(q).all())
    rows.sort(key=lambda r: r[0])
    return rows[offset:offset + limit] if limit is not None else rows[offset:]


def _names(s: Session) -> tuple[dict[int, Site], dict[int, str]]:
    sites = {x.id: x for x in s.exec(select(Site)).all()}
    parties = {p.id: p.name for p in s.exec(select(Party)).all()}
    return sites, parties  # type: ignore[return-value]


def placements(
    s: Session, packs: PackRegistry, as_of: date, with_ids: bool = False,
) -> list[Placement]:
    """The installed base on ``as_of`` as placements (site x chip x owner x operator).

    ``with_ids`` lists the holding ids behind each placement (reads every holding: use for explanations
    of small fleets; the aggregated path reads one row per group).
    """
    at = instant(as_of)
    sites, parties = _names(s)
    out: list[Placement] = []
    if with_ids and int(s.execute(sa_select(func.count()).select_from(Holding)).scalar_one()) > MAX_LISTED_HOLDINGS:
        with_ids = False  # a large fleet is explained page by page (`veuctl caps explain`), not all at once
    if with_ids:
        agg: dict[tuple[int, str, int | None, int | None], tuple[float, list[int]]] = {}
        for hid, sid, acc, own, opr, cnt in holding_rows(s, at):
            c, ids = agg.get((sid, acc, own, opr), (0.0, []))
            ids.append(hid)
            agg[(sid, acc, own, opr)] = (c + cnt, ids)
        groups = [(k[0], k[1], k[2], k[3], v[0], v[1]) for k, v in agg.items()]
    else:
        groups = [(g[0], g[1], g[2], g[3], g[4], []) for g in _groups(s, at)]
    for sid, acc, own, opr, cnt, ids in sorted(groups, key=lambda g: (sites[g[0]].name, g[1], g[2] or 0, g[3] or 0)):
        info = chip(packs, acc, as_of)
        site = sites[sid]
        out.append(Placement(
            site.name, site.country, info.id, exact(cnt) * info.fraction, info.tpp, info.eccn,
            parties.get(own) if own is not None else None, parties.get(opr) if opr is not None else None,
            holdings=tuple(ids),
        ))
    return out


def reservation_placements(
    s: Session, packs: PackRegistry, as_of: date, authorization_id: int | None = None, *, planning: bool = False,
    due_by: date | None = None,
) -> list[Placement]:
    """The reservations holding headroom on ``as_of``, as placements (:func:`_planned_placements`).

    ``due_by``: only the reservations planned for that day or earlier (an NVEU's installed base on a date: chips
    planned for a later quarter are not installed by then, and that quarter's allocation is theirs).
    """
    plans = _planned_placements(s, packs, as_of, authorization_id, planning=planning)
    return [p for planned_for, p in plans if due_by is None or planned_for <= due_by]


def _planned_placements(
    s: Session, packs: PackRegistry, as_of: date, authorization_id: int | None = None, *, planning: bool = False,
) -> list[tuple[date, Placement]]:
    """The reservations holding headroom on ``as_of``, each as its planned date and its placement.

    A date before today is a question about the past (caps shown or exported as of then): the reservations
    open at the end of that day, created by then and not yet released or installed, whatever has become of
    them since. Today or later, and whenever ``planning`` (a what-if, a new reservation: headroom is spent
    now, whatever date the plan is for), the reservations active now. None from its expiry day on, except
    that planning for a later date counts every reservation still holding headroom today.
    """
    today = utcnow().date()
    # Planning for a later date: a reservation that still holds headroom today counts even if it lapses before
    # that date. It may yet be installed (its chips then stay), so skipping it would let a plan dated after its
    # expiry take the same headroom twice.
    expiry_from = min(as_of, today) if planning else as_of
    q = select(Reservation).where(
        or_(col(Reservation.expires_on).is_(None), col(Reservation.expires_on) > expiry_from))
    if planning or as_of >= today:
        q = q.where(Reservation.status == "active")
    else:
        at = instant(as_of)
        q = q.where(col(Reservation.created_at) <= at).where(
            or_(col(Reservation.closed_at).is_(None), col(Reservation.closed_at) > at))
    if authorization_id is not None:
        q = q.where(Reservation.authorization_id == authorization_id)
    sites, parties = _names(s)
    out = []
    for r in s.exec(q.order_by(Reservation.id)).all():
        info = chip(packs, r.accelerator, as_of)
        site = sites[r.site_id]
        out.append((r.planned_for, Placement(
            site.name, site.country, info.id, Fraction(r.count) * info.fraction, info.tpp, info.eccn,
            parties.get(r.owner_id) if r.owner_id else None, parties.get(r.operator_id) if r.operator_id else None,
            label=f"reservation #{r.id} (planned {r.planned_for.isoformat()})", arrives=r.planned_for,
        )))
    return out


def installed_since_measured(s: Session, packs: PackRegistry, measured: date, as_of: date) -> list[Placement]:
    """The reservations installed after the measurement date ``measured`` and by ``as_of``, as placements.

    With UVEU shares measured on reporting dates, the installed base read is ``measured``'s and the plans counted
    are those open on ``as_of``: a plan installed in between is in neither, though it held headroom until it was
    installed and its chips are there now. They count as placed until the next reporting date measures them
    (`caps show` and the what-if's "before" alike). None is also open on ``as_of`` (closed by then), so no plan
    is counted twice.
    """
    if measured >= as_of:
        return []
    since, until = instant(measured), instant(as_of)
    q = (select(Reservation).where(Reservation.status == "installed")
         .where(col(Reservation.closed_at) > since).where(col(Reservation.closed_at) <= until)
         .where(col(Reservation.created_at) <= until))
    sites, parties = _names(s)
    out = []
    for r in s.exec(q.order_by(col(Reservation.id))).all():
        info = chip(packs, r.accelerator, as_of)
        site = sites[r.site_id]
        out.append(Placement(
            site.name, site.country, info.id, Fraction(r.count) * info.fraction, info.tpp, info.eccn,
            parties.get(r.owner_id) if r.owner_id else None, parties.get(r.operator_id) if r.operator_id else None,
            # Counted as it was while open (arrives: its planned date), until a reporting date measures its chips.
            label=f"reservation #{r.id} (installed since {measured.isoformat()})", arrives=r.planned_for,
        ))
    return out


def planned_fleets(
    s: Session, packs: PackRegistry, a: VeuAuthorization, installed: Sequence[Placement], as_of: date,
) -> list[tuple[date, list[Placement]]]:
    """The fleets a change planned under ``a`` for ``as_of`` must fit, each with the date its caps are read on.

    First ``as_of``: the installed base and the reservations open now (planning spends headroom now:
    :func:`_planned_placements` with ``planning``), every authorization's (a group's UVEUs share one owned base,
    an NVEU holder's chips count whichever plan reserved them). An NVEU's allocation is quarterly: on ``as_of``
    it counts the plans due by then; the change is still installed when a later plan its caps count arrives,
    so it must also fit that plan's date and allocation, with the plans due by then. The what-if planner, a
    reservation and the path finder all read these fleets, so they agree on what fits.
    """
    plans = _planned_placements(s, packs, as_of, planning=True)
    if a.kind != "nveu":
        return [(as_of, [*installed, *(p for _planned, p in plans)])]
    out = [(as_of, [*installed, *(p for planned_for, p in plans if planned_for <= as_of)])]
    # Only the dates of plans this NVEU's caps count: another holder's plan adds nothing to them, and its date
    # (one past the last quarter of the allocation table, say) would refuse a change that fits every date of ours.
    ahead = [p for planned_for, p in plans if planned_for > as_of]
    ours = _counted_by(packs, party_refs(s, as_of), to_core(s, a), ahead, as_of) if ahead else set()
    for on in sorted({planned_for for planned_for, p in plans if planned_for > as_of and p in ours}):
        out.append((on, [*installed, *(p for planned_for, p in plans if planned_for <= on)]))
    return out


# -------------------------------------------------------------------------------------------- caps


def caps_for(
    s: Session, packs: PackRegistry, name: str, as_of: date, include_reservations: bool = True,
    with_ids: bool = False, base: list[Placement] | None = None,
) -> list[CapResult]:
    """Every cap of one authorization on ``as_of`` (the reservations holding headroom then count as already
    placed: :func:`reservation_placements`)."""
    a = get_authorization(s, name)
    with dated("--as-of"):
        check_caps_in_effect(packs, a, as_of)
        # UVEU shares are measured on the pack's measurement date (as_of itself unless the pack measures on
        # reporting dates): the installed base read is that day's, not as_of's.
        on = core.measurement_date(packs, as_of) if a.kind == "uveu" else as_of
        if on != as_of:
            base = None  # a caller's base is as_of's (overview, exports share one): read the measurement date's
        fleet = list(base) if base is not None else placements(s, packs, on, with_ids=with_ids)
        if include_reservations and on != as_of:
            fleet += installed_since_measured(s, packs, on, as_of)
        if include_reservations:
            # Every authorization's reservations: each cap counts the planned placements it covers (a group's
            # UVEUs share one owned base, an NVEU holder's chips count whichever plan reserved them). An NVEU's
            # allocation caps the installed base of each quarter: a plan for a later quarter was checked against
            # that quarter's allocation when it was reserved, and counting it against this date's smaller one
            # showed the NVEU over today. (UVEU shares count every open plan: planning spends headroom now.)
            # The plans open on as_of, not on the measurement date: a plan holds headroom from the day it is made,
            # and the what-if's "before" (planning on as_of) counts the same ones.
            fleet += reservation_placements(s, packs, as_of, due_by=on if a.kind == "nveu" else None)
        return core.authorization_caps(packs, party_refs(s, as_of), to_core(s, a), fleet, as_of)


def shipments_core(s: Session) -> list[core.Shipment]:
    parties = {p.id: p.name for p in s.exec(select(Party)).all()}
    return [
        core.Shipment(x.id, x.day, parties[x.consignee_id], x.destination, x.accelerator, exact(x.count),
                      exact(x.tpp_each), x.eccn, x.via, x.reference)
        for x in s.exec(select(Shipment).order_by(Shipment.day, Shipment.id)).all()
    ]


def allocation_caps(s: Session, packs: PackRegistry, as_of: date) -> list[CapResult]:
    """Fleet-wide caps from the shipments ledger: Tier 2 country allocations and LPP per ultimate consignee."""
    ledger = shipments_core(s)
    with dated("--as-of"):
        return (core.tier2_allocation_caps(packs, ledger, as_of)
                + core.lpp_caps(packs, party_refs(s, as_of), ledger, as_of))


def allocations_report(s: Session, packs: PackRegistry, as_of: date) -> dict[str, Any]:
    """The fleet-wide allocations on ``as_of`` (:func:`allocation_caps`) as a report; with no figure that day, a
    ``note`` saying why (they come from the shipments ledger) and where each authorization's caps are."""
    caps = allocation_caps(s, packs, as_of)
    report = caps_report(caps, as_of, authorization=None)
    if caps:
        return report
    prov = packs.find("tier2-country-allocation", as_of)
    since = f" from {prov.value('counts_from')}" if prov is not None else ""
    names = [a.name for a in list_authorizations(s)]
    where = (f"each authorization's caps: `veuctl caps show NAME` ({', '.join(names)})" if names
             else "no authorization is registered (`veuctl authorizations add`)")
    report["note"] = (
        f"no Tier 2 country allocation or LPP figure on {as_of}: these come from the shipments ledger, which has no "
        f"licence shipment of 3A090.a-class items to a Tier 2 destination{since} to {as_of} and no LPP shipment in "
        f"{as_of.year} by then (record shipments with `veuctl shipments add`); {where}")
    return report


def caps_report(caps: Iterable[CapResult], as_of: date, **extra: Any) -> dict[str, Any]:
    items = [cap_to_dict(c) for c in caps]
    return {**extra, "as_of": as_of.isoformat(), "ok": all(c["ok"] for c in items if c["binding"]), "caps": items}


def overview(s: Session, packs: PackRegistry, as_of: date) -> dict[str, Any]:
    """Every authorization's caps and the fleet-wide allocations, from one read of the installed base."""
    base = placements(s, packs, as_of)
    auths = []
    for a in list_authorizations(s):
        caps = caps_for(s, packs, a.name, as_of, base=base)
        auths.append({**authorization_dict(s, a), **caps_report(caps, as_of)})
    return {"as_of": as_of.isoformat(), "authorizations": auths,
            "allocations": allocations_report(s, packs, as_of),
            "installed": summarize(packs, base, as_of)}


def summarize(packs: PackRegistry, base: Sequence[Placement], as_of: date) -> dict[str, Any]:
    """Installed 3A090.a-class TPP by country and by tier (the world table)."""
    counted = core.counted_eccns(packs, as_of)
    by_country: dict[str, dict[str, Any]] = {}
    for p in base:
        if not core.counts(p.eccn, counted):
            continue
        row = by_country.get(p.country)
        if row is None:
            t = tier(packs, p.country, as_of)
            row = by_country[p.country] = {"country": p.country, "name": t.name, "tier": t.tier,
                                           "count": Fraction(0), "tpp": Fraction(0), "sites": set()}
        row["count"] += p.count
        row["tpp"] += p.tpp
        row["sites"].add(p.site)
    total = sum((r["tpp"] for r in by_country.values()), Fraction(0))
    countries = []
    for r in sorted(by_country.values(), key=lambda r: -r["tpp"]):
        countries.append({**r, "count": chip_count(r["count"]), "tpp": float(r["tpp"]), "sites": sorted(r["sites"]),
                          "share": float(r["tpp"] / total) if total else 0.0})
    by_tier: dict[int, float] = {}
    for r in countries:
        by_tier[r["tier"]] = by_tier.get(r["tier"], 0.0) + r["tpp"]
    return {"total_tpp": float(total), "countries": countries,
            "by_tier": [{"tier": t, "tpp": v} for t, v in sorted(by_tier.items())]}


# ----------------------------------------------------------------------------------------- what-if


def _site(s: Session, name: str, option: str = "--site") -> Site:
    row = s.exec(select(Site).where(Site.name == name)).first()
    if row is None:
        raise NotFound(f"{option}: {name!r} is not a registered site; add it with "
                       f"`veuctl sites add {cli_word(name)} --country CC`")
    return row


SHOWN_DIGITS = 15  # a longer whole number is echoed in a message as its first digits and its length


def shown_count(n: int, grouped: bool = True) -> str:
    """A whole number echoed in a message: a count as ``20,000,000`` (an id, not ``grouped``, as ``#2147483648``),
    but one of more than :data:`SHOWN_DIGITS` digits as its first twelve and its length
    (``999999999999… (400 digits)``), so a pasted 400-digit number does not fill the message and push the field's
    name out of sight."""
    try:
        digits = str(abs(n))
    except ValueError:  # past Python's 4300-digit str() limit (a Python caller's int; no form or JSON gets one)
        return "a number of more than 4,300 digits"
    sign = "-" if n < 0 else ""
    if len(digits) <= SHOWN_DIGITS:
        return f"{n:,}" if grouped else str(n)
    return f"{sign}{digits[:12]}… ({len(digits):,} digits)"


def _chip_count(n: int, option: str) -> None:
    """A count of chips in a what-if or a reservation: zero or more, and no more than any fleet could hold."""
    if n < 0:
        raise PolicyError(f"{option}: N must be zero or more")
    if n > MAX_CHIPS:
        raise PolicyError(f"{option}: {shown_count(n)} is more chips than any fleet holds; give at most {MAX_CHIPS:,}")


def whatif(
    s: Session, packs: PackRegistry, name: str, *, op: Op = "add", n: int, chip_name: str, site: str,
    to_site: str | None = None, as_of: date, owner: str | None = None, operator: str | None = None,
    base: list[Placement] | None = None, date_option: str = "--as-of",
) -> dict[str, Any]:
    """Every cap before and after "add/move/retire N x CHIP at SITE", whether it fits, what binds, the max N.

    The reservations counted are those open now, whatever ``as_of`` (planning spends headroom now:
    :func:`reservation_placements` with ``planning``), every authorization's (each cap counts the plans it
    covers); the result says so, how many it placed (``reservations_counted``) and how many of them this
    authorization's caps count (``reservations_in_caps``). Chips owned and operated where no cap of the
    authorization counts them are refused naming ``--owner`` (:func:`_check_counted`).
    ``date_option`` names the date in errors (``--planned-for`` for a reservation).
    """
    if op not in ("add", "move", "retire"):
        raise PolicyError(f"op: {op!r} is not add, move or retire")
    _chip_count(n, f"--{op}")
    with dated(date_option):
        return _whatif(s, packs, name, op=op, n=n, chip_name=chip_name, site=site, to_site=to_site, as_of=as_of,
                       owner=owner, operator=operator, base=base)


def _whatif(
    s: Session, packs: PackRegistry, name: str, *, op: Op, n: int, chip_name: str, site: str,
    to_site: str | None, as_of: date, owner: str | None, operator: str | None, base: list[Placement] | None,
) -> dict[str, Any]:
    a = get_authorization(s, name)
    check_caps_in_effect(packs, a, as_of)
    auth = to_core(s, a)
    info = _whole_chips(packs, chip_name, as_of, f"--{op}")
    src = _site(s, site)
    check_nveu_covers(a, src.country, "--site", src.name)
    dst: Site | None = None
    if op != "move" and to_site:
        # Only a move has a destination: an add or retire with one was most likely meant as a move.
        raise PolicyError(f"--to: only a move has a destination site; {op} changes --site ({src.name}) alone "
                          "(use --move to move chips)")
    if op == "move":
        if not to_site:
            raise PolicyError("--to: a move needs the destination site")
        dst = _site(s, to_site, "--to")
        if dst.id == src.id:
            # Moving chips to where they already are changes no cap, so "fits" would be a vacuous yes that
            # hides the typo in the site actually meant (compared by the resolved site, not the text).
            raise PolicyError(f"--to: {dst.name!r} is the site the chips are moved from (--site); "
                              "a move needs a different destination site")
        check_nveu_covers(a, dst.country, "--to", dst.name)
    with named("--owner"):
        own = get_party(s, owner).name if owner else auth.holder
    with named("--operator"):
        opr = get_party(s, operator).name if operator else own
    _check_counted(packs, party_refs(s, as_of), auth, src, info, own, opr, as_of)
    unit = Fraction(1)  # a whole chip (_whole_chips)

    def pl(st: Site, sign: int) -> Placement:
        return Placement(st.name, st.country, info.id, unit * sign, info.tpp, info.eccn, own, opr, label="what-if")

    latest = list(base) if base is not None else placements(s, packs, as_of)
    # UVEU shares may be measured on the last reporting date (uveu-measurement-dates): the "before" figures are then
    # `caps show`'s for as_of, read on that date's installed base (caps_for); it read as_of's, so they differed.
    # The chips there now, which the next reporting date measures, are the later dates' base (_pack_dates).
    measured = core.measurement_date(packs, as_of) if a.kind == "uveu" and base is None else as_of
    installed = latest if measured == as_of else [*placements(s, packs, measured),
                                                  *installed_since_measured(s, packs, measured, as_of)]
    # Every authorization's reservations (see caps_for). An NVEU's allocation is quarterly: on as_of it counts the
    # plans due by then, and the plans due later are checked on their own dates below, against their quarter's.
    nveu = a.kind == "nveu"
    (_, fleet), *later_fleets = planned_fleets(s, packs, a, installed, as_of)
    reserved = fleet[len(installed):]
    available: Fraction | None = None
    if op == "add":
        delta = [pl(src, 1)]
    else:
        def held(ps: Iterable[Placement], mine: bool = True) -> Fraction:
            return sum((p.count for p in ps if p.site == src.name and p.accelerator == info.id
                        and (not mine or (p.owner == own and p.operator == opr))), Fraction(0))

        # What can be moved or retired is what is there now, not what a reporting date measured.
        there = [*latest, *reserved]
        in_reservations = held(reserved)
        available = held(there)
        if n > available:
            how = f" ({_num(available - in_reservations)} installed, {_num(in_reservations)} reserved)" \
                if in_reservations else ""
            others = held(there, mine=False) - available
            hint = (f"; {_num(others)} more are held there under other owners or operators: name them with "
                    "--owner/--operator") if others else ""
            raise PolicyError(
                f"--{op}: only {_num(available)} x {info.name} {'is' if available == 1 else 'are'} held at "
                f"{src.name}{how} owned by {own} and operated by {opr} on {as_of}; {op} at most "
                f"{_num(available)}{hint}"
            )
        delta = [pl(src, -1)] if op == "retire" else [pl(src, -1), pl(dst, 1)]  # type: ignore[arg-type]
    extra = sorted({d.country for d in delta})

    def check(fleet_on: list[Placement], on: date) -> tuple[list[CapResult], list[CapResult], core.FitRange, bool,
                                                           str | None]:
        """The caps on ``on`` before and after the change, the range of N that fits, whether N does, what binds."""
        parties_on = party_refs(s, on)

        def ev(k: int) -> list[CapResult]:
            return core.authorization_caps(packs, parties_on, auth, core.change_placements(fleet_on, delta, k), on,
                                           extra)

        before_on, one, after_on = ev(0), ev(1), ev(n)
        fit_on = core.fit_range(before_on, one)
        # The binding cap is the one that sets the most that fits (or, when nothing fits, the first one exceeded).
        binds = fit_on.binding or next((c.id for c in after_on if c.binding and not c.ok), None)
        return before_on, after_on, fit_on, all(c.ok for c in after_on if c.binding), binds

    before, after, fit, ok, binding = check(fleet, as_of)
    max_fit = fit.high if fit.low is not None else 0
    min_fit = fit.low
    ok = ok and (available is None or n <= available)
    binding_on = as_of
    later = []
    for on, fleet_on in later_fleets:
        # The change stays in the installed base when a later plan's chips arrive: both must fit that quarter.
        _, _, fit_on, ok_on, binds_on = check(fleet_on, on)
        high_on = fit_on.high if fit_on.low is not None else 0
        later.append({"on": on.isoformat(), "ok": ok_on, "max_fit": high_on,
                      "reservations_counted": len(fleet_on) - len(installed)})
        ok = ok and ok_on
        if high_on is not None and (max_fit is None or high_on < max_fit):
            max_fit, binding_on, binding = high_on, on, binds_on or binding
        min_fit = None if fit_on.low is None or min_fit is None else max(min_fit, fit_on.low)
    # Later dates a pack changes these caps on (a cap, a tier, a reporting date): the change is still there then.
    pack_dates, checked = _pack_dates(s, packs, a, auth, latest, delta, extra, n, as_of,
                                      {on for on, _ in later_fleets})
    for d in pack_dates:
        high_on, low_on, binds_on = d.pop("_high"), d.pop("_low"), d.pop("_binds")
        ok = ok and d["ok"]
        if high_on is not None and (max_fit is None or high_on < max_fit):
            max_fit, binding_on, binding = high_on, date.fromisoformat(d["on"]), binds_on or binding
        min_fit = None if low_on is None or min_fit is None else max(min_fit, low_on)
    if available is not None:
        cap_n = int(available)
        max_fit = cap_n if max_fit is None else min(max_fit, cap_n)
    after_by = {c.id: c for c in after}
    rows = []
    for b in before:
        x = after_by.get(b.id, b)
        bd, ad = cap_to_dict(b, 0), cap_to_dict(x, 0)
        rows.append({
            "id": b.id, "title": b.title, "binding": b.binding, "limit": bd["limit"],
            "confirmed": b.confirmed, "codified": b.codified, "enforced": b.enforced,
            "before": {k: bd[k] for k in ("value", "headroom", "ok", "numerator_tpp", "denominator_tpp")},
            "after": {k: ad[k] for k in ("value", "headroom", "ok", "numerator_tpp", "denominator_tpp")},
        })
    return {
        "authorization": a.name, "as_of": as_of.isoformat(),
        "change": {"op": op, "n": n, "chip": info.id, "chip_name": info.name, "tpp_each": float(info.tpp),
                   "eccn": info.eccn, "site": src.name, "country": src.country, "to_site": to_site,
                   "owner": own, "operator": opr, "available": float(available) if available is not None else None},
        # Planning spends headroom now: the "before" figures count the reservations open now, whatever as_of
        # (`caps show --as-of` counts those open on that date, so a past date's figures can differ).
        # An NVEU's: those due by as_of; "later" checks the change against the date and allocation of each later
        # plan its caps count. reservations_counted: every authorization's reservations placed in the fleet (a
        # group's UVEUs share one owned base, an NVEU holder's chips count whichever plan reserved them);
        # reservations_in_caps: how many of those this authorization's caps count.
        "reservations": "due by as_of" if nveu else "open now", "reservations_counted": len(reserved),
        "reservations_in_caps": _in_caps(before, reserved),
        "caps": rows, "ok": ok, "binding": binding, "binding_on": binding_on.isoformat(), "later": later,
        # pack_dates: the later dates on which a loaded pack changes these caps, each with whether the change still
        # fits then (breaks: the caps it takes over their limit; over_already: those over without it). dates_checked:
        # every date the change was checked on, as_of first; pack_horizon: the last date any loaded pack changes on.
        "pack_dates": pack_dates, "dates_checked": checked,
        "pack_horizon": _pack_horizon(packs),
        "max_fit": max_fit, "max_fit_unbounded": max_fit is None, "min_fit": min_fit,
    }


def _pack_horizon(packs: PackRegistry) -> str | None:
    """The last date any loaded provision starts or stops being in effect: nothing later is known."""
    dates = core.pack_change_dates(packs, date.min)
    return dates[-1][0].isoformat() if dates else None


def _version(packs: PackRegistry, pid: str, on: date) -> tuple[Any, ...] | None:
    """Which version of a provision is in effect on ``on`` (None: none is)."""
    p = packs.find(pid, on)
    return None if p is None else (p.pack_id, p.pack_version, p.effective_from, p.effective_to)


def _caps_change_dates(packs: PackRegistry, auth: Authorization, as_of: date) -> dict[date, list[str]]:
    """The later dates on which a provision the caps of ``auth`` read has a different version in effect than the
    day before, each with those provisions. Any other pack date (the NVEU table for a UVEU, the transistor
    thresholds) leaves these caps as they were: checking it cost three cap evaluations for the same verdict."""
    read = core.caps_provision_ids(packs, auth)
    out: dict[date, list[str]] = {}
    for on, ids in core.pack_change_dates(packs, as_of):
        day_before = on - timedelta(days=1)
        changed = [pid for pid in ids if pid in read and _version(packs, pid, on) != _version(packs, pid, day_before)]
        if changed:
            out[on] = changed
    return out


def _pack_dates(
    s: Session, packs: PackRegistry, a: VeuAuthorization, auth: Authorization, latest: Sequence[Placement],
    delta: Sequence[Placement], extra: Sequence[str], n: int, as_of: date, plan_days: set[date],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Check a planned change on each later date a loaded pack changes a provision its caps read on
    (:func:`_caps_change_dates`) and, when UVEU shares are measured on reporting dates, on the first reporting date
    after each of them.

    A plan fits a later date when it takes no binding cap over its limit that is within it without the change: a
    cap over without it (Table 1 ends with 2027, say) is reported as ``over_already``, not blamed on the plan unless
    the plan takes it further over (then it is in ``breaks`` too). The fleet is the installed base now with the
    plans open now (an NVEU's: those due by that date). Every date checked
    is listed, whether or not the caps without the change differ from the date before's: the change's own chips
    can be what a pack change catches (a country joining D:5 where the fleet has none yet). Returns the listed
    dates and every date checked.
    """
    changes = _caps_change_dates(packs, auth, as_of)
    days: dict[date, list[str]] = {d: list(ids) for d, ids in changes.items()}
    if a.kind == "uveu":
        for start in (as_of, *changes):
            m = core.next_measurement_date(packs, start)
            if m is not None and m not in changes:
                days.setdefault(m, []).append("uveu-measurement-dates")
        # Shares measured on reporting dates: on any other date they are the last reporting date's, which a change
        # made on as_of is not in (and a pack change is measured on the reporting date after it, added above).
        days = {d: ids for d, ids in days.items() if core.measurement_date(packs, d) == d}
    checked = [as_of.isoformat(), *(d.isoformat() for d in sorted(set(days) | plan_days))]
    todo = sorted(d for d in days if d not in plan_days)  # a plan's date: checked beside the plans due then
    plans = _planned_placements(s, packs, as_of, planning=True) if todo else []
    out: list[dict[str, Any]] = []
    for on in todo:
        fleet_on = [*latest, *(p for planned_for, p in plans if a.kind != "nveu" or planned_for <= on)]
        try:
            check_caps_in_effect(packs, a, on)
            parties_on = party_refs(s, on)

            def ev(k: int, on: date = on, fleet_on: list[Placement] = fleet_on,
                   parties_on: Mapping[str, PartyRef] = parties_on) -> list[CapResult]:
                return core.authorization_caps(packs, parties_on, auth, core.change_placements(fleet_on, delta, k),
                                               on, extra)

            before_on = ev(0)
        except NotInEffect as exc:
            out.append({"on": on.isoformat(), "provisions": days[on], "ok": True, "breaks": [], "over_already": [],
                        "max_fit": None, "note": f"no cap of {a.name} is in effect: {exc}",
                        "_high": None, "_low": 0, "_binds": None})
            continue
        over = [c.id for c in before_on if c.binding and not c.ok]
        one, after_on = ev(1), ev(n)
        fit = core.fit_range(before_on, [u for u in one if u.id not in over])
        was = {c.id: c.value for c in before_on}
        # A cap over without the change is not blamed on it, unless the change takes it further over (its value
        # grows: more chips in a country already over its share). One chip does so exactly when N does (the value
        # is monotone in N), so then none fits. A cap with no limit in effect (Table 1 ends) is the packs' horizon,
        # not a limit the change could worsen: it stays over_already only.
        worse = {u.id for u in one if u.id in over and u.limit is not None and u.value > was[u.id]}
        breaks = [c.id for c in after_on if c.binding and not c.ok and (c.id not in over or (n and c.id in worse))]
        high = fit.high if fit.low is not None and not worse else 0
        binds = next((c for c in over if c in worse), None) or fit.binding or (breaks[0] if breaks else None)
        out.append({"on": on.isoformat(), "provisions": days[on], "ok": not breaks, "breaks": breaks,
                    "over_already": over, "max_fit": high,
                    "_high": high, "_low": None if worse else fit.low, "_binds": binds})
    return out, checked


def _contributors(caps: Iterable[CapResult]) -> set[Placement]:
    """The placements some cap of ``caps`` counts."""
    return {p for c in caps for p in c.contributors}


def _counted_by(
    packs: PackRegistry, parties: Mapping[str, PartyRef], auth: Authorization, ps: Sequence[Placement], on: date,
) -> set[Placement]:
    """The placements among ``ps`` that some cap of ``auth`` counts on ``on``."""
    return _contributors(core.authorization_caps(packs, parties, auth, ps, on))


def _in_caps(caps: Iterable[CapResult], plans: Sequence[Placement]) -> int:
    """How many of the planned placements ``plans`` some cap of ``caps`` counts."""
    counted = _contributors(caps)
    return sum(1 for p in plans if p in counted)


def _check_counted(
    packs: PackRegistry, parties: Mapping[str, PartyRef], auth: Authorization, site: Site, info: ChipInfo,
    owner: str, operator: str, as_of: date,
) -> None:
    """Refuse chips owned and operated where no cap of ``auth`` counts them (a what-if, a reservation).

    A UVEU's shares are of the TPP its holder's corporate group owns (or operates), an NVEU's installed base the
    chips its holder owns or operates in its country: chips of another group would "fit" whatever their number,
    and a reservation of them would hold no headroom. The rules decide (``policies.caps``): one chip of a kind
    that counts (this one, or any when it is not), owned and operated as given, is evaluated alone.
    """
    counted = core.counted_eccns(packs, as_of)
    if not counted:
        return
    eccn = info.eccn if core.counts(info.eccn, counted) else min(counted)
    probe = Placement(site.name, site.country, info.id, Fraction(1), info.tpp, eccn, owner, operator, label="what-if")
    caps = core.authorization_caps(packs, parties, auth, [probe], as_of)
    if not caps or probe in _contributors(caps):
        return
    scope = caps[0].scope
    whose = ", ".join(scope.get("group") or [str(scope.get("holder", auth.holder))])
    where = f" in {auth.country}" if auth.country else ""
    raise PolicyError(
        f"--owner: no cap of {auth.kind.upper()} {auth.name!r} counts chips owned by {owner} and operated by "
        f"{operator}: its caps count chips owned or operated by {whose}{where}; name an owner (or --operator) "
        f"among them, or plan these chips under an authorization {owner} holds"
    )


def _num(x: Fraction) -> str:
    """A count of chips for a message: whole numbers without a fraction."""
    return f"{int(x):,}" if x.denominator == 1 else f"{float(x):,.2f}"


# ------------------------------------------------------------------------------------ reservations


def reserve(
    s: Session, packs: PackRegistry, name: str, *, n: int, chip_name: str, site: str, planned_for: date,
    owner: str | None = None, operator: str | None = None, note: str = "", actor: str | None = None,
    expires_on: date | None = None,
) -> Reservation:
    """Reserve headroom for N chips at a site, or raise :class:`CapExceeded`; serialised with every other reservation.

    ``expires_on``: the day the reservation stops holding headroom if nobody has released or installed it
    (a forgotten plan must not block the fleet's headroom for ever); None holds it until it is closed.
    """
    if n <= 0:
        raise PolicyError("--count: a reservation is for one chip or more")
    _chip_count(n, "--count")
    if expires_on is not None and expires_on <= planned_for:
        raise PolicyError(f"--expires: {expires_on} is not after the planned installation date {planned_for}; "
                          "a reservation must still hold when its chips arrive")
    today = utcnow().date()
    if expires_on is not None and expires_on <= today:
        # It holds headroom until the day before it expires: one expiring today or earlier would hold none, and
        # be listed as expired from the moment it is made.
        raise PolicyError(f"--expires: {expires_on} is not after today ({today}); a reservation holds headroom "
                          "until the day before it expires, so this one would hold none: give a later date, or "
                          "leave --expires out")
    if len(note) > MAX_NOTE:
        # The column holds 500 characters: PostgreSQL refused a longer note as a store error, SQLite kept it.
        raise PolicyError(f"--note: at most {MAX_NOTE} characters of text (got {len(note)})")
    check_text("--note", note, lines=True)  # a NUL no store keeps, a bell or an escape replayed to its readers
    with dated("--planned-for"):
        _whole_chips(packs, chip_name, planned_for, "--count")
    # The lock comes first, before any read in this transaction (see the module docstring).
    # Every authorization's reservations count toward every cap they touch (a group's UVEUs share one owned
    # base), so reservations under different authorizations serialise too.
    lock_for_transaction(s, RESERVATION_LOCK_KEY)
    locked = s.execute(
        update(VeuAuthorization).where(col(VeuAuthorization.name) == name)
        .values(revision=VeuAuthorization.revision + 1)  # type: ignore[operator]
    )
    if not locked.rowcount:  # type: ignore[attr-defined]
        get_authorization(s, name)
    a = get_authorization(s, name)
    if s.get_bind().dialect.name == "postgresql":
        s.exec(select(VeuAuthorization).where(VeuAuthorization.id == a.id).with_for_update()).one()
    # The chips are not installed yet, so they join the installed base as it is now or later: a plan dated in
    # the past is checked against today's installed base, not against that day's (which may hold fewer chips).
    base = None
    if planned_for < today:
        with dated("--planned-for"):
            base = placements(s, packs, today)
    res = whatif(s, packs, name, op="add", n=n, chip_name=chip_name, site=site, as_of=planned_for,
                 owner=owner, operator=operator, date_option="--planned-for", base=base)
    if not res["ok"]:
        lo, hi, on = res["min_fit"], res["max_fit"], res["binding_on"]  # on: the date the binding cap binds
        bound = next((c for c in res["caps"] if c["id"] == res["binding"]), None)
        if bound is not None and bound["limit"] is None:  # no allocation in effect on that date
            raise CapExceeded(f"--count: reserving {n} x {res['change']['chip_name']} at {site}: {res['binding']} has "
                              f"no limit in effect on {on}, so nothing may be placed against it under {name}")
        if lo is None and bound is not None and not bound["before"]["ok"]:
            # Over before the change, which does not bring it back (it leaves it alone or adds to it): "would
            # exceed ...; at most 0 fit" would read as if this change were what breaks the limit.
            raise CapExceeded(f"--count: reserving {n} x {res['change']['chip_name']} at {site} would leave "
                              f"{res['binding']} over its limit: it is over already under {name} on {on}, "
                              f"and no number of these chips at {site} brings it back")
        if lo is not None and hi is None:  # the cap is over already and only a larger change cures it
            what, fits = "would leave", f"{lo:,} or more fit"
        elif lo:
            what, fits = "would exceed", f"{lo:,} to {hi:,} fit"
        else:
            what, fits = "would exceed", f"at most {hi} fit{'s' if hi == 1 else ''}"
        raise CapExceeded(
            f"--count: reserving {n} x {res['change']['chip_name']} at {site} {what} {res['binding']}"
            f"{' over its limit' if what == 'would leave' else ''}; {fits} under {name} on {on}"
        )
    ch = res["change"]
    row = Reservation(
        authorization_id=a.id, site_id=_site(s, site).id, accelerator=ch["chip"], count=n,  # type: ignore[arg-type]
        owner_id=get_party(s, ch["owner"]).id, operator_id=get_party(s, ch["operator"]).id, planned_for=planned_for,
        expires_on=expires_on, created_by=actor or current_actor(), note=note,
    )
    s.add(row)
    s.flush()
    record(s, actor=actor or current_actor(), action="reservation.create", subject=f"reservation:{row.id}",
           payload={"authorization": name, "site": site, "chip": ch["chip"], "count": n,
                    "planned_for": planned_for.isoformat(),
                    "expires_on": expires_on.isoformat() if expires_on else None, "max_fit_before": res["max_fit"]})
    return row


def _whole_chips(packs: PackRegistry, chip_name: str, on: date, count_option: str) -> ChipInfo:
    """The chip ``chip_name`` names; a MIG slice is refused naming ``--chip``, its GPU and ``count_option``.

    An operator plans, installs, retires and ships whole GPUs; MIG is a runtime partition of one (a MIG-partitioned
    GPU is one whole chip, as the inventory import says). Taken as a fraction of its GPU, a slice made the count
    mean two things: a reservation of N slices was checked as N/7 of a GPU but stored as N GPUs; a what-if of N
    slices was titled "N x <the GPU>" but counted N/7 of one (its max N in slices, which no reservation takes);
    a shipment of N slices was recorded as N/7 of a GPU shipped, where ``veuctl paths --items`` reads the same
    words as N GPUs. The date and the option it is read under are the caller's (``dated``).
    """
    with named("--chip"):
        info = chip(packs, chip_name, on)
    if info.fraction != 1:
        refuse_mig_slice("--chip", chip_name, info.fraction, info.name, count_option)
    return info


def refuse_mig_slice(option: str, name: str, fraction: Any, gpu: str, count_option: str) -> NoReturn:
    """Refuse a MIG slice where whole chips are counted (what-if, reservations, shipments, ``paths --items``)."""
    # The quoted names stay close together: the dashboard shortens any quoted-looking run over 60 characters.
    raise PolicyError(f"{option}: {name!r} is a MIG slice ({fraction} of one GPU), not a chip: give the GPU, "
                      f"{gpu!r}, and the number of GPUs ({count_option}): chips are planned, installed and shipped "
                      "whole, and a MIG-partitioned GPU is one whole chip")


def close_reservation(s: Session, rid: int, status: str = "released", actor: str | None = None) -> Reservation:
    if status not in ("released", "installed"):
        raise PolicyError(f"status: {status!r} is not released or installed")
    # A larger id names no reservation (PostgreSQL refuses the query itself: "integer out of range").
    row = s.get(Reservation, rid) if 0 < rid <= MAX_ROW_ID else None
    if row is None:
        big = f" (too large for a reservation id, at most {MAX_ROW_ID})" if rid > MAX_ROW_ID else ""
        raise NotFound(f"reservation: #{shown_count(rid, grouped=False)} does not exist{big}; "
                       "see `veuctl reservations list`")
    if row.status != "active":
        raise Conflict(f"reservation: #{rid} is already {row.status} ({row.count} x {row.accelerator}, reserved by "
                       f"{row.created_by or '?'}); only an active reservation can be {status}")
    row.status, row.closed_at = status, utcnow()
    s.add(row)
    s.flush()
    record(s, actor=actor or current_actor(), action=f"reservation.{status}", subject=f"reservation:{rid}",
           payload={"status": status})
    return row


def reservation_dict(s: Session, r: Reservation) -> dict[str, Any]:
    a, site = s.get(VeuAuthorization, r.authorization_id), s.get(Site, r.site_id)
    own = s.get(Party, r.owner_id) if r.owner_id else None
    opr = s.get(Party, r.operator_id) if r.operator_id else None
    return {"id": r.id, "authorization": a.name if a else None, "site": site.name if site else None,
            "accelerator": r.accelerator, "count": r.count, "owner": own.name if own else None,
            "operator": opr.name if opr else None, "planned_for": r.planned_for.isoformat(),
            "expires_on": r.expires_on.isoformat() if r.expires_on else None,
            "expired": r.status == "active" and r.expires_on is not None and r.expires_on <= utc_today(),
            "status": r.status, "created_by": r.created_by, "note": r.note, "created_at": r.created_at.isoformat()}


def list_reservations(s: Session, authorization: str | None = None, status: str | None = "active") -> list[Reservation]:
    q = select(Reservation)
    if authorization:
        q = q.where(Reservation.authorization_id == get_authorization(s, authorization, "--authorization").id)
    if status:
        q = q.where(Reservation.status == status)
    return list(s.exec(q.order_by(Reservation.id)).all())


# --------------------------------------------------------------------------------------- shipments


def add_shipment(
    s: Session, packs: PackRegistry, *, day: date | str, consignee: str, destination: str, chip_name: str,
    count: float, via: str, reference: str = "", authorization: str | None = None, actor: str | None = None,
    value_usd: float | None = None,
) -> Shipment:
    """Record a shipment; one the authorization it names cannot cover is refused.

    ``value_usd``: the value of the items in US dollars, which a Data Center VEU's semi-annual report gives per
    shipment (None: not recorded).

    LPP: not to a Tier 3 destination nor to a consignee headquartered (or whose ultimate parent is) there
    (§ 740.29). AIA: only to entities located in, and headquartered (with their ultimate parent) in, Supp. 5(a)
    (§ 740.27(a)). UVEU/NVEU: the authorization used, never to a data center in Macau or D:5 (§ 748.15(b)(2))
    nor to an entity headquartered there (Supp. No. 10 to part 748 ¶4.a).
    """
    d = parse_date(day, "--date") if isinstance(day, str) else day
    if d > utc_today():
        # A shipment is recorded once made (as a filing or a grant): a date ahead (2999 for 2025) is a typo.
        raise PolicyError(f"--date: {d} is after today; record a shipment once it is made")
    via = _via(via)
    check_text("--reference", reference)  # a licence number the semi-annual report quotes
    _shipment_count(count)
    value = shipment_value(value_usd)
    with named("--consignee"):
        party = get_party(s, consignee)
    with named("--destination"):
        dest = country_code(destination)
    if via in ("licence", "other") and _licensed_before_the_tiers(packs, d):
        # § 742.6(b)(10)(iii)(B)(1) counts the TPP licensed to a destination "cumulatively beginning in 2025": a
        # licence shipped before the rule took effect (2025-01-13) counts toward the country allocation, so the
        # ledger records it. The route checks need the rule's tiers, and none of them is of a licence.
        auth_id = None
    else:
        auth_id = _check_route(s, packs, d, via, dest, party, authorization)
    with dated("--date"):
        info = _whole_chips(packs, chip_name, d, "--count")
    if via == "lpp":
        _check_lpp_room(s, packs, d, party, dest, info, count)
    row = Shipment(day=d, consignee_id=party.id, destination=dest, accelerator=info.id,  # type: ignore[arg-type]
                   count=float(count), tpp_each=float(info.tpp), eccn=info.eccn, via=via,
                   reference=reference, authorization_id=auth_id, value_usd=value)
    s.add(row)
    s.flush()
    record(s, actor=actor or current_actor(), action="shipment.create", subject=f"shipment:{row.id}",
           payload={"date": d.isoformat(), "consignee": party.name, "destination": dest, "chip": info.id,
                    "count": row.count, "tpp": row.count * row.tpp_each, "via": via, "reference": reference,
                    "authorization": authorization, "value_usd": value})
    return row


def _check_lpp_room(
    s: Session, packs: PackRegistry, d: date, party: Party, dest: str, info: ChipInfo, count: float,
) -> None:
    """Refuse an LPP shipment that takes its ultimate consignee's calendar year past § 740.29(a)'s limit.

    LPP authorizes "up to" the limit per calendar year to one ultimate consignee: beyond it the items are not
    shipped under LPP. Every LPP shipment of that year counts, those dated after this one too (a backdated entry
    must not put a later one over), as :func:`policies.caps.lpp_caps` counts them on the year's last day.
    """
    lock_for_transaction(s, LPP_LOCK_KEY)
    this = core.Shipment(None, d, party.name, dest, info.id, exact(count), info.tpp, info.eccn, "lpp")
    with dated("--date"):
        caps = core.lpp_caps(packs, party_refs(s, d), [*shipments_core(s), this], d, through=date(d.year, 12, 31))
    cap = next((c for c in caps if this in c.shipments), None)
    if cap is None or cap.ok:
        return
    before = cap.numerator - this.tpp
    fit = max(0, math.floor((cap.limit - before) / info.tpp)) if cap.limit is not None else 0
    uc = str(cap.scope.get("consignee"))
    whose = uc if uc == party.name else f"{uc} (the ultimate parent of {party.name}, § 740.29(h)(1))"
    raise PolicyError(
        f"--count: License Exception LPP authorizes up to {_num(cap.limit or Fraction(0))} TPP per calendar year to "
        f"one ultimate consignee ({cap.provisions[0].citation}); {whose} has {_num(before)} TPP under LPP in {d.year}, "
        f"so {_num(exact(count))} x {info.name} ({_num(this.tpp)} TPP) would take it to {_num(cap.numerator)}: at most "
        f"{fit:,} fit; ship the rest under a licence (--via licence)"
    )


def _licensed_before_the_tiers(packs: PackRegistry, d: date) -> bool:
    """Whether ``d`` is before the AI Diffusion tiers took effect but in the country allocation's counting period
    (``counts_from`` of the earliest ``tier2-country-allocation``, 2025-01-01)."""
    if packs.find("tier1-destinations", d) is not None:
        return False
    rows = packs.history("tier2-country-allocation")
    return bool(rows) and d >= date.fromisoformat(str(rows[0].values.get("counts_from", rows[0].effective_from)))


def _check_route(
    s: Session, packs: PackRegistry, d: date, via: str, dest: str, party: Party, authorization: str | None,
) -> int | None:
    """Refuse a shipment its route cannot cover (see :func:`add_shipment`); the id of the Data Center VEU used."""
    with dated("--date"):
        t = tier(packs, dest, d)
        eff = effective_tier(packs, party_refs(s, d), party.name, d)
    if via == "lpp" and t.tier == 3:
        raise PolicyError(f"--via: License Exception LPP is not available to {dest} ({t.basis})")
    if via == "lpp" and eff.tier == 3:
        raise PolicyError(f"--via: License Exception LPP is not available to {party.name}: {eff.basis}")
    if via == "aia" and packs.find("licence-exception-aia", d) is not None and (t.tier != 1 or eff.tier != 1):
        why = t.basis if t.tier != 1 else eff.basis
        raise PolicyError(f"--via: License Exception AIA covers entities located in, and headquartered (with their "
                          f"ultimate parent) in, Supp. 5(a) destinations only: {why}")
    if via not in ("uveu", "nveu"):
        return None
    if not authorization:
        raise PolicyError(f"--authorization: a shipment via {via.upper()} names the authorization used")
    a = get_authorization(s, authorization, "--authorization")
    if a.kind != via:
        raise PolicyError(f"--authorization: {authorization!r} is a {a.kind.upper()}, not a {via.upper()}")
    check_nveu_covers(a, dest, "--destination")
    if t.tier == 3:
        raise PolicyError(f"--destination: no Data Center VEU data center may be in {dest} ({t.basis})")
    if eff.tier == 3:
        why = ("Supp. No. 10 to part 748 ¶4.a: an entity headquartered in Macau or D:5" if eff.own.tier == 3 else
               "§ 744.23(a)(3): a licence is required where the ultimate parent is headquartered in Macau or D:5")
        raise PolicyError(f"--consignee: a Data Center VEU may not transfer chips to {party.name}: {eff.basis} "
                          f"({why})")
    return a.id


def _via(via: str) -> str:
    """How chips were shipped, normalized: one of :data:`SHIPMENT_VIAS`."""
    v = via.strip().lower()
    if v not in SHIPMENT_VIAS:
        raise PolicyError(f"--via: {v!r} is not one of {', '.join(SHIPMENT_VIAS)}")
    return v


def _shipment_count(count: float) -> None:
    """A shipment's item count: a finite whole number from one to :data:`MAX_CHIPS`."""
    if isinstance(count, bool) or not isinstance(count, int | float):
        raise PolicyError(f"--count: {count!r} is not a number of items")
    if not math.isfinite(count):
        raise PolicyError(f"--count: {count} is not a finite number of items")
    if not count >= 1:
        raise PolicyError("--count: a shipment has at least one item")
    if count > MAX_CHIPS:
        raise PolicyError(f"--count: {count:g} is more chips than any fleet holds; give at most {MAX_CHIPS:,} "
                          "in one shipment")
    if count != int(count):
        raise PolicyError(f"--count: {count:g} is not a whole number; a shipment counts whole items")


def shipment_value(value_usd: float | None, option: str = "--value-usd") -> float | None:
    """A shipment's value in US dollars as stored: None (not recorded), or a finite amount from 0 to
    :data:`MAX_VALUE_USD`."""
    if value_usd is None:
        return None
    if isinstance(value_usd, bool) or not isinstance(value_usd, int | float):
        raise PolicyError(f"{option}: {value_usd!r} is not an amount in US dollars")
    if not math.isfinite(value_usd):
        raise PolicyError(f"{option}: {value_usd} is not a finite amount in US dollars")
    if value_usd < 0:
        raise PolicyError(f"{option}: {value_usd:g} is negative; a shipment's value is 0 or more US dollars")
    if value_usd > MAX_VALUE_USD:
        raise PolicyError(f"{option}: {value_usd:g} US dollars is more than any shipment is worth; give at most "
                          f"{MAX_VALUE_USD:,.0f}")
    return float(value_usd)


def shipment_dict(s: Session, packs: PackRegistry, x: Shipment) -> dict[str, Any]:
    party = s.get(Party, x.consignee_id)
    a = s.get(VeuAuthorization, x.authorization_id) if x.authorization_id else None
    cs = core.Shipment(x.id, x.day, party.name if party else "", x.destination, x.accelerator, exact(x.count),
                       exact(x.tpp_each), x.eccn, x.via, x.reference)
    return {"id": x.id, "date": x.day.isoformat(), "consignee": cs.consignee, "destination": x.destination,
            "accelerator": x.accelerator, "count": chip_count(x.count), "tpp_each": x.tpp_each, "tpp": float(cs.tpp),
            "eccn": x.eccn, "via": x.via, "reference": x.reference, "authorization": a.name if a else None,
            "value_usd": x.value_usd, "consignee_address": party.address if party else "",
            "lpp_notice_required": core.lpp_notice_required(packs, cs)}


def list_shipments(
    s: Session, consignee: str | None = None, destination: str | None = None, via: str | None = None,
    limit: int = 100, offset: int = 0,
) -> tuple[list[Shipment], int]:
    if not 1 <= limit <= MAX_PAGE:
        raise PolicyError(f"--limit: give 1-{MAX_PAGE} shipments per page")
    if offset < 0:
        raise PolicyError("--offset: must be 0 or more")
    via = _via(via) if via else None
    q = select(Shipment)
    if consignee:
        with named("--consignee"):
            q = q.where(Shipment.consignee_id == get_party(s, consignee).id)
    if destination:
        with named("--destination"):
            q = q.where(Shipment.destination == country_code(destination))
    if via:
        q = q.where(Shipment.via == via)
    total = s.exec(select(func.count()).select_from(q.subquery())).one()
    rows = list(s.exec(q.order_by(col(Shipment.day).desc(), col(Shipment.id).desc()).offset(offset).limit(limit)).all())
    return rows, int(total)


# ------------------------------------------------------------------------------------ explanations


def page(items: list[Any], total: int, limit: int, offset: int) -> dict[str, Any]:
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def holdings_page(
    s: Session, packs: PackRegistry, as_of: date, *, site: str | None = None, country: str | None = None,
    accelerator: str | None = None, owners: list[int] | None = None, limit: int = 100, offset: int = 0,
    owners_or_operators: list[int] | None = None, countries: list[str] | None = None, counted_only: bool = False,
    operators: list[int] | None = None,
) -> dict[str, Any]:
    """Individual holdings in force on ``as_of`` with their TPP (the bottom of every explanation).

    ``counted_only`` keeps the chips that count toward allocations (3A090.a class), as a cap does.
    """
    site_id = _site(s, site).id if site else None
    at = instant(as_of)
    accelerators = None
    if counted_only:
        counted = core.counted_eccns(packs, as_of)
        # The history's chips on that day too: a holding that changed chip (a resized instance) held another then.
        present = {*s.execute(sa_select(Holding.accelerator).distinct()).scalars().all(),
                   *s.execute(sa_select(col(HoldingPeriod.accelerator)).where(_period_filter(at)).distinct()).scalars()}
        accelerators = sorted(a for a in present if core.counts(chip(packs, a, as_of).eccn, counted))
    rows = holding_rows(s, at, site_id=site_id, country=country.upper() if country else None,
                        owner_ids=owners, accelerator=accelerator, owner_or_operator_ids=owners_or_operators,
                        countries=countries, accelerators=accelerators, operator_ids=operators)
    sites_, names = _names(s)
    items = []
    for hid, sid, acc, own, opr, cnt in rows[offset:offset + limit]:
        info = chip(packs, acc, as_of)
        st = sites_[sid]
        items.append({"id": hid, "site": st.name, "country": st.country, "accelerator": info.id,
                      "chip_name": info.name, "eccn": info.eccn, "count": chip_count(cnt),
                      "tpp": float(exact(cnt) * info.fraction * info.tpp),
                      "owner": names.get(own) if own else None, "operator": names.get(opr) if opr else None})
    return page(items, len(rows), limit, offset)


def explain(
    s: Session, packs: PackRegistry, name: str, cap_id: str, as_of: date, limit: int, offset: int,
    part: str = "numerator",
) -> dict[str, Any]:
    """One cap with the holdings in its numerator (or, ``part="all"``, its denominator), page by page."""
    caps = allocation_caps(s, packs, as_of) if name == "allocations" else caps_for(s, packs, name, as_of)
    cap = next((c for c in caps if c.id == cap_id), None)
    if cap is None:
        show = "veuctl caps show" if name == "allocations" else f"veuctl caps show {cli_word(name)}"
        raise NotFound(f"cap: {cap_id!r} is not among {name!r}'s caps on {as_of}; see `{show}`")
    d = cap_to_dict(cap, max_contributors=500)
    scope = cap.scope
    group = scope.get("group")
    owners = operators = None
    if group and scope.get("view") in ("owned", "operated"):
        ids = [int(p.id) for p in s.exec(select(Party).where(col(Party.name).in_(list(group)))).all() if p.id]
        owners, operators = (ids, None) if scope["view"] == "owned" else (None, ids)
    holder_ids = None
    if scope.get("holder"):  # NVEU: what the holder owns or operates in its country
        holder_ids = [int(p.id) for p in s.exec(select(Party).where(Party.name == scope["holder"])).all() if p.id]
    # An NVEU's caps are of one country (its installed base, or all it holds when its holder is not eligible).
    country = scope.get("country") if scope.get("area") in ("country", "held") else None
    tiers_ = {str(k): int(v) for k, v in dict(scope.get("tiers", {})).items()}
    area = scope.get("area")
    countries = None
    if part == "numerator" and cap.kind == "share":
        if area == "outside-tier1":
            countries = [cc for cc, t in tiers_.items() if t != 1]
        elif area == "outside-country":
            inside = {scope.get("country"), *scope.get("same_as", ())}  # a US territory is the US (§ 772.1)
            countries = [cc for cc in tiers_ if cc not in inside]
    if part == "numerator" and area == "tier3":
        countries = [cc for cc, t in tiers_.items() if t == 3]
    if part == "all" and cap.kind == "share":
        country = None
    d["part"] = part
    if cap.shipments or scope.get("area") == "consignee":
        d["holdings"] = page([], 0, limit, offset)
    else:
        d["holdings"] = holdings_page(s, packs, as_of, country=country, owners=owners, limit=limit, offset=offset,
                                      owners_or_operators=holder_ids, countries=countries, counted_only=True,
                                      operators=operators)
    d["as_of"] = as_of.isoformat()
    d["authorization"] = name
    return d


# ------------------------------------------------------------------------------------ time series


def installed_series(s: Session, packs: PackRegistry, days: Sequence[date]) -> list[dict[str, Any]]:
    """Installed 3A090.a-class TPP by tier on each of ``days`` (the chart of installed TPP over time).

    One scan of the history for all dates (a SUM(CASE ...) column per date), not one query per date.
    """
    days = [d for d in days if packs.find("tier1-destinations", d) is not None]  # no tiers, nothing to chart
    if not days:
        return []
    ats = [instant(d) for d in days]
    sums = _groups_at(s, ats)
    sites, _ = _names(s)
    out = []
    for i, d in enumerate(days):
        counted = core.counted_eccns(packs, d)
        by_tier: dict[str, float] = {}
        total = Fraction(0)
        for (sid, acc), counts_ in sums.items():
            info = chip(packs, acc, d)
            if not counts_[i] or not core.counts(info.eccn, counted):
                continue
            tpp = exact(counts_[i]) * info.fraction * info.tpp
            key = str(core._tier_of(packs, sites[sid].country, d))
            by_tier[key] = by_tier.get(key, 0.0) + float(tpp)
            total += tpp
        out.append({"date": d.isoformat(), "total_tpp": float(total), "by_tier": by_tier})
    return out


def _groups_at(s: Session, ats: Sequence[datetime]) -> dict[tuple[int, str], list[float]]:
    """Installed count per (site, chip) at each instant, from one scan of the history and of the holdings."""
    hp, h = HoldingPeriod, Holding
    out: dict[tuple[int, str], list[float]] = {}
    sources: list[tuple[Any, Any, Any, Any]] = [(hp, hp.valid_from, hp.valid_to, None)]
    if not _all_have_history(s):
        sources.append((h, h.first_seen, h.retired_at, ~exists().where(HoldingPeriod.holding_id == Holding.id)))
    for t, lo, hi, extra in sources:
        cols = [
            func.sum(case((and_(col(lo) <= at, or_(col(hi).is_(None), col(hi) > at)), t.count), else_=0.0))
            for at in ats
        ]
        q = sa_select(t.site_id, t.accelerator, *cols).where(col(lo) <= max(ats)).group_by(t.site_id, t.accelerator)
        if extra is not None:
            q = q.where(extra)
        for row in s.execute(q).all():
            cur = out.setdefault((int(row[0]), str(row[1])), [0.0] * len(ats))
            for i, v in enumerate(row[2:]):
                cur[i] += float(v or 0.0)
    return out


def share_digits_apart(value: float, limit: float, least: int, most: int) -> int | None:
    """The fewest decimals of a percentage, from ``least`` to ``most``, at which a share cap's ``value`` and its
    ``limit`` print apart (None when none do): 7.0000462% at four decimals printed as 7.0000%, the limit itself,
    beside OVER. The CLI and the dashboard print shares so."""
    for digits in range(least, most + 1):
        if f"{value * 100:.{digits}f}" != f"{limit * 100:.{digits}f}":
            return digits
    return None
