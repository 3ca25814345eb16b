"""Export kind ``decisions``: every admission decision of a period (red flag 28), with its pack versions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from sqlalchemy import DateTime, func, select, type_coerce
from sqlmodel import Session

from agent.exports.base import Chart, Report, Table, day_after, day_start, provision_dict, stream, utc_iso
from policies.packs import PackRegistry

COLUMNS = ["id", "uid", "decided_at", "namespace", "kind", "name", "operation", "job", "customer", "model",
           "code", "allowed", "mode", "chips", "run_operations", "lineage_operations", "case_id", "message",
           "pack_versions"]


def build(s: Session, packs: PackRegistry, start: date, end: date, **_: Any) -> Report:
    from agent.store.tables.cases import AdmissionDecision

    t = AdmissionDecision.__table__  # type: ignore[attr-defined]
    when = (t.c.decided_at >= day_start(start), t.c.decided_at < day_after(end))
    stmt = (select(t.c.id, t.c.uid, type_coerce(t.c.decided_at, DateTime(timezone=True)), t.c.namespace, t.c.kind,
                   t.c.name, t.c.operation, t.c.job_ref, t.c.customer_name, t.c.model_key, t.c.code, t.c.allowed,
                   t.c.mode, t.c.chips, t.c.run_operations, t.c.lineage_operations, t.c.case_id, t.c.message,
                   t.c.pack_versions)
            .where(*when).order_by(t.c.id))

    def rows() -> Iterator[Sequence[Any]]:
        for r in stream(s, stmt):
            yield (r[0], r[1], utc_iso(r[2]), *r[3:])

    by_code = s.execute(select(t.c.code, func.count()).where(*when).group_by(t.c.code).order_by(t.c.code)).all()
    report = Report(
        kind="decisions", title="Admission decisions (IaaS red flag 28)", start=start, end=end, as_of=end,
        summary={"decisions": sum(int(n) for _, n in by_code), **{f"code {c}": int(n) for c, n in by_code}},
        tables=[Table("decisions", "Admission decisions", COLUMNS, rows,
                      pdf_columns=["id", "decided_at", "job", "customer", "model", "code", "allowed", "case_id"],
                      pdf_max_rows=200)],
        charts=[Chart("Decisions by outcome code", [str(c) for c, _ in by_code], [float(n) for _, n in by_code],
                      "decisions")],
    )
    prov = packs.find("red-flag-28", end)
    if prov is not None:
        report.provisions.append(provision_dict(prov))
    return report
