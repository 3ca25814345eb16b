"""Export kind ``transfers``: chips moved between countries or sites or passed to another owner, new sites, and
attrition (holdings retired, chips lost from a holding whose count fell) in a period.

Built from the holdings history (``holding_period`` versions; ``first_seen``/``retired_at`` for holdings
without one) and site countries. A retirement is read from the history, not from the holding's current row: a
holding seen again after it was retired no longer carries ``retired_at``, but its retirement stays attrition in
the period it happened and its return is reported in the period it came back.

Supp. 10 ¶5 requires 60 days' advance notice of inter-country transfers by a UVEU and of data centers in countries
not in its earlier notifications, and § 748.15(a)(2)(ii)(A) 180 days' notice of a new data-center location; the
notice periods come from the ``veu-notices`` provision. ¶10 asks for attrition (loss, damage, failure, relocation,
resale).

A row's ``notice_due_by`` (and a new site's ``country_notice_due_by``) is the due date of the notice `veuctl
deadlines list` owes for it (read from the same computation, ``agent.obligations.deadline_list``): none for a move or
first use before the notices' compliance date (2025-05-15), none for chips no UVEU holder owns or operates, and the
period in force on the day of the move, not on the report's end date. Tiers too are those of the day of the move or
of the site's first installation (none before the AI Diffusion rule took effect, 2025-01-13). Transfers are listed
by date, then holding.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, Subquery, and_, exists, func, or_, select, union
from sqlmodel import Session

from agent.exports.base import Report, Table, dated_tier_lookup, day_after, day_start, provision_dict, stream
from agent.store.tables.core import Holding, Party, Site, as_utc
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

TRANSFER_COLUMNS = ["date", "holding_id", "source", "external_id", "accelerator", "count", "from_site",
                    "from_country", "from_tier", "to_site", "to_country", "to_tier", "kind", "notice_days",
                    "notice_due_by", "from_owner", "to_owner"]
SITE_COLUMNS = ["site", "country", "tier", "provider", "region", "first_installed", "new_country",
                "notice_days", "notice_due_by", "country_notice_days", "country_notice_due_by"]
ATTRITION_COLUMNS = ["retired_at", "holding_id", "source", "external_id", "serial", "accelerator", "count",
                     "site", "country", "kind"]
RETURNED_COLUMNS = ["returned_at", "holding_id", "source", "external_id", "serial", "accelerator", "count", "site",
                    "country"]


def _day(x: datetime) -> date:
    return x.date()


def _notice(packs: PackRegistry, as_of: date) -> tuple[int | None, int | None, list[dict[str, Any]]]:
    prov = packs.find("veu-notices", as_of)
    if prov is None:
        return None, None, []
    return (prov.values.get("inter_country_transfer_notice_days"), prov.values.get("uveu_new_datacenter_notice_days"),
            [provision_dict(prov)])


_NOTICE_KINDS = ("inter-country-transfer-notice", "uveu-new-datacenter-notice", "uveu-new-country-notice")

# A deadline for a move read from the holdings history ends with the move's day and the holding:
# ``transfer-notice:AUTH:DE-AE:2026-03-02#h12`` (``policies.obligations.deadlines``, ``agent.obligations``).
_HISTORY_TRANSFER = re.compile(r":(?P<from>[A-Z]{2})-(?P<to>[A-Z]{2}):(?P<on>\d{4}-\d{2}-\d{2})#h(?P<hid>\d+)$")


Owed = tuple[date, int | None]  # a notice's due date and its period in days


@dataclass
class _SiteNotices:
    """The new-location notices the deadlines list owes, as a new site's row shows them.

    ``sites``: (country, site) -> the 180-day notice (§ 748.15(a)(2)(ii)(A)), the earliest due where several UVEUs
    first used the site; ``first_uses``: (country, site) -> the days UVEUs first used it (the days its notices are
    counted back from); ``countries``: (country, first use) -> the 60-day notice of the first data center in a
    country no earlier notification named (Supp. 10 ¶5), owed once per UVEU and country, counted back from the day of
    that first use. A site the list knows only through a planned new location in its country (`deadlines event
    --kind new-location`, whose --site is free text) is under (country, "")."""

    sites: dict[tuple[str, str], Owed] = field(default_factory=dict)
    first_uses: dict[tuple[str, str], set[date]] = field(default_factory=dict)
    countries: dict[tuple[str, date], Owed] = field(default_factory=dict)

    def site(self, country: str, name: str) -> tuple[Owed | None, set[date]]:
        key = (country, name) if (country, name) in self.sites else (country, "")
        return self.sites.get(key), self.first_uses.get(key, set())


def _owed(s: Session, packs: PackRegistry, end: date) -> tuple[
        dict[tuple[int, date, str, str], date], _SiteNotices, list[Any]]:
    """The notices the deadlines list owes: inter-country transfers by (holding id, day, from, to), and new UVEU
    data centers and new countries (:class:`_SiteNotices`), each with its due date and, for a site or country, its
    notice period (the one in force on the day of the UVEU's first use of it); and the provisions those deadlines
    applied.

    Read from ``deadline_list`` so the export and `veuctl deadlines list` cannot disagree: which moves owe a notice
    (a UVEU holder's, on or after the compliance date) and the notice period in force on the day of the move."""
    from agent.obligations import deadline_list

    rem = packs.find("obligation-reminders", end)
    if rem is None:
        return {}, _SiteNotices(), []  # no deadlines on that day (an operator pack without reminder settings)
    # The list looks ahead horizon_days from its date; the notices of moves up to `end` do not depend on it, so a
    # --to near the calendar's end (9998-12-31) is read as of the last day the horizon still fits.
    on = min(end, date.max - timedelta(days=int(rem.value("horizon_days")) + 1))
    moves: dict[tuple[int, date, str, str], date] = {}
    notices = _SiteNotices()
    sites = notices.sites
    countries: dict[str, tuple[date, int | None, date]] = {}  # a planned new location names its own site text
    applied: dict[tuple[str, str, str], Any] = {}
    for d in deadline_list(s, packs, on):
        if d.kind in _NOTICE_KINDS and d.provision is not None:
            applied.setdefault((d.provision.id, d.provision.pack_id, d.provision.pack_version), d.provision)
        if d.kind == "inter-country-transfer-notice":
            m = _HISTORY_TRANSFER.search(d.key)
            if m is not None:
                k = (int(m["hid"]), date.fromisoformat(m["on"]), m["from"], m["to"])
                moves[k] = min(d.due, moves.get(k, d.due))
        elif d.kind == "uveu-new-datacenter-notice":
            prefix = f"uveu-new-location:{d.subject}:"
            if d.key.startswith(prefix):
                country, _, site = d.key[len(prefix):].partition(":")
                days = d.provision.values.get("uveu_new_datacenter_notice_days") if d.provision else None
                first_use = d.due + timedelta(days=int(days or 0))
                if (country, site) not in sites or d.due < sites[(country, site)][0]:
                    sites[(country, site)] = (d.due, days)
                notices.first_uses.setdefault((country, site), set()).add(first_use)
                if country not in countries or d.due < countries[country][0]:
                    countries[country] = (d.due, days, first_use)
        elif d.kind == "uveu-new-country-notice":
            prefix = f"uveu-new-country:{d.subject}:"
            if d.key.startswith(prefix) and d.provision is not None:
                country = d.key[len(prefix):]
                days = d.provision.values.get("inter_country_transfer_notice_days")
                k2 = (country, d.due + timedelta(days=int(days or 0)))  # counted back from that first use
                if k2 not in notices.countries or d.due < notices.countries[k2][0]:
                    notices.countries[k2] = (d.due, days)
    # A site the list knows only through a planned new location in its country (`deadlines event --kind
    # new-location`, whose --site is free text): that country's notice.
    for country, (due, days, first_use) in countries.items():
        if (country, "") not in sites:
            sites[(country, "")] = (due, days)
            notices.first_uses[(country, "")] = {first_use}
    return moves, notices, list(applied.values())


def _tables() -> tuple[Any, Any, Any]:
    return HoldingPeriod.__table__, Holding.__table__, Site.__table__  # type: ignore[attr-defined]


def _versions_at(when: Any, lo: datetime, hi: datetime) -> Select[Any]:
    """History versions whose ``when`` (their start or end) falls in the period, as attrition and returned rows:
    (when, holding id, source, external id, serial, accelerator, count, site, country), in time order."""
    hp, h, site = _tables()
    return (select(when, hp.c.holding_id, h.c.source, h.c.external_id, h.c.serial, hp.c.accelerator, hp.c.count,
                   site.c.name, site.c.country)
            .join(h, h.c.id == hp.c.holding_id).join(site, site.c.id == hp.c.site_id)
            .where(when >= lo, when < hi).order_by(when, hp.c.holding_id))


def _retired_versions(lo: datetime, hi: datetime) -> Select[Any]:
    """Versions that ended in the period with no version of the holding starting as they ended: the holding
    was retired then (a change of site, count or owner starts its next version at the same instant)."""
    hp = _tables()[0]
    nxt = hp.alias("nxt")
    return _versions_at(hp.c.valid_to, lo, hi).where(
        ~exists().where(nxt.c.holding_id == hp.c.holding_id, nxt.c.valid_from == hp.c.valid_to))


def _retired_unversioned(lo: datetime, hi: datetime) -> Select[Any]:
    """Holdings retired in the period whose history does not record it (written without one): their own row."""
    hp, h, site = _tables()
    return (select(h.c.retired_at, h.c.id, h.c.source, h.c.external_id, h.c.serial, h.c.accelerator, h.c.count,
                   site.c.name, site.c.country)
            .join(site, site.c.id == h.c.site_id)
            .where(h.c.retired_at >= lo, h.c.retired_at < hi,
                   ~exists().where(hp.c.holding_id == h.c.id, hp.c.valid_to == h.c.retired_at))
            .order_by(h.c.retired_at, h.c.id))


def _returned_versions(lo: datetime, hi: datetime) -> Select[Any]:
    """Versions starting in the period after a gap in the holding's history: it was retired and seen again."""
    hp = _tables()[0]
    before, adjoining = hp.alias("before"), hp.alias("adjoining")
    return _versions_at(hp.c.valid_from, lo, hi).where(
        exists().where(before.c.holding_id == hp.c.holding_id, before.c.valid_to < hp.c.valid_from),
        ~exists().where(adjoining.c.holding_id == hp.c.holding_id, adjoining.c.valid_to == hp.c.valid_from))


def _holdings_in(s: Session, *queries: Select[Any]) -> int:
    """How many distinct holdings these rows (holding id second) are about."""
    ids = union(*(q.with_only_columns(q.selected_columns[1]).order_by(None) for q in queries)).subquery()
    return int(s.execute(select(func.count()).select_from(ids)).scalar_one())


def _with_previous(lo: datetime, hi: datetime) -> Subquery:
    """The versions of each holding with one starting in the period, up to the period's end, each beside the
    holding's version before it (LAG in time order): its site, owner, count and end (NULL for the first).

    The database pairs them: every version of such holdings read into Python, with its dates parsed, took most of
    `veuctl export transfers` on a large fleet."""
    hp = _tables()[0]
    moved = select(hp.c.holding_id).where(hp.c.valid_from >= lo, hp.c.valid_from < hi)

    def before(col: Any, name: str) -> Any:
        return func.lag(col, type_=col.type).over(partition_by=hp.c.holding_id,
                                                   order_by=(hp.c.valid_from, hp.c.id)).label(name)

    return (select(hp.c.id, hp.c.holding_id, hp.c.site_id, hp.c.accelerator, hp.c.count, hp.c.owner_id,
                   hp.c.valid_from, before(hp.c.site_id, "prev_site"), before(hp.c.owner_id, "prev_owner"),
                   before(hp.c.count, "prev_count"), before(hp.c.valid_to, "prev_until"))
            .where(hp.c.holding_id.in_(moved), hp.c.valid_from < hi).subquery("v"))


def _moves(lo: datetime, hi: datetime) -> Select[Any]:
    """Versions starting in the period at another site than the holding's version before it, or with another
    owner (both recorded): (holding id, valid_from, source, external id, accelerator, count, from site, to site,
    from owner, to owner), in time order (versions starting at one instant by holding, then id)."""
    h = _tables()[1]
    v = _with_previous(lo, hi)
    resold = and_(v.c.prev_owner.is_not(None), v.c.owner_id.is_not(None), v.c.prev_owner != v.c.owner_id)
    return (select(v.c.holding_id, v.c.valid_from, h.c.source, h.c.external_id, v.c.accelerator, v.c.count,
                   v.c.prev_site, v.c.site_id, v.c.prev_owner, v.c.owner_id)
            .join(h, h.c.id == v.c.holding_id)
            .where(v.c.valid_from >= lo, v.c.prev_site.is_not(None), or_(v.c.prev_site != v.c.site_id, resold))
            .order_by(v.c.valid_from, v.c.holding_id, v.c.id))


def _reductions(lo: datetime, hi: datetime) -> Select[Any]:
    """Versions starting in the period as the holding's version before them ended, with fewer chips:
    (valid_from, holding id, source, external id, serial, accelerator, count before, count, site before), in
    time order."""
    h = _tables()[1]
    v = _with_previous(lo, hi)
    return (select(v.c.valid_from, v.c.holding_id, h.c.source, h.c.external_id, h.c.serial, v.c.accelerator,
                   v.c.prev_count, v.c.count, v.c.prev_site)
            .join(h, h.c.id == v.c.holding_id)
            .where(v.c.valid_from >= lo, v.c.prev_until == v.c.valid_from, v.c.count < v.c.prev_count)
            .order_by(v.c.valid_from, v.c.holding_id, v.c.id))


def build(s: Session, packs: PackRegistry, start: date, end: date, **_: Any) -> Report:
    lo, hi = day_start(start), day_after(end)
    # A move or new site is listed at the tiers of the day it happened, as a shipment at its destination's tier on
    # its date: Cambodia, in D:5 until 2026-02-03, is Tier 3 for a move there in January 2026, whatever --to is.
    tier_on = dated_tier_lookup(packs)
    transfer_days, site_days, provs = _notice(packs, end)
    owed_moves, owed_sites, applied = _owed(s, packs, end)
    provs += [pd for pd in map(provision_dict, applied) if pd not in provs]
    hp, h, site = _tables()
    sites = {r[0]: r for r in s.execute(select(site.c.id, site.c.name, site.c.country, site.c.provider,
                                                 site.c.region)).all()}
    pa = Party.__table__  # type: ignore[attr-defined]
    owners: dict[int | None, str] = {r[0]: r[1] for r in s.execute(select(pa.c.id, pa.c.name))}

    def transfers() -> Iterator[Sequence[Any]]:
        """Each version in the period that put a holding at another site or with another owner (Supp. 10 ¶10(a):
        chips transferred "to relevant destinations and entities"; a resale in place changes only the owner). An
        owner recorded for the first time, or cleared, is a change of the record, not of the chips' owner: a
        fleet whose collectors were first given owners would otherwise read as resold whole.

        In date order, then by holding (a holding's moves of one day in time order): the database hands them back in
        time order, and one day's moves at a time are put in holding order, so memory is bounded by a day's moves."""
        by_day = itertools.groupby(stream(s, _moves(lo, hi)), key=lambda r: _day(r[1]))
        for day, moves in by_day:
            for hid, _since, source, ext, acc, count, from_sid, to_sid, from_owner, to_owner in sorted(
                    moves, key=lambda r: r[0]):  # stable: one holding's moves stay in time order
                a, b = sites[from_sid], sites[to_sid]
                inter = a[2] != b[2]
                due = owed_moves.get((hid, day, a[2], b[2])) if inter else None
                kind = "inter-country" if inter else "in-country" if from_sid != to_sid else "change-of-owner"
                yield (day, hid, source, ext, acc, count, a[1], a[2], tier_on(a[2], day), b[1], b[2],
                       tier_on(b[2], day), kind, (day - due).days if due else None, due,
                       owners.get(from_owner), owners.get(to_owner))

    def reductions() -> Iterator[Sequence[Any]]:
        """Chips lost from a holding that stays in service: a version in the period with a lower count than the
        one before it (¶10(b) attrition: loss, damage, failure, ...), dated when the lower count began, at the site
        the chips were at. A count that rises again (repaired, replaced) is not subtracted, nor is one lower after
        a retirement: the retirement took every chip, and the return is reported with the count that came back."""
        for since, hid, source, ext, serial, acc, before, count, sid in stream(s, _reductions(lo, hi)):
            site_row = sites[sid]
            yield (as_utc(since), hid, source, ext, serial, acc, before - count, site_row[1], site_row[2],
                   "count-reduced")

    def attrition() -> Iterator[Sequence[Any]]:
        whole = (((as_utc(r[0]), *r[1:], "retired") for r in stream(s, q)) for q in retired)
        yield from heapq.merge(*whole, reduced, key=lambda r: r[0])

    def returned() -> Iterator[Sequence[Any]]:
        return ((as_utc(r[0]), *r[1:]) for r in stream(s, returns))

    first_hp = dict(s.execute(select(hp.c.site_id, func.min(hp.c.valid_from)).group_by(hp.c.site_id)).all())
    # A holding with a history arrived at each site when its version there began: its first_seen is when it
    # was received anywhere and its site_id only the latest, so a chip moved to a new site would date that
    # site from the chip's receipt elsewhere. Only holdings without a history count from first_seen.
    no_history = ~exists().where(hp.c.holding_id == h.c.id)
    first_h = dict(s.execute(select(h.c.site_id, func.min(h.c.first_seen)).where(no_history)
                             .group_by(h.c.site_id)).all())
    first: dict[int, datetime] = {}
    for sid in set(first_hp) | set(first_h):
        first[sid] = min(x for x in (first_hp.get(sid), first_h.get(sid)) if x is not None)
    country_first: dict[str, datetime] = {}
    for sid, t in first.items():
        c = sites[sid][2]
        country_first[c] = min(t, country_first.get(c, t))
    new_sites = []
    notified: set[tuple[str, date]] = set()
    for sid, t in sorted(first.items(), key=lambda kv: (kv[1], kv[0])):
        if lo <= t < hi:
            _, name, c, provider, region = sites[sid]
            # The deadline is counted from a UVEU's first use of the site, which may be after its first installation.
            owed, first_uses = owed_sites.site(c, name)
            due, days = owed or (None, None)
            # ¶5's notice of a new country is owed once, for the data center a UVEU first used there: on the row of
            # the site whose first use it is counted from, blank on every other site in that country.
            country_owed = sorted(((owed_sites.countries[(c, u)], u) for u in first_uses
                                   if (c, u) in owed_sites.countries and (c, u) not in notified),
                                  key=lambda x: (x[0][0], x[1]))  # the earliest due
            c_due, c_days = country_owed[0][0] if country_owed else (None, None)
            if country_owed:
                notified.add((c, country_owed[0][1]))
            new_sites.append((name, c, tier_on(c, _day(t)), provider, region, _day(t), country_first[c] == t, days,
                              due, c_days, c_due))

    retired = (_retired_versions(lo, hi), _retired_unversioned(lo, hi))
    returns = _returned_versions(lo, hi)
    n_transfers, n_owner = 0, 0
    for r in transfers():
        n_transfers += r[12] != "change-of-owner"
        n_owner += r[12] == "change-of-owner"
    reduced = list(reductions())  # few: read once, for the summary and every format
    n_reduced = len({r[1] for r in reduced})
    n_retired, n_returned = _holdings_in(s, *retired), _holdings_in(s, returns)
    report = Report(
        kind="transfers", title="Transfers between countries, new sites and attrition", start=start, end=end,
        as_of=end,
        summary={"transfers (site changes)": n_transfers, "changes of owner": n_owner, "new sites": len(new_sites),
                 "new countries": sum(1 for r in new_sites if r[6]),
                 "new-country notices owed": sum(1 for r in new_sites if r[10] is not None),
                 "holdings retired": int(n_retired),
                 "holdings with a reduced count": n_reduced, "holdings returned to service": n_returned,
                 "inter-country transfer notice (days)": transfer_days,
                 "new data-center notice (days)": site_days},
        tables=[
            Table("transfers", "Holdings that changed site or owner", TRANSFER_COLUMNS, transfers,
                  pdf_columns=["date", "holding_id", "accelerator", "count", "from_site", "from_country",
                               "to_site", "to_country", "kind", "notice_due_by", "from_owner", "to_owner"],
                  note="In date order, then by holding. from_tier, to_tier: the countries' tiers on the date of "
                       "the move (blank before 2025-01-13). "
                       "notice_due_by: the due date `veuctl deadlines list` gives the inter-country transfer "
                       "notice (Supp. 10 ¶5: a UVEU holder's chips, moved on or after the compliance date, the "
                       "transfer date minus the notice period in force that day, notice_days); blank where none is "
                       "owed. "
                       "In-country transfers are allowed only to a location authorized for the same VEU "
                       "(§ 748.15(d)(2)(iii)). change-of-owner: the chips stayed at the site and passed to "
                       "another entity (to_owner)."),
            Table("new_sites", "Sites first installed in the period", SITE_COLUMNS, lambda: iter(new_sites),
                  pdf_columns=["site", "country", "tier", "first_installed", "new_country", "notice_days",
                               "notice_due_by", "country_notice_days", "country_notice_due_by"],
                  note="tier: the country's tier on first_installed (blank before 2025-01-13). new_country: the "
                       "first installation in that country; notice_due_by: the due date `veuctl deadlines list` "
                       "gives the new UVEU data-center notice (§ 748.15(a)(2)(ii)(A): a location not in the UVEU's "
                       "application, from its first use on or after the compliance date, minus notice_days); "
                       "country_notice_due_by: the due date it gives the notice of a data center in a country not in "
                       "the UVEU's earlier notifications (Supp. 10 ¶5, minus country_notice_days), on the row of the "
                       "country's first such site only; blank where none is owed."),
            Table("attrition", "Chips that left the fleet in the period (loss, failure, relocation, resale)",
                  ATTRITION_COLUMNS, attrition,
                  pdf_columns=["retired_at", "holding_id", "source", "external_id", "accelerator", "count",
                               "site", "country", "kind"],
                  note="kind retired: the whole holding, count chips; count-reduced: the holding stayed in service "
                       "with count fewer chips from retired_at on. A retired holding seen again stays retired here "
                       "in the period it was retired; its return is in the returned table."),
            Table("returned", "Retired holdings seen again in the period (back in service)", RETURNED_COLUMNS,
                  returned,
                  note="count chips back in service from returned_at on, at site; the retirement before it is an "
                       "attrition row of the period it happened in."),
        ],
        provisions=provs,
    )
    report.notes.append("Transfers are read from the versioned holdings history; a holding edited directly "
                        "(without history) shows no site change.")
    for pd in provs:
        if not pd["confirmed"]:
            report.notes.append(f"UNCONFIRMED: {pd['id']} ({pd['citation']}): {pd['unconfirmed_note'].strip()}")
    return report
