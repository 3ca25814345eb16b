"""Export kind ``model-ledger``: every model's cumulative training operations and 4E091 status on ``--to``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from typing import Any

from sqlmodel import Session

from agent.exports.base import Chart, Report, Table
from policies.packs import PackRegistry

COLUMNS = ["name", "owner", "base", "published", "cumulative_operations", "share_of_threshold", "own_operations",
           "base_operations",
           "synthetic_generation_operations", "synthetic_training_operations", "runs_counted",
           "runs_after_as_of", "status", "reason", "regime", "threshold", "comparison", "citation", "confirmed",
           "explanation"]
PAGE = 500


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
                d["share_of_threshold"] = (float(cum) / float(thr)) if thr and cum is not None else None
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
    report = Report(
        kind="model-ledger", title="Model ledger: cumulative training operations (ECCN 4E091)", start=start,
        end=end, as_of=end,
        summary={"models": sum(statuses.values()), **{f"status {k}": v for k, v in sorted(statuses.items())},
                 "threshold (operations)": threshold},
        tables=[Table("models", "Models and their 4E091 status", COLUMNS, rows,
                      pdf_columns=["name", "owner", "base", "cumulative_operations", "share_of_threshold",
                                   "status", "threshold", "confirmed"],
                      note="share_of_threshold = cumulative operations / the 4E091 threshold of the regime; "
                           "models at or near the threshold have a share at or near 1.")],
        charts=[Chart("Largest cumulative training operations", [t[0] for t in top], [t[1] for t in top],
                      "operations", ref_line=float(threshold) if threshold else None, ref_label="4E091 threshold")],
    )
    prov = packs.find("eccn-4e091", end)
    if prov is not None:
        from agent.exports.base import provision_dict

        report.provisions.append(provision_dict(prov))
    if not confirmed:
        report.notes.append("Some statuses rest on an UNCONFIRMED provision (confirmed=false in the table).")
    return report
