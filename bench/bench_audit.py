"""Benchmark exports and the audit trail: 1,000,000 decision records exported, a 1,000,000-entry chain verified.

Usage: ``.venv/bin/python bench/bench_audit.py [--quick] [--entries N] [--db URL] [--keep]``

The records are admission decisions (``admission_decision``, exported as kind ``decisions``). Each
measurement runs in a fresh child process so its peak RSS is its own. Printed side by side, same data:

* export to CSV and to JSON through ``agent.exports.run_export`` (server-side cursor / fetchmany in
  batches, rows written as they arrive, SHA-256 while writing, signed manifest) against a naive baseline
  that loads every row through the ORM into a list of dicts and then writes it (``csv.DictWriter``/``json.dump``);
* ``agent.audit.verify_chain`` (keyset-paginated batches of plain column tuples, preformatted canonical
  JSON) against a naive loop: ORM-load the whole table, ``json.dumps(dict, sort_keys=True)`` and
  ``hashlib.sha256`` per entry.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PERIOD = (date(2025, 1, 1), date(2026, 12, 31))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(url: str, n: int) -> float:
    """Write ``n`` chained entries (valid hashes) in bulk; returns seconds."""
    from sqlalchemy import insert

    from agent import audit
    from agent.store import session_scope
    from agent.store.tables.audit import AuditEntry

    t0 = time.perf_counter()
    base = datetime(2025, 3, 1, tzinfo=UTC)
    prev = audit.GENESIS
    actions = ["admission.decide", "holding.update", "case.open", "cap.evaluate"]
    batch: list[dict[str, Any]] = []
    with session_scope(url) as s:
        for i in range(1, n + 1):
            ts = base + timedelta(seconds=i * 30)
            payload = audit.canonical_json({"decision": "allow" if i % 7 else "hold", "namespace": f"team-{i % 97}",
                                            "gpus": i % 64, "tpp": (i % 64) * 15832,
                                            "packs": {"ai-diffusion-2025": "2025.01.15-r1"}})
            actor, action, subject = f"webhook:replica-{i % 3}", actions[i % 4], f"job:ns-{i % 97}/train-{i}"
            h = audit.entry_hash(i, audit.ts_text(ts), actor, action, subject, payload, prev)
            batch.append({"seq": i, "ts": ts, "actor": actor, "action": action, "subject": subject,
                          "payload": payload, "prev_hash": prev, "hash": h})
            prev = h
            if len(batch) == 20_000:
                s.execute(insert(AuditEntry), batch)
                batch.clear()
        if batch:
            s.execute(insert(AuditEntry), batch)
        audit.sign_checkpoint(s, n, prev, kind="periodic")
    return time.perf_counter() - t0


def seed_decisions(url: str, n: int) -> float:
    """Write ``n`` admission decisions (the webhook's records) in bulk; returns seconds."""
    from sqlalchemy import insert

    from agent.store import session_scope
    from agent.store.tables.cases import AdmissionDecision

    t0 = time.perf_counter()
    base = datetime(2025, 3, 1, tzinfo=UTC)
    codes = ["allowed", "allowed", "allowed", "held-inquiry", "allowed-below-threshold", "denied-no-customer"]
    packs = json.dumps({"ai-diffusion-2025": "2025.01.15-r1", "operator-defaults": "2026.11-r1"})
    batch: list[dict[str, Any]] = []
    with session_scope(url) as s:
        for i in range(1, n + 1):
            code = codes[i % len(codes)]
            batch.append({
                "id": i, "uid": f"uid-{i:08d}", "decided_at": base + timedelta(seconds=i * 30), "as_of": "2025-06-01",
                "namespace": f"team-{i % 97}", "kind": "Job", "name": f"train-{i}", "operation": "CREATE",
                "job_ref": f"cluster-a/team-{i % 97}/Job/train-{i}", "customer_name": f"Customer {i % 97}",
                "model_key": f"model-{i % 1000}", "code": code, "allowed": code.startswith("allowed"),
                "mode": "enforce", "chips": float(i % 64), "run_operations": (i % 64) * 1.2e22,
                "lineage_operations": (i % 640) * 1.5e23, "case_id": None,
                "message": f"{code}: estimated {(i % 640) * 1.5e23:.3g} operations for the model lineage",
                "pack_versions": packs, "detail": "{}"})
            if len(batch) == 20_000:
                s.execute(insert(AdmissionDecision), batch)
                batch.clear()
        if batch:
            s.execute(insert(AdmissionDecision), batch)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------------------- children


def child_export(url: str, fmt: str, out: str, kind: str = "decisions") -> dict[str, Any]:
    from agent import exports
    from agent.packs import registry
    from agent.store import get_engine, session_scope

    packs = registry()
    get_engine(url)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    with session_scope(url) as s:
        m = exports.run_export(s, packs, kind, *PERIOD, [fmt], Path(out), actor="bench")
    dt = time.perf_counter() - t0
    rows = sum(f["rows"] or 0 for f in m["files"])
    return {"seconds": dt, "rows": rows, "bytes": sum(f["bytes"] for f in m["files"]), "rss_before_mb": rss0,
            "peak_rss_mb": _rss_mb()}


def child_export_naive(url: str, fmt: str, out: str) -> dict[str, Any]:
    from sqlmodel import Session, select

    from agent.store import get_engine
    from agent.store.tables.cases import AdmissionDecision

    get_engine(url)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    with Session(get_engine(url)) as s:
        rows = [r.model_dump(mode="json") for r in
                s.exec(select(AdmissionDecision).order_by(AdmissionDecision.id)).all()]  # type: ignore[arg-type]
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / f"naive.{fmt}"
    with path.open("w", newline="", encoding="utf-8") as f:
        if fmt == "csv":
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        else:
            json.dump({"decisions": rows}, f)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    dt = time.perf_counter() - t0
    return {"seconds": dt, "rows": len(rows), "bytes": path.stat().st_size, "rss_before_mb": rss0,
            "peak_rss_mb": _rss_mb(), "sha256": digest}


def child_verify(url: str) -> dict[str, Any]:
    from agent import audit
    from agent.store import get_engine, session_scope

    get_engine(url)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    with session_scope(url) as s:
        res = audit.verify_chain(s)
    return {"seconds": time.perf_counter() - t0, "rows": res.checked, "ok": res.ok, "rss_before_mb": rss0,
            "peak_rss_mb": _rss_mb()}


def child_verify_naive(url: str) -> dict[str, Any]:
    from sqlmodel import Session, select

    from agent.store import get_engine
    from agent.store.tables.audit import AuditEntry

    get_engine(url)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    ok, prev, n = True, "0" * 64, 0
    with Session(get_engine(url)) as s:
        for e in s.exec(select(AuditEntry).order_by(AuditEntry.seq)).all():  # type: ignore[arg-type]
            body = {"action": e.action, "actor": e.actor, "payload": json.loads(e.payload), "prev_hash": e.prev_hash,
                    "seq": e.seq, "subject": e.subject,
                    "ts": e.ts.astimezone(UTC).isoformat(timespec="microseconds")}
            h = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False).encode()).hexdigest()
            ok = ok and h == e.hash and e.prev_hash == prev
            prev = e.hash
            n += 1
    return {"seconds": time.perf_counter() - t0, "rows": n, "ok": ok, "rss_before_mb": rss0,
            "peak_rss_mb": _rss_mb()}


CHILDREN = {"export": child_export, "export-naive": child_export_naive, "verify": child_verify,
            "verify-naive": child_verify_naive}


def run_child(name: str, *args: str) -> dict[str, Any]:
    env = {**os.environ}
    r = subprocess.run([sys.executable, __file__, "--child", name, *args], capture_output=True, text=True,
                       env=env, timeout=7200)
    if r.returncode != 0:
        raise SystemExit(f"{name} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _line(label: str, d: dict[str, Any]) -> str:
    rate = d["rows"] / d["seconds"] if d["seconds"] else 0
    extra = f"{d['bytes'] / 1e6:8.1f} MB written" if "bytes" in d else f"ok={d.get('ok')}"
    return (f"  {label:<34} {d['seconds']:8.2f} s  {rate:>10,.0f} rows/s  peak RSS {d['peak_rss_mb']:7.1f} MB "
            f"(+{d['peak_rss_mb'] - d['rss_before_mb']:6.1f} over start)  {extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 entries (smoke size)")
    ap.add_argument("--entries", type=int, default=None)
    ap.add_argument("--db", default=None, help="Database URL (default: a fresh SQLite file)")
    ap.add_argument("--keep", action="store_true", help="Keep the temporary directory")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(CHILDREN[a.child](*a.args)))
        return
    n = a.entries or (20_000 if a.quick else 1_000_000)
    work = Path(tempfile.mkdtemp(prefix="veu-bench-audit-"))
    os.environ.setdefault("VEU_SIGNING_KEY_FILE", str(work / "signing.key"))
    os.environ["VEU_AUDIT_CHECKPOINT_EVERY"] = "0"
    url = a.db or f"sqlite:///{work / 'bench.db'}"
    try:
        print(f"bench_audit: {n:,} admission decisions and a {n:,}-entry audit chain on {url.split('://')[0]} "
              "(child processes measure their own peak RSS)")
        print(f"  seeding decisions ... {seed_decisions(url, n):.1f} s; seeding a valid hash chain ... "
              f"{seed(url, n):.1f} s")
        print("export of the decisions (kind `decisions`, whole period):")
        for fmt in ("csv", "json"):
            print(_line(f"streaming {fmt} (run_export)", run_child("export", url, fmt, str(work / f"s-{fmt}"))))
            print(_line(f"baseline {fmt} (load all, then write)",
                        run_child("export-naive", url, fmt, str(work / f"n-{fmt}"))))
        print("verification of the whole chain:")
        print(_line("verify_chain (batched)", run_child("verify", url)))
        print(_line("baseline (ORM load all + hashlib loop)", run_child("verify-naive", url)))
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
