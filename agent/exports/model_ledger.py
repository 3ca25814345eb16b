"""Export kind ``model-ledger``: every model's cumulative training operations and 4E091 status on ``--to``, and
every training run recorded by then, a run withdrawn as recorded in error marked so with its reason (counted in
no total: ``veuctl models withdraw-run``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import date
from fractions import Fraction
from typing import Any

from sqlalchemy import DateTime, and_, func, or_, select, type_coerce
from sqlmodel import Session

from agent.exports.base import Chart, Report, Table, stream, utc_iso
from policies.packs import PackRegistry

COLUMNS = ["name", "owner", "base", "published", "cumulative_operations", "share_of_threshold", "own_operations",
           "base_operations",
           "synthetic_generation_operations", "synthetic_training_operations", "runs_counted",
           "runs_after_as_of", "status", "reason", "regime", "threshold", "comparison", "citation", "confirmed",
           "explanation"]
RUN_COLUMNS = ["run_id", "model", "operations", "method", "start", "end", "site", "job", "recorded_by",
               "recorded_at", "withdrawn", "withdrawn_at", "withdrawn_by", "withdrawn_reason"]
PAGE = 500


def _share(operations: float | None, threshold: float | None) -> float | None:
    """``operations / threshold`` as the two figures are written: their exact quotient, rounded once to the nearest
    double. The float quotient divides the binary values nearest the figures (4.1e25 / 1e26 is 0.4099999999999999),
    a share a reader cannot tell from another; None without a threshold or a total."""
    if not threshold or operations is None:
        return None
    if not (math.isfinite(operations) and math.isfinite(threshold)):
        return float(operations) / float(threshold)  # the ledger refuses these; kept as the quotient says
    # A figure's shortest repr is the decimal it was written as (4.1e25), not the binary value nearest to it.
    return float(Fraction(repr(float(operations))) / Fraction(repr(float(threshold))))


def _runs(s: Session, end: date) -> tuple[Table, int]:
    """Every run that starts (or, with no start, ends) by ``end`` or has no date, as the totals count them on
    ``end``; withdrawn runs too, marked, so the export shows what was corrected. And how many are withdrawn."""
    from agent.store.tables.ledger import LedgerModel, LedgerRun

    r, m = LedgerRun.__table__, LedgerModel.__table__  # type: ignore[attr-defined]
    by_end = or_(r.c.period_start <= end, and_(r.c.period_start.is_(None), or_(r.c.period_end.is_(None),
                                                                              r.c.period_end <= end)))
    stmt = (select(r.c.id, m.c.name, r.c.operations, r.c.method, r.c.period_start, r.c.period_end, r.c.site,
                   r.c.job_ref, r.c.recorded_by, type_coerce(r.c.created_at, DateTime(timezone=True)),
                   type_coerce(r.c.withdrawn_at, DateTime(timezone=True)), r.c.withdrawn_by, r.c.withdrawn_reason)
            .select_from(r.join(m, m.c.id == r.c.model_id)).where(by_end).order_by(r.c.id))

    def rows() -> Iterator[Sequence[Any]]:
        for (rid, model, ops, method, st, en, site, job, by, at, w_at, w_by, w_reason) in stream(s, stmt):
            yield (rid, model, ops, method, st.isoformat() if st else None, en.isoformat() if en else None, site,
                   job, by, utc_iso(at), w_at is not None, utc_iso(w_at), w_by, w_reason)

    withdrawn = int(s.execute(select(func.count()).select_from(r).where(by_end, r.c.withdrawn_at.is_not(None)))
                    .scalar_one())
    return Table("runs", "Training runs recorded (withdrawn runs: recorded in error, counted in no total)",
                 RUN_COLUMNS, rows,
                 pdf_columns=["run_id", "model", "operations", "method", "start", "withdrawn", "withdrawn_reason"],
                 note="A withdrawn run was recorded in error (e.g. an exponent too many) and withdrawn with "
                      "`veuctl models withdraw-run`: it is kept here and in the audit trail, and counted in no "
                      "model's total for any date."), withdrawn


def build(s: Session, packs: PackRegistry, start: date, end: date, regime: str | None = None,
          **_: Any) -> Report:
    from agent import ledger as svc

    kw = {"regime_id": regime} if regime else {}

    def rows() -> Iterator[Sequence[Any]]:
        offset = 0
        while True:  # one page of lineages at a time: memory bounded by the page, not the ledger
            page = svc.list_models(s, packs, end, limit=PAGE, offset=offset, explain=True, **kw)
            for d in page.items:
                expl = d.get("explanation")
                thr, cum = d.get("threshold"), d.get("cumulative_operations")
                d["share_of_threshold"] = _share(cum, thr)
                yield tuple(("\n".join(expl) if isinstance(expl, list) else expl) if c == "explanation"
                            else d.get(c) for c in COLUMNS)
            offset += PAGE
            if offset >= page.total or not page.items:
                return

    statuses: dict[str, int] = {}
    top: list[tuple[str, float]] = []
    threshold: float | None = None
    confirmed = True
    for r in rows():
        st = str(r[COLUMNS.index("status")])
        statuses[st] = statuses.get(st, 0) + 1
        top.append((str(r[0]), float(r[COLUMNS.index("cumulative_operations")] or 0)))
        top = sorted(top, key=lambda x: -x[1])[:15]
        threshold = r[COLUMNS.index("threshold")]
        confirmed = confirmed and bool(r[COLUMNS.index("confirmed")])
    runs, withdrawn = _runs(s, end)
    report = Report(
        kind="model-ledger", title="Model ledger: cumulative training operations (ECCN 4E091)", start=start,
        end=end, as_of=end,
        summary={"models": sum(statuses.values()), **{f"status {k}": v for k, v in sorted(statuses.items())},
                 "threshold (operations)": threshold},
        tables=[Table("models", "Models and their 4E091 status", COLUMNS, rows,
                      pdf_columns=["name", "owner", "base", "cumulative_operations", "share_of_threshold",
                                   "status", "threshold", "confirmed"],
                      pdf_apart={"cumulative_operations": "threshold", "share_of_threshold": 1.0},
                      note="share_of_threshold = cumulative operations / the 4E091 threshold of the regime, "
                           "computed exactly from the two figures as written (4.1e25 of 1e26 is 0.41); models at "
                           "or near the threshold have a share at or near 1."), runs],
        charts=[Chart("Largest cumulative training operations", [t[0] for t in top], [t[1] for t in top],
                      "operations", ref_line=float(threshold) if threshold else None, ref_label="4E091 threshold")],
    )
    prov = packs.find("eccn-4e091", end)
    if prov is not None:
        from agent.exports.base import provision_dict

        report.provisions.append(provision_dict(prov))
    if withdrawn:
        report.notes.append(f"{withdrawn} training run(s) withdrawn as recorded in error: listed in the runs table "
                            "(withdrawn=true, with the reason), counted in no model's total.")
    if not confirmed:
        report.notes.append("Some statuses rest on an UNCONFIRMED provision (confirmed=false in the table).")
    return report
