"""Export kind ``audit-log``: the audit trail entries of a period, with their hashes for re-verification."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from sqlalchemy import DateTime, func, select, type_coerce
from sqlmodel import Session

from agent.audit import _ts_fast
from agent.exports.base import Report, Table, day_after, day_start, provision_dict, stream
from agent.store.tables.audit import AuditEntry
from policies.packs import PackRegistry

COLUMNS = ["seq", "ts", "actor", "action", "subject", "payload", "prev_hash", "hash"]


def build(s: Session, packs: PackRegistry, start: date, end: date, **_: Any) -> Report:
    t = AuditEntry.__table__  # type: ignore[attr-defined]
    ts = type_coerce(t.c.ts, DateTime(timezone=True))  # raw UTC values: no per-row decorator
    stmt = (select(t.c.seq, ts, t.c.actor, t.c.action, t.c.subject, t.c.payload, t.c.prev_hash, t.c.hash)
            .where(t.c.ts >= day_start(start), t.c.ts < day_after(end)).order_by(t.c.seq))

    def rows() -> Iterator[Sequence[Any]]:
        for r in stream(s, stmt):
            yield (r[0], _ts_fast(r[1]), r[2], r[3], r[4], r[5], r[6], r[7])

    counts = s.execute(
        select(t.c.action, func.count()).where(t.c.ts >= day_start(start), t.c.ts < day_after(end))
        .group_by(t.c.action)
    ).all()
    prov = packs.find("veu-recordkeeping", end)
    report = Report(
        kind="audit-log", title="Audit trail", start=start, end=end, as_of=end,
        summary={"entries": sum(int(c) for _, c in counts),
                 **{f"action {a}": int(c) for a, c in sorted(counts)}},
        tables=[Table("entries", "Audit entries (hash-chained; payload is the canonical JSON that was hashed)",
                      COLUMNS, rows, pdf_columns=["seq", "ts", "actor", "action", "subject", "payload"],
                      pdf_max_rows=200,
                      note="Each entry's hash is SHA-256 over its canonical JSON including prev_hash; "
                           "re-verify with `veuctl audit verify`.")],
    )
    if prov is not None:
        report.provisions.append(provision_dict(prov))
    return report
