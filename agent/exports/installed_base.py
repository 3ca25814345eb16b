"""Export kind ``installed-base``: holdings per site, country and tier on a date, with VEU cap positions.

Supp. 10 to part 748 ¶10 asks for a facility-specific chip accounting; § 748.15(f)(1)(ii) for the current
inventory, the receipt dates and, for NVEUs, the current customers (``nveu_customers``). The cap positions
(UVEU geographic allocation, NVEU cumulative TPP) come from the caps engine (agent.caps over policies.caps);
without it the export carries holdings and tier totals only, and says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlmodel import Session

from agent.exports.base import (
    Chart,
    Report,
    Table,
    check_positions_day,
    chip_count,
    provision_dict,
    stream,
    tier_lookup,
)
from agent.store.tables.core import Holding, Party, Site
from agent.store.tables.inventory import HoldingPeriod
from policies.packs import PackRegistry

HOLDING_COLUMNS = ["site", "country", "tier", "accelerator", "eccn", "count", "tpp_each", "tpp", "owner",
                   "operator"]
DETAIL_COLUMNS = ["holding_id", "source", "external_id", "serial", "site", "country", "accelerator", "count",
                  "owner", "operator", "installed_since", "received"]
CUSTOMER_COLUMNS = ["authorization", "customer", "hq", "address", "namespaces", "clusters"]
CAP_COLUMNS = ["authorization", "kind", "holder", "cap", "title", "view", "binding", "value", "limit",
               "headroom_tpp", "utilisation", "ok", "confirmed", "citations"]


def _num(x: Any) -> float | int | None:
    if x is None:
        return None
    f = float(x)
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _detail_rows(s: Session, as_of: date) -> Iterator[Sequence[Any]]:
    """Every individual holding in force on ``as_of`` (versioned history first, then undated holdings).

    ``installed_since`` is when the holding's current version (site, count, owner) began; ``received`` is
    when it was first seen, the receipt date § 748.15(f)(1)(ii)(B) asks for, kept across moves and edits.
    """
    from agent.inventory import instant_of

    at = instant_of(as_of)
    hp, h, site = HoldingPeriod.__table__, Holding.__table__, Site.__table__  # type: ignore[attr-defined]
    owner = Party.__table__.alias("owner")  # type: ignore[attr-defined]
    oper = Party.__table__.alias("oper")  # type: ignore[attr-defined]
    q1 = (
        select(h.c.id, h.c.source, h.c.external_id, h.c.serial, site.c.name, site.c.country, hp.c.accelerator,
               hp.c.count, owner.c.name, oper.c.name, hp.c.valid_from, h.c.first_seen)
        .join(h, h.c.id == hp.c.holding_id).join(site, site.c.id == hp.c.site_id)
        .outerjoin(owner, owner.c.id == hp.c.owner_id).outerjoin(oper, oper.c.id == hp.c.operator_id)
        .where(hp.c.valid_from <= at, or_(hp.c.valid_to.is_(None), hp.c.valid_to > at))
        .order_by(site.c.name, h.c.id)
    )
    no_history = ~exists().where(hp.c.holding_id == h.c.id)
    q2 = (
        select(h.c.id, h.c.source, h.c.external_id, h.c.serial, site.c.name, site.c.country, h.c.accelerator,
               h.c.count, owner.c.name, oper.c.name, h.c.first_seen, h.c.first_seen)
        .join(site, site.c.id == h.c.site_id)
        .outerjoin(owner, owner.c.id == h.c.owner_id).outerjoin(oper, oper.c.id == h.c.operator_id)
        .where(and_(no_history, h.c.first_seen <= at, or_(h.c.retired_at.is_(None), h.c.retired_at > at)))
        .order_by(site.c.name, h.c.id)
    )
    for q in (q1, q2):
        yield from stream(s, q)


def _received_in(s: Session, start: date, end: date) -> int:
    """How many holdings of the installed base on ``end`` were first received (first seen: the receipt date
    § 748.15(f)(1)(ii)(B) asks for, the ``received`` column of ``holding_detail``) from ``start`` through ``end``,
    both days included.

    "In the installed base on ``end``" is decided as :func:`_detail_rows` decides it, from the dated history
    (holdings without one from first_seen to retired_at): a chip retired inside the period is not counted, even
    when it was seen again later and its current row no longer carries that retirement."""
    from sqlalchemy import func, union

    from agent.inventory import instant_of

    at = instant_of(end)
    since = datetime.combine(start, time.min, tzinfo=UTC)
    hp, h = HoldingPeriod.__table__, Holding.__table__  # type: ignore[attr-defined]
    received = and_(h.c.first_seen >= since, h.c.first_seen <= at)
    versioned = (
        select(h.c.id).join(hp, hp.c.holding_id == h.c.id)
        .where(received, hp.c.valid_from <= at, or_(hp.c.valid_to.is_(None), hp.c.valid_to > at))
    )
    undated = select(h.c.id).where(
        received, ~exists().where(hp.c.holding_id == h.c.id),
        or_(h.c.retired_at.is_(None), h.c.retired_at > at))
    ids = union(versioned, undated).subquery()
    return int(s.execute(select(func.count()).select_from(ids)).scalar_one())


def _nveu_customers(s: Session, base: Sequence[Any], auths: Sequence[Any], holders: dict[str, str],
                    notes: list[str], as_of: date) -> list[tuple[Any, ...]]:
    """§ 748.15(f)(1)(ii)(C): each NVEU's current customers, the parties whose namespaces are mapped on the
    Kubernetes clusters of its data centers (the sites in its country where the holder owns or operates chips),
    and those mapped on every cluster, each with its headquarters on ``as_of`` (a customer re-domiciled after the
    report's end is listed where it was then). An NVEU with no cluster registered at those sites gets a note
    instead."""
    from agent.parties import mappings_on, party_refs

    hq_on = {name: ref.hq for name, ref in party_refs(s, as_of).items()}

    sites = {x.name: x for x in s.scalars(select(Site))}
    parties = {x.id: x for x in s.scalars(select(Party))}
    mappings = mappings_on(s, as_of)  # whose namespaces they were on the report's last day, not today
    rows: list[tuple[Any, ...]] = []
    for a in auths:
        if a.kind != "nveu":
            continue
        holder = holders[a.name]
        dcs = sorted({p.site for p in base if p.country == a.country and holder in (p.owner, p.operator)})
        clusters = {sites[n].cluster for n in dcs} - {""}
        if not clusters:
            notes.append(f"{a.name}: no Kubernetes cluster is registered at its data centers in {a.country} "
                         f"({', '.join(dcs) or 'no holdings of ' + holder}); its customer list (§ 748.15(f)(1)(ii)"
                         "(C)) cannot be derived: register each cluster with `veuctl sites add SITE --cluster NAME`")
            continue
        found: dict[int, tuple[set[str], set[str]]] = {}
        for cluster, namespace, party_id in mappings:
            if cluster and cluster not in clusters:
                continue
            ns, cl = found.setdefault(party_id, (set(), set()))
            ns.add(namespace)
            cl.add(cluster or "(every cluster)")
        for pid, (ns, cl) in sorted(found.items(), key=lambda kv: parties[kv[0]].name):
            p = parties[pid]
            rows.append((a.name, p.name, hq_on.get(p.name, p.hq), p.address, "; ".join(sorted(ns)),
                         "; ".join(sorted(cl))))
    return rows


def build(s: Session, packs: PackRegistry, start: date, end: date, authorization: str | None = None,
          **_: Any) -> Report:
    # The installed base is what is in force at the end of the reporting period; the period itself (the
    # semiannual report's) is what the export covers, and holdings first received in it are counted.
    as_of = end
    check_positions_day(end, "the installed base and cap positions")
    tier_of = tier_lookup(packs, as_of)
    report = Report(kind="installed-base", title="Installed base and VEU cap positions", start=start, end=end,
                    as_of=as_of, subject=authorization or "")
    try:
        from agent import caps as caps_mod
        from policies import caps as core
    except ImportError:
        caps_mod = None  # type: ignore[assignment]
    if caps_mod is None:
        report.notes.append("The caps engine (agent/caps.py) is not part of this build: this export carries "
                            "holdings and tier totals only, without TPP or cap positions.")
        return _without_caps(s, report, tier_of)

    base = caps_mod.placements(s, packs, as_of)
    holdings = [
        (p.site, p.country, tier_of(p.country), p.accelerator, p.eccn, _num(p.count), _num(p.tpp_each),
         _num(p.tpp), p.owner, p.operator)
        for p in base
    ]
    summ = caps_mod.summarize(packs, base, as_of)
    countries = [(c["country"], c["name"], c["tier"], c["count"], c["tpp"], c["share"], ";".join(c["sites"]))
                 for c in summ["countries"]]
    auths = caps_mod.list_authorizations(s)
    if authorization:
        auths = [caps_mod.get_authorization(s, authorization)]
    cap_rows: list[tuple[Any, ...]] = []
    provisions: dict[str, dict[str, Any]] = {}
    chart_cats: list[str] = []
    chart_vals: list[float] = []
    holders: dict[str, str] = {}
    for a in auths:
        info = caps_mod.authorization_dict(s, a)
        holders[a.name] = info["holder"]
        for c in caps_mod.caps_for(s, packs, a.name, as_of, base=base):
            d = core.cap_to_dict(c)
            for p in c.provisions:
                provisions.setdefault(p.id, provision_dict(p))
            cap_rows.append((a.name, a.kind, info["holder"], d["id"], d["title"], d["view"], d["binding"],
                             d["value"], d["limit"], d["headroom"], d["utilisation"], d["ok"], d["confirmed"],
                             "; ".join(p.citation for p in c.provisions)))
            if d["binding"] and d["utilisation"] is not None:
                chart_cats.append(f"{a.name}: {d['id']}")
                chart_vals.append(100.0 * float(d["utilisation"]))
    customers = _nveu_customers(s, base, auths, holders, report.notes, as_of)
    exceeded = sum(1 for r in cap_rows if r[6] and not r[11])
    report.summary = {
        "as_of": as_of.isoformat(), "total_tpp_3a090a_class": summ["total_tpp"],
        **{f"tier {t['tier']} tpp": t["tpp"] for t in summ["by_tier"]},
        "sites": len({h[0] for h in holdings}), "countries": len(countries),
        "authorizations": len(auths), "binding caps exceeded": exceeded,
        "holdings received in period": _received_in(s, start, end),
    }
    report.tables = [
        Table("caps", "Cap positions per VEU authorization", CAP_COLUMNS, lambda: iter(cap_rows),
              pdf_columns=["authorization", "cap", "view", "value", "limit", "headroom_tpp", "utilisation", "ok",
                           "confirmed"], pdf_apart={"value": "limit", "utilisation": 1.0},
              note="value/limit are shares for share caps and TPP for absolute caps; headroom in TPP. "
                   "UNCONFIRMED provisions are marked confirmed=false."),
        Table("countries", "Installed 3A090.a-class TPP by country and tier",
              ["country", "name", "tier", "count", "tpp", "share", "sites"], lambda: iter(countries)),
        Table("nveu_customers", "NVEU current customers (§ 748.15(f)(1)(ii)(C))", CUSTOMER_COLUMNS,
              lambda: iter(customers),
              note="Parties whose namespaces are mapped on the clusters of the NVEU's data centers, or on every "
                   "cluster."),
        Table("holdings", "Holdings by site (site x accelerator x owner x operator)", HOLDING_COLUMNS,
              lambda: iter(holdings)),
        Table("holding_detail", "Individual holdings (facility-specific chip accounting)", DETAIL_COLUMNS,
              lambda: _detail_rows(s, as_of),
              pdf_columns=["holding_id", "source", "external_id", "site", "country", "accelerator", "count",
                           "owner"], pdf_max_rows=100),
    ]
    report.charts = [
        Chart("Installed TPP by country", [c[0] for c in countries], [float(c[4]) for c in countries], "TPP"),
        Chart("Cap utilisation (binding caps)", chart_cats, chart_vals, "% of limit", ref_line=100.0,
              ref_label="limit"),
    ]
    report.provisions = list(provisions.values())
    for pd in report.provisions:
        if not pd["confirmed"]:
            report.notes.append(f"UNCONFIRMED: {pd['id']} ({pd['citation']}): {pd['unconfirmed_note'].strip()}")
    if any(caps_mod.reservation_placements(s, packs, as_of, a.id) for a in auths):
        report.notes.append("Cap positions count active headroom reservations as already placed.")
    return report


def _without_caps(s: Session, report: Report, tier_of: Any) -> Report:
    # Summed exactly (a MIG slice is 1/7 of its GPU: seven float slices add up to 0.9999999999999998) and written
    # as the CSV and JSON write every chip count (chip_count): 992, never 992.0. policies.caps.exact is imported here
    # as chip_count imports it, so that this module still loads in a build without the caps engine.
    from policies.caps import exact

    totals: dict[tuple[str, int | None], Fraction] = {}
    rows: list[tuple[Any, ...]] = []
    for r in _detail_rows(s, report.as_of):
        key = (r[5], tier_of(r[5]))
        totals[key] = totals.get(key, Fraction(0)) + exact(float(r[7]))
    for (country, t), n in sorted(totals.items()):
        rows.append((country, t, chip_count(n)))
    report.tables = [
        Table("countries", "Accelerators by country and tier", ["country", "tier", "count"], lambda: iter(rows)),
        Table("holding_detail", "Individual holdings", DETAIL_COLUMNS, lambda: _detail_rows(s, report.as_of)),
    ]
    report.summary = {"as_of": report.as_of.isoformat(),
                      "accelerators": chip_count(sum(totals.values(), Fraction(0))),
                      "holdings received in period": _received_in(s, report.start, report.end)}
    return report
