"""Export kind ``transfers``: chips moved between countries or sites, new sites, and attrition in a period.

Built from the holdings history (``holding_period`` versions; ``first_seen``/``retired_at``) and site
countries. Supp. 10 ¶5 requires 60 days' advance notice of inter-country transfers by a UVEU, and
§ 748.15(a)(2)(ii)(A) 180 days' notice of a new data-center location; the notice periods come from the
``veu-notices`` provision. ¶10 asks for attrition (loss, damage, failure, relocation, resale).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlmodel import Session

from agent.exports.base import Report, Table, day_after, day_start, provision_dict, stream, tier_lookup
from agent.store.tables.core import Holding, Site
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

TRANSFER_COLUMNS = ["date", "holding_id", "source", "external_id", "accelerator", "count", "from_site",
                    "from_country", "from_tier", "to_site", "to_country", "to_tier", "kind", "notice_days",
                    "notice_due_by"]
SITE_COLUMNS = ["site", "country", "tier", "provider", "region", "first_installed", "new_country",
                "notice_days", "notice_due_by"]
ATTRITION_COLUMNS = ["retired_at", "holding_id", "source", "external_id", "serial", "accelerator", "count",
                     "site", "country"]


def _day(x: datetime) -> date:
    return x.date()


def _notice(packs: PackRegistry, as_of: date) -> tuple[int | None, int | None, list[dict[str, Any]]]:
    prov = packs.find("veu-notices", as_of)
    if prov is None:
        return None, None, []
    return (prov.values.get("inter_country_transfer_notice_days"), prov.values.get("uveu_new_datacenter_notice_days"),
            [provision_dict(prov)])


def build(s: Session, packs: PackRegistry, start: date, end: date, **_: Any) -> Report:
    lo, hi = day_start(start), day_after(end)
    tier_of = tier_lookup(packs, end)
    transfer_days, site_days, provs = _notice(packs, end)
    hp, h, site = HoldingPeriod.__table__, Holding.__table__, Site.__table__  # type: ignore[attr-defined]
    sites = {r[0]: r for r in s.execute(select(site.c.id, site.c.name, site.c.country, site.c.provider,
                                                 site.c.region)).all()}
    # Only holdings with a version starting in the period can have moved in it.
    moved = select(hp.c.holding_id).where(hp.c.valid_from >= lo, hp.c.valid_from < hi)
    stmt = (select(hp.c.holding_id, hp.c.site_id, hp.c.accelerator, hp.c.count, hp.c.valid_from, h.c.source,
                   h.c.external_id)
            .join(h, h.c.id == hp.c.holding_id).where(hp.c.holding_id.in_(moved))
            .order_by(hp.c.holding_id, hp.c.valid_from, hp.c.id))

    def transfers() -> Iterator[Sequence[Any]]:
        prev: tuple[Any, ...] | None = None
        for row in stream(s, stmt):
            hid, sid, acc, count, since, source, ext = row
            if prev is not None and prev[0] == hid and prev[1] != sid and lo <= since < hi:
                a, b = sites[prev[1]], sites[sid]
                inter = a[2] != b[2]
                days = transfer_days if inter else None
                yield (_day(since), hid, source, ext, acc, count, a[1], a[2], tier_of(a[2]), b[1], b[2],
                       tier_of(b[2]), "inter-country" if inter else "in-country", days,
                       (_day(since) - timedelta(days=int(days))) if days else None)
            prev = (hid, sid)

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
    for sid, t in sorted(first.items(), key=lambda kv: kv[1]):
        if lo <= t < hi:
            _, name, c, provider, region = sites[sid]
            new_sites.append((name, c, tier_of(c), provider, region, _day(t), country_first[c] == t, site_days,
                              (_day(t) - timedelta(days=int(site_days))) if site_days else None))

    retired = (select(h.c.retired_at, h.c.id, h.c.source, h.c.external_id, h.c.serial, h.c.accelerator,
                      h.c.count, site.c.name, site.c.country)
               .join(site, site.c.id == h.c.site_id)
               .where(h.c.retired_at >= lo, h.c.retired_at < hi).order_by(h.c.retired_at, h.c.id))
    n_transfers = sum(1 for _ in transfers())
    n_retired = s.execute(select(func.count()).select_from(h).where(h.c.retired_at >= lo,
                                                                    h.c.retired_at < hi)).scalar() or 0
    report = Report(
        kind="transfers", title="Transfers between countries, new sites and attrition", start=start, end=end,
        as_of=end,
        summary={"transfers (site changes)": n_transfers, "new sites": len(new_sites),
                 "new countries": sum(1 for r in new_sites if r[6]), "holdings retired": int(n_retired),
                 "inter-country transfer notice (days)": transfer_days,
                 "new data-center notice (days)": site_days},
        tables=[
            Table("transfers", "Holdings that changed site", TRANSFER_COLUMNS, transfers,
                  pdf_columns=["date", "holding_id", "accelerator", "count", "from_site", "from_country",
                               "to_site", "to_country", "kind", "notice_due_by"],
                  note="notice_due_by = transfer date minus the advance-notice period (Supp. 10 ¶5, UVEU). "
                       "In-country transfers are allowed only to a location authorized for the same VEU "
                       "(§ 748.15(d)(2)(iii))."),
            Table("new_sites", "Sites first installed in the period", SITE_COLUMNS, lambda: iter(new_sites),
                  note="new_country: the first installation in that country; notice_due_by = first "
                       "installation minus the new-location notice period (§ 748.15(a)(2)(ii)(A))."),
            Table("attrition", "Holdings retired in the period (loss, failure, relocation, resale)",
                  ATTRITION_COLUMNS, lambda: stream(s, retired),
                  pdf_columns=["retired_at", "holding_id", "source", "external_id", "accelerator", "count",
                               "site", "country"]),
        ],
        provisions=provs,
    )
    report.notes.append("Transfers are read from the versioned holdings history; a holding edited directly "
                        "(without history) shows no site change.")
    for pd in provs:
        if not pd["confirmed"]:
            report.notes.append(f"UNCONFIRMED: {pd['id']} ({pd['citation']}): {pd['unconfirmed_note'].strip()}")
    return report
