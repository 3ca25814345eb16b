"""/api/v1/exports (download BIS reporting exports as a ZIP with the signed manifest) and /api/v1/audit."""

from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlmodel import Session
from starlette.background import BackgroundTask

from agent import audit as audit_svc
from agent import exports as svc
from agent.api.deps import DbSession, get_packs
from agent.store.db import MAX_ROW_ID
from agent.store.tables.audit import AuditEntry
from policies.errors import PolicyError
from policies.packs import PackRegistry, parse_date

router = APIRouter(prefix="/api/v1", tags=["exports", "audit"])


def _date(text: str, field: str) -> Any:
    try:
        return parse_date(text, field)
    except PolicyError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@router.get("/exports")
def kinds() -> list[dict[str, Any]]:
    """Export kinds and whether their data source is part of this build."""
    return [{"kind": k, "available": svc.available(k), "source": src} for k, (_, src) in svc.KINDS.items()]


@router.get("/exports/{kind}")
def download(
    kind: str,
    from_: str = Query(..., alias="from", description="First day of the period (YYYY-MM-DD)."),
    to: str = Query(..., description="Last day of the period and the as-of date of positions "
                                   "(installed-base: today or earlier)."),
    format_: list[str] = Query(["csv", "json", "pdf"], alias="format", description="csv, json, pdf (repeat)."),
    authorization: str | None = Query(None, description="installed-base: one VEU authorization only."),
    s: Session = DbSession, packs: PackRegistry = Depends(get_packs),
) -> FileResponse:
    """Build the export and return a ZIP of its files and signed manifest (recorded in the audit trail)."""
    if kind not in svc.KINDS:
        raise HTTPException(status_code=404, detail=f"kind: {kind!r} is not an export kind; "
                                                     f"choose one of {', '.join(svc.KINDS)}")
    if not svc.available(kind):
        raise HTTPException(status_code=404, detail=f"export {kind}: its data source {svc.KINDS[kind][1]} "
                                                     "is not part of this build yet")
    formats = [f.strip().lower() for v in format_ for f in v.split(",") if f.strip()]
    start, end = _date(from_, "from"), _date(to, "to")
    work = Path(tempfile.mkdtemp(prefix="veu-export-"))
    try:
        opts = {"authorization": authorization} if authorization else {}
        manifest = svc.run_export(s, packs, kind, start, end, formats, work / "files",
                                  actor=audit_svc.current_actor(), **opts)
        name = Path(manifest["manifest"]).name.removesuffix(".manifest.json")
        archive = work / f"{name}.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for f in sorted((work / "files").iterdir()):
                z.write(f, arcname=f.name)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return FileResponse(archive, media_type="application/zip", filename=archive.name,
                        headers={"X-Export-Manifest": Path(manifest["manifest"]).name,
                                 "X-Export-Key-Id": manifest["signature"]["key_id"]},
                        background=BackgroundTask(shutil.rmtree, work, True))


@router.get("/audit/verify")
def verify(from_seq: int | None = Query(None, ge=1, alias="from"),
           s: Session = DbSession) -> dict[str, Any]:
    """Recompute the hash chain and checkpoint signatures (``ok`` false names the first broken seq)."""
    return audit_svc.verify_chain(s, from_seq=from_seq).as_dict()


@router.post("/audit/checkpoint")
def checkpoint(s: Session = DbSession) -> dict[str, Any]:
    """Sign the current head of the chain."""
    cp = audit_svc.checkpoint(s)
    if cp is None:
        raise HTTPException(status_code=422, detail="audit checkpoint: the audit log is empty")
    return {"seq": cp.seq, "hash": cp.hash, "ts": audit_svc.ts_text(cp.ts), "kind": cp.kind,
            "key_id": cp.key_id, "signature": cp.signature}


@router.get("/audit/log")
def log(from_seq: int = Query(1, ge=1, le=MAX_ROW_ID, alias="from"), limit: int = Query(100, ge=1, le=1000),
        action: str | None = None, subject: str | None = None,
        s: Session = DbSession) -> list[dict[str, Any]]:
    """Audit entries in sequence order."""
    q = select(AuditEntry).where(AuditEntry.seq >= from_seq).order_by(AuditEntry.seq).limit(limit)  # type: ignore[arg-type]
    if action:
        q = q.where(AuditEntry.action == action)  # type: ignore[arg-type]
    if subject:
        q = q.where(AuditEntry.subject == subject)  # type: ignore[arg-type]
    return [{"seq": e.seq, "ts": audit_svc.ts_text(e.ts), "actor": e.actor, "action": e.action,
             "subject": e.subject, "payload": json.loads(e.payload), "prev_hash": e.prev_hash, "hash": e.hash}
            for e in s.execute(q).scalars()]
