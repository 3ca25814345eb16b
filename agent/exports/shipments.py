"""Export kind ``shipments``: the shipments ledger of a period against Tier 2 allocations and LPP.

Each shipment carries its TPP as recorded (``tpp_each`` at the time), its destination's tier on the shipment's
date, the route used (licence, LPP, UVEU, NVEU ...) and whether an LPP notice to BIS is due; the cap positions
are evaluated on ``--to``. For a Data
Center VEU's semi-annual report (§ 748.15(f)(1)(i)) each row also names the consignee with its address
(``party.address``; empty when not recorded), the destination, the quantity, the value of the items
(``value_usd``; empty when not recorded) and the ECCN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from sqlalchemy import extract, func, select
from sqlmodel import Session

from agent.exports.base import Chart, Report, Table, check_positions_day, dated_tier_lookup, provision_dict, stream
from agent.store.tables.core import Party
from policies.packs import PackRegistry

COLUMNS = ["id", "date", "consignee", "consignee_address", "destination", "destination_tier", "accelerator",
           "eccn", "count", "value_usd", "tpp_each", "tpp", "via", "authorization", "reference",
           "lpp_notice_required"]
CAP_COLUMNS = ["cap", "title", "view", "binding", "value", "limit", "headroom_tpp", "utilisation", "ok",
               "confirmed", "citations"]


def build(s: Session, packs: PackRegistry, start: date, end: date, **_: Any) -> Report:
    from agent import caps as caps_mod
    from agent.store.tables.caps import Shipment, VeuAuthorization
    from policies import caps as core
    from policies.caps import exact

    check_positions_day(end, "the Tier 2 allocation and LPP positions")
    sh, pa = Shipment.__table__, Party.__table__  # type: ignore[attr-defined]
    au = VeuAuthorization.__table__  # type: ignore[attr-defined]
    # A shipment is listed at its destination's tier on the day it was made (the tier its route and LPP notice
    # were decided by): Cambodia, Tier 3 until it left D:5 on 2026-02-03, is not Tier 2 for January.
    tier_on = dated_tier_lookup(packs)

    stmt = (
        select(sh.c.id, sh.c.day, pa.c.name, pa.c.address, sh.c.destination, sh.c.accelerator, sh.c.eccn,
               sh.c.count, sh.c.value_usd, sh.c.tpp_each, sh.c.via, au.c.name, sh.c.reference)
        .join(pa, pa.c.id == sh.c.consignee_id).outerjoin(au, au.c.id == sh.c.authorization_id)
        .where(sh.c.day >= start, sh.c.day <= end).order_by(sh.c.day, sh.c.id)
    )

    def rows() -> Iterator[Sequence[Any]]:
        for sid, day, consignee, address, dest, acc, eccn, count, value, each, via, auth, ref in stream(s, stmt):
            cs = core.Shipment(sid, day, consignee, dest, acc, exact(count), exact(each), eccn, via, ref)
            yield (sid, day, consignee, address, dest, tier_on(dest, day), acc, eccn, count, value, each, count * each,
                   via, auth, ref, core.lpp_notice_required(packs, cs))

    by_via = s.execute(
        select(sh.c.via, func.count(), func.sum(sh.c.count * sh.c.tpp_each))
        .where(sh.c.day >= start, sh.c.day <= end).group_by(sh.c.via).order_by(sh.c.via)
    ).all()
    year = extract("year", sh.c.day)
    # The year as an int: PostgreSQL's EXTRACT answers a numeric, which a CSV would carry as 2026.0.
    per_year = [(name, int(y), *rest) for name, y, *rest in s.execute(
        select(pa.c.name, year, sh.c.via, sh.c.destination, func.count(), func.sum(sh.c.count),
               func.sum(sh.c.count * sh.c.tpp_each))
        .join(pa, pa.c.id == sh.c.consignee_id).where(sh.c.day >= start, sh.c.day <= end)
        .group_by(pa.c.name, year, sh.c.via, sh.c.destination).order_by(pa.c.name, year, sh.c.via, sh.c.destination)
    ).all()]
    in_period = (sh.c.day >= start, sh.c.day <= end)
    no_value = s.execute(select(func.count()).select_from(sh).where(*in_period, sh.c.value_usd.is_(None))).scalar()
    no_address = s.execute(select(func.count(func.distinct(pa.c.id))).select_from(sh)
                           .join(pa, pa.c.id == sh.c.consignee_id).where(*in_period, pa.c.address == "")).scalar()
    value_total = s.execute(select(func.sum(sh.c.value_usd)).where(*in_period)).scalar()
    caps = caps_mod.allocation_caps(s, packs, end)
    cap_rows: list[tuple[Any, ...]] = []
    provisions: dict[str, dict[str, Any]] = {}
    cats: list[str] = []
    used: list[float] = []
    limits: list[float | None] = []
    for c in caps:
        d = core.cap_to_dict(c)
        for p in c.provisions:
            provisions.setdefault(p.id, provision_dict(p))
        cap_rows.append((d["id"], d["title"], d["view"], d["binding"], d["value"], d["limit"], d["headroom"],
                         d["utilisation"], d["ok"], d["confirmed"], "; ".join(p.citation for p in c.provisions)))
        if c.kind == "absolute" and c.limit is not None:
            cats.append(str(d["id"]))
            used.append(float(c.numerator))
            limits.append(float(c.limit))
    report = Report(
        kind="shipments", title="Shipments ledger: Tier 2 allocations and License Exception LPP", start=start,
        end=end, as_of=end,
        summary={"shipments": sum(int(n) for _, n, _ in by_via),
                 **{f"tpp via {v}": float(t or 0) for v, _, t in by_via},
                 "value usd (recorded)": float(value_total or 0),
                 "shipments without a recorded value": int(no_value or 0),
                 "consignees without a recorded address": int(no_address or 0),
                 "caps evaluated on": end.isoformat(),
                 "binding caps exceeded": sum(1 for r in cap_rows if r[3] and not r[8])},
        tables=[
            Table("caps", "Allocation positions on the --to date (whole ledger to that date)", CAP_COLUMNS,
                  lambda: iter(cap_rows),
                  pdf_columns=["cap", "view", "value", "limit", "headroom_tpp", "utilisation", "ok", "confirmed"],
                  pdf_apart={"value": "limit", "utilisation": 1.0}),
            Table("consignee_year", "Shipments per consignee per year (LPP is capped per consignee per year)",
                  ["consignee", "year", "via", "destination", "shipments", "count", "tpp"], lambda: iter(per_year)),
            Table("shipments", "Shipments in the period", COLUMNS, rows,
                  pdf_columns=["id", "date", "consignee", "consignee_address", "destination", "accelerator",
                               "eccn", "count", "value_usd", "tpp", "via", "authorization", "lpp_notice_required"],
                  note="consignee_address and value_usd (US dollars) are empty where not recorded "
                       "(veuctl parties add NAME --hq CC --address TEXT; veuctl shipments add ... --value-usd N)."),
        ],
        charts=[Chart("Allocations used against their limits", cats, used, "TPP", limits=limits)],
        provisions=list(provisions.values()),
    )
    if no_value or no_address:
        report.notes.append(f"{int(no_value or 0)} shipment(s) in the period have no recorded value and "
                            f"{int(no_address or 0)} consignee(s) no recorded address: a Data Center VEU's "
                            "semi-annual report gives both for each export, reexport or transfer.")
    for pd in report.provisions:
        if not pd["confirmed"]:
            report.notes.append(f"UNCONFIRMED: {pd['id']} ({pd['citation']}): {pd['unconfirmed_note'].strip()}")
    return report
