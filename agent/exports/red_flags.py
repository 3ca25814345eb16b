"""Export kind ``red-flags``: the red-flag-28 case register and the decisions that held or denied jobs.

A case is in the register of a period when it was opened in it, changed in it (its answers expiring included),
or is still open at its end.
Status on the ``--to`` date: a resolved case whose answers have expired by then reads ``expired``; a case
answered only after that date reads ``open``, with no answers (they were not on record then).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any, cast

from sqlalchemy import and_, bindparam, func, or_, select
from sqlmodel import Session

from agent.exports.base import Chart, Report, Table, day_after, day_start, provision_dict, stream
from agent.parties import party_refs
from agent.store.db import in_chunks
from agent.store.tables.core import as_utc
from policies.errors import PolicyError
from policies.packs import PackRegistry
from policies.parties import effective_tier

CASE_COLUMNS = ["id", "opened_at", "customer", "customer_tier", "tier_basis", "model", "status", "source",
                "estimate_operations", "estimate_method", "threshold", "last_decision", "last_decision_at", "jobs",
                "export_intent", "licence_number", "licence_scope", "customer_informed", "resolved_by",
                "resolved_at", "expires_at", "explanation"]
HELD_COLUMNS = ["id", "decided_at", "job", "customer", "model", "code", "allowed", "mode", "chips",
                "lineage_operations", "case_id", "message"]


def _aware(ts: Any) -> Any:
    return None if ts is None else as_utc(ts)


def build(s: Session, packs: PackRegistry, start: date, end: date, **_: Any) -> Report:
    from agent.store.tables.cases import AdmissionDecision, RedFlagCase

    lo, hi = day_start(start), day_after(end)
    c = RedFlagCase.__table__  # type: ignore[attr-defined]
    d = AdmissionDecision.__table__  # type: ignore[attr-defined]
    # Answers that expire in the period change the case (resolved -> expired) without touching updated_at.
    expired_in = and_(c.c.status == "resolved", c.c.expires_at >= lo, c.c.expires_at < hi)
    in_register = and_(c.c.opened_at < hi, or_(c.c.opened_at >= lo, c.c.updated_at >= lo, c.c.status == "open",
                                               expired_in))
    cases_q = select(c).where(in_register).order_by(c.c.id)

    def answered_later(r: Any) -> bool:
        resolved = _aware(r.resolved_at)
        return r.status == "resolved" and resolved is not None and resolved >= hi

    def status_on(r: Any) -> str:
        if answered_later(r):
            return "open"
        exp = _aware(r.expires_at)
        return "expired" if r.status == "resolved" and exp is not None and exp < hi else str(r.status)

    # The latest decision of each case, for a chunk of cases in one statement (a statement per case took
    # seconds on a register of thousands).
    latest = (select(d.c.case_id, func.max(d.c.id).label("last_id"))
              .where(d.c.case_id.in_(bindparam("cases", expanding=True))).group_by(d.c.case_id).subquery())
    last_q = select(d.c.case_id, d.c.code, d.c.decided_at, d.c.detail).join(latest, d.c.id == latest.c.last_id)

    def why(r: Any, last: Any) -> tuple[Any, Any, Any, Any, Any]:
        """(tier, basis, estimate method, last decision code, when) from the case's latest decision."""
        detail: dict[str, Any] = {}
        if last is not None:
            try:
                detail = json.loads(last[2] or "{}")
            except ValueError:
                detail = {}
        tier, basis = detail.get("effective_tier"), detail.get("tier_basis")
        if tier is None and r.customer_name:
            tier, basis = _tier_now(r.customer_name)
        est = detail.get("estimate") or {}
        return (tier, basis, est.get("method") if isinstance(est, dict) else None,
                last[0] if last else None, _aware(last[1]) if last else None)

    # The customer directory on ``end`` is read once per export (at the first case), and each customer's tier
    # worked out once: read per case it was the whole party table and ownership history again for every case.
    @functools.cache
    def _directory() -> Any:
        return party_refs(s, end)

    @functools.cache
    def _tier_now(name: str) -> tuple[Any, Any]:
        refs = _directory()
        if name.strip() not in refs:
            return None, "customer not registered"
        try:
            eff = effective_tier(packs, refs, name.strip(), end)
        except PolicyError:
            return None, "customer not registered"
        return eff.tier, eff.basis

    def cases() -> Iterator[Sequence[Any]]:
        r: Any
        for chunk in in_chunks(cast(Iterator[Any], stream(s, cases_q))):
            last_of = {int(x[0]): x[1:] for x in s.execute(last_q, {"cases": [c.id for c in chunk]}).all()}
            for r in chunk:
                tier, basis, method, code, when = why(r, last_of.get(int(r.id)))
                answers: tuple[Any, ...] = (
                    (None, "", "", False, "", None, None) if answered_later(r) else
                    (r.export_intent, r.licence_number, r.licence_scope, r.customer_informed, r.resolved_by,
                     _aware(r.resolved_at), _aware(r.expires_at)))
                yield (r.id, _aware(r.opened_at), r.customer_name, tier, basis, r.model_key, status_on(r),
                       r.source, r.estimate_operations, method, r.threshold, code, when,
                       json.loads(r.jobs or "[]"), *answers, r.explanation)

    held_q = (select(d.c.id, d.c.decided_at, d.c.job_ref, d.c.customer_name, d.c.model_key, d.c.code, d.c.allowed,
                     d.c.mode, d.c.chips, d.c.lineage_operations, d.c.case_id, d.c.message)
              .where(d.c.decided_at >= lo, d.c.decided_at < hi,
                     or_(d.c.allowed.is_(False), d.c.case_id.is_not(None)))
              .order_by(d.c.id))
    statuses: dict[str, int] = {}
    for row in s.execute(select(c.c.status, c.c.expires_at, c.c.resolved_at).where(in_register)).all():
        st = status_on(row)
        statuses[st] = statuses.get(st, 0) + 1
    by_code = s.execute(select(d.c.code, func.count()).where(d.c.decided_at >= lo, d.c.decided_at < hi)
                        .group_by(d.c.code).order_by(d.c.code)).all()
    report = Report(
        kind="red-flags", title="Red-flag register (IaaS red flag 28)", start=start, end=end, as_of=end,
        summary={"cases in register": sum(statuses.values()),
                 **{f"cases {k} on {end.isoformat()}": v for k, v in sorted(statuses.items())},
                 "admission decisions in period": sum(int(n) for _, n in by_code)},
        tables=[
            Table("cases", "Red-flag cases (inquiries and the customer's answers)", CASE_COLUMNS, cases,
                  pdf_columns=["id", "opened_at", "customer", "customer_tier", "model", "status",
                               "estimate_operations", "estimate_method", "last_decision", "export_intent",
                               "licence_number", "resolved_by", "resolved_at"]),
            Table("held_decisions", "Decisions that held or denied a job, or attached it to a case",
                  HELD_COLUMNS, lambda: stream(s, held_q),
                  pdf_columns=["id", "decided_at", "job", "customer", "model", "code", "allowed", "case_id"]),
        ],
        charts=[Chart("Admission decisions by outcome code", [str(x) for x, _ in by_code],
                      [float(n) for _, n in by_code], "decisions")],
    )
    for pid in ("red-flag-28", "diversion-red-flags"):
        prov = packs.find(pid, end)
        if prov is not None:
            report.provisions.append(provision_dict(prov))
    for pd in report.provisions:
        if not pd["confirmed"]:
            report.notes.append(f"UNCONFIRMED: {pd['id']} ({pd['citation']}): {pd['unconfirmed_note'].strip()}")
    return report
