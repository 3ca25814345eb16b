"""BIS reporting exports (CSV, JSON, PDF) with a signed manifest; one module per export kind.

Kinds and what they read:

- ``installed-base``: holdings per site, country and tier on the ``--to`` date with each VEU
  authorization's TPP and cap positions (agent.caps / policies.caps), and how many were received in the period.
- ``transfers``: moves of chips between countries and sites, changes of owner, new sites, attrition (holdings
  retired, counts reduced) and retired holdings returned to service in the period (holding history).
- ``red-flags``: the red-flag case register and the decisions that held jobs (agent.cases).
- ``decisions``: every admission decision of the period (agent.cases).
- ``model-ledger``: 4E091 training-compute ledger (agent.ledger).
- ``shipments``: the shipments ledger against Tier 2 allocations and LPP (agent.caps), each shipment with its
  consignee's address and its value in US dollars (a Data Center VEU's semi-annual report content).
- ``audit-log``: the audit trail itself for the period.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from agent.exports import manifest as mf
from agent.exports.base import ExportError, ExportUnavailable, Report
from agent.exports.writers import FileInfo, write_csv, write_json
from policies.errors import NotInEffect
from policies.packs import PackRegistry

FORMATS = ("csv", "json", "pdf")

# kind -> (module in agent.exports, the product module it reads, which engineer's area)
KINDS: dict[str, tuple[str, str]] = {
    "installed-base": ("installed_base", "agent.store"),
    "transfers": ("transfers", "agent.inventory"),
    "red-flags": ("red_flags", "agent.cases"),
    "decisions": ("decisions", "agent.cases"),
    "model-ledger": ("model_ledger", "agent.ledger"),
    "shipments": ("shipments", "agent.caps"),
    "audit-log": ("audit_log", "agent.audit"),
}

__all__ = ["FORMATS", "KINDS", "ExportError", "ExportUnavailable", "available", "build", "run_export"]


def _builder(kind: str) -> Callable[..., Report]:
    if kind not in KINDS:
        raise ExportError(f"KIND: {kind!r} is not an export kind; choose one of {', '.join(KINDS)}")
    module, source = KINDS[kind]
    if importlib.util.find_spec(source) is None:
        raise ExportUnavailable(f"export {kind}: its data source {source} is not part of this build yet; "
                                f"available kinds: {', '.join(k for k in KINDS if available(k))}")
    return importlib.import_module(f"agent.exports.{module}").build  # type: ignore[no-any-return]


def available(kind: str) -> bool:
    return kind in KINDS and importlib.util.find_spec(KINDS[kind][1]) is not None


def build(s: Session, packs: PackRegistry, kind: str, start: date, end: date, **opts: Any) -> Report:
    if start > end:
        raise ExportError(f"--from: {start.isoformat()} is after --to {end.isoformat()}")
    if end >= date.max:
        # The period includes its last day, so it ends at the next midnight, which 9999-12-31 has not.
        raise ExportError(f"--to: {end.isoformat()} is past the last day a period can end on "
                          f"({(date.max - timedelta(days=1)).isoformat()})")
    if opts.get("authorization") and kind != "installed-base":
        # Every other kind would ignore it and hand back the whole store under a name that looks filtered.
        raise ExportError(f"--authorization: only the installed-base export is limited to one authorization; "
                          f"{kind} covers every authorization")
    builder = _builder(kind)
    try:
        return builder(s, packs, start, end, **opts)
    except NotInEffect as exc:
        # Every provision an export applies is read on --to (positions, tiers, caps as of that day). The caps
        # engine names its own option (--as-of), which `veuctl export` and the API's export route do not have.
        text = re.sub(r"^--[a-z][a-z-]*: ", "", str(exc))
        raise NotInEffect(f"--to: {text}; an export reads the rules in force on --to: end the period on a day "
                          "they were") from None


def _stem(report: Report) -> str:
    return mf.stem(report.kind, report.subject, report.start.isoformat(), report.end.isoformat())


def run_export(
    s: Session, packs: PackRegistry, kind: str, start: date, end: date, formats: list[str], out_dir: Path,
    *, actor: str, **opts: Any,
) -> dict[str, Any]:
    """Write the export files and their signed manifest into ``out_dir``; record it in the audit trail.

    Files are written to a staging directory first and moved in only when all are complete, so a failed
    export never leaves a half-written set behind.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"--format: {', '.join(bad) or 'none given'}; choose csv, json or pdf")
    with _snapshot(s) as snap:
        return _run_export(s, snap, packs, kind, start, end, formats, out_dir, actor=actor, **opts)


@contextmanager
def _snapshot(s: Session) -> Iterator[Session]:
    """A read-only session on its own connection whose queries all see one snapshot of the store.

    Every table is read once per format and the summary by queries of its own: without one snapshot a
    write committed meanwhile (an admission decision, an audit entry) lands in the JSON but not the CSV,
    or in the rows but not the summary, of one signed export.
    """
    bind = s.get_bind()
    if not isinstance(bind, Engine) or bind.url.database in (None, "", ":memory:"):
        # Bound to a connection, or an in-memory SQLite store that only the caller's connection sees.
        yield s
        return
    conn = bind.connect()
    try:
        if bind.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            # pysqlite starts no transaction for a SELECT, so each query would see the latest commit; a
            # read transaction keeps the first read's snapshot (WAL) to the end.
            conn.exec_driver_sql("BEGIN")
        with Session(conn) as snap:
            yield snap
    finally:
        conn.rollback()
        conn.close()


def _run_export(
    s: Session, snap: Session, packs: PackRegistry, kind: str, start: date, end: date, formats: list[str],
    out_dir: Path, *, actor: str, **opts: Any,
) -> dict[str, Any]:
    from agent.audit import record

    report = build(snap, packs, kind, start, end, **opts)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_dir))
    except OSError as exc:
        raise ExportError(f"--out: cannot write to {out_dir}: {exc.strerror}") from None
    stem = _stem(report)
    generated = datetime.now(UTC).replace(microsecond=0)
    head = _audit_head(snap)
    meta = {"generated_at": generated.isoformat(), "generated_by": actor, "pack_versions": packs.versions()}
    try:
        files: list[FileInfo] = []
        manifest_name = f"{stem}{mf.SUFFIX}"
        try:
            for fmt in dict.fromkeys(formats):
                if fmt == "csv":
                    files += [write_csv(t, staging / f"{stem}_{t.name}.csv") for t in report.tables]
                elif fmt == "json":
                    files.append(write_json(report, staging / f"{stem}.json", meta))
                else:
                    from agent.exports.pdf import write_pdf

                    files.append(write_pdf(report, staging / f"{stem}.pdf", meta))
        except OSError as exc:
            # A full disk or a quota met half-way: the staging directory goes, nothing is recorded.
            raise ExportError(f"--out: cannot write the export to {out_dir}: {exc.strerror or exc}") from None
        body = {**report.meta(), **meta, "audit_head": head,
                "provisions": [p["id"] for p in report.provisions], "notes": report.notes,
                "files": [f.__dict__ for f in files]}
        signed = mf.sign(body)
        try:
            (staging / manifest_name).write_text(_pretty(signed), encoding="utf-8")
        except OSError as exc:
            raise ExportError(f"--out: cannot write the export to {out_dir}: {exc.strerror or exc}") from None
        # Recorded before the files are moved in: an audit trail that cannot be written (the store locked
        # or gone) fails the export with nothing left behind that looks like a finished, signed export.
        record(s, actor=actor, action="export.create", subject=f"export:{kind}",
               payload={"period": report.meta()["period"], "as_of": report.as_of, "subject": report.subject,
                        "formats": formats, "manifest": manifest_name,
                        "files": {f.name: f.sha256 for f in files}, "pack_versions": packs.versions()})
        s.flush()
        for f in [*files, FileInfo(manifest_name, "", 0)]:
            os.replace(staging / f.name, out_dir / f.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**signed, "manifest": str(out_dir / manifest_name)}


def _audit_head(s: Session) -> dict[str, Any] | None:
    """The audit chain position the export was taken at (ties the export to the tamper-evident trail)."""
    from sqlalchemy import text

    row = s.execute(text("SELECT seq, hash FROM audit_entry ORDER BY seq DESC LIMIT 1")).first()
    return {"seq": int(row[0]), "hash": str(row[1])} if row else None


def _pretty(obj: dict[str, Any]) -> str:
    import json

    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
