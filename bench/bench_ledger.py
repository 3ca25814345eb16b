"""Benchmark the estimator and the model-ledger roll-up: 100k models (lineage depth <= 5), 1M runs, all statuses.

Usage: ``.venv/bin/python bench/bench_ledger.py [--quick] [--models N] [--runs N] [--seed S] [--store]``

Prints, measured in the same run on the same data:

* estimator: estimates per second for 6·N·D and the hardware method, against the bare arithmetic
  (the baseline: the same multiplications with no validation, band or explanation);
* ledger: the time and peak memory to evaluate the status of every model as of a date with
  ``policies.ledger.Ledger`` (memoized, every 4E091 rule), against a naive baseline that recomputes each
  model's base chain from scratch (own runs + base, recursively, no memo, no synthetic-data or exclusion
  rules). Peak memory is from ``tracemalloc`` in a separate pass (tracemalloc slows Python down, so timing
  runs without it), plus the process's maximum RSS;
* with ``--store``: the same ledger loaded from a SQLite store (bulk-inserted first) through
  ``agent.ledger.load_records``, and one model's lineage loaded for an admission decision.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.kb import catalog
from agent.packs import registry
from policies import compute
from policies.compute import EstimationDefaults
from policies.ledger import Determination, Ledger, ModelRecord, Run, SyntheticInput, regime

AS_OF = date(2026, 6, 1)
MAX_DEPTH = 5


def build(n_models: int, n_runs: int, seed: int) -> dict[str, ModelRecord]:
    """Synthetic ledger: 20% roots, others fine-tuned from an earlier model with depth <= 5; ~5% published,
    ~5% trained on a generator's data, ~1% with a determination; runs spread over 2024-2027."""
    rng = random.Random(seed)
    names = [f"model-{i:06d}" for i in range(n_models)]
    depth = [0] * n_models
    base: list[int | None] = [None] * n_models
    for i in range(n_models):
        if i > 10 and rng.random() > 0.2:
            for _ in range(4):
                b = rng.randrange(i)
                if depth[b] < MAX_DEPTH - 1:
                    base[i], depth[i] = b, depth[b] + 1
                    break
    runs: list[list[Run]] = [[] for _ in range(n_models)]
    start = date(2024, 1, 1)
    for _ in range(n_runs):
        i = rng.randrange(n_models)
        ops = 10 ** rng.uniform(20, 25.3)
        runs[i].append(Run(ops, "declared-operations", start + timedelta(days=rng.randrange(4 * 365))))
    out: dict[str, ModelRecord] = {}
    for i, n in enumerate(names):
        synth: tuple[SyntheticInput, ...] = ()
        if i > 10 and rng.random() < 0.05:
            g = rng.randrange(i)
            synth = (SyntheticInput(names[g], rng.uniform(0.02, 0.4), 10 ** rng.uniform(20, 23)),)
        dets: tuple[Determination, ...] = ()
        if rng.random() < 0.01:
            dets = (Determination(True, "bench", date(2025, 1, 1), "bench"),)
        b = base[i]
        out[n] = ModelRecord(
            name=n, owner=f"party-{i % 10000}", base=names[b] if b is not None else None,
            published=rng.random() < 0.05, runs=tuple(runs[i]), synthetic=synth, determinations=dets,
        )
    return out


def naive_totals(records: dict[str, ModelRecord]) -> dict[str, float]:
    """Baseline: own runs + base total, recomputed recursively for every model (no memo, no rules)."""

    def total(n: str) -> float:
        r = records[n]
        own = sum(x.operations for x in r.runs if x.start is None or x.start <= AS_OF)
        return own + (total(r.base) if r.base else 0.0)

    return {n: total(n) for n in records}


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def peak_mib(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def bench_estimator(n: int) -> None:
    packs = registry()
    d = EstimationDefaults.from_packs(packs, AS_OF)
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    rng = random.Random(1)
    inputs = [(10 ** rng.uniform(9, 12), 10 ** rng.uniform(11, 14), rng.randint(8, 20000), rng.uniform(1, 2000))
              for _ in range(n)]
    t_decl, _ = timed(lambda: [compute.declared_6nd(d, params=p, tokens=t) for p, t, _, _ in inputs])
    t_hw, _ = timed(lambda: [compute.hardware(d, h100, count=c, hours=h) for _, _, c, h in inputs])
    peak = h100.peak_flops("BF16")
    t_base, _ = timed(lambda: [(6 * p * t, c * h * 3600 * peak * 0.35) for p, t, c, h in inputs])
    print(f"estimator: {n:,} inputs")
    print(f"  declared 6·N·D        {n / t_decl:12,.0f} estimates/s  ({t_decl * 1e6 / n:6.2f} µs each)")
    print(f"  hardware              {n / t_hw:12,.0f} estimates/s  ({t_hw * 1e6 / n:6.2f} µs each)")
    print(f"  baseline arithmetic   {2 * n / t_base:12,.0f} estimates/s  ({t_base * 1e6 / (2 * n):6.2f} µs each)")


def bench_ledger(records: dict[str, ModelRecord]) -> None:
    packs = registry()
    rules = regime(packs, "eccn-4e091", AS_OF)
    n_runs = sum(len(r.runs) for r in records.values())

    def evaluate() -> dict[str, int]:
        counts: dict[str, int] = {}
        for st in Ledger(records, rules, AS_OF).statuses():
            counts[st.status] = counts.get(st.status, 0) + 1
        return counts

    t_ledger, counts = timed(evaluate)
    t_naive, _ = timed(lambda: naive_totals(records))
    mem_ledger = peak_mib(evaluate)
    mem_naive = peak_mib(lambda: naive_totals(records))
    t_explain, _ = timed(lambda: [Ledger(records, rules, AS_OF).status(n).explanation
                                  for n in list(records)[:10000]])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ledger: {len(records):,} models, {n_runs:,} runs, lineage depth <= {MAX_DEPTH}, as of {AS_OF}")
    print(f"  statuses: {dict(sorted(counts.items()))}")
    print(f"  veu-governor Ledger  {t_ledger:7.2f} s   peak {mem_ledger:8.1f} MiB (tracemalloc, evaluation only)")
    print(f"  naive baseline       {t_naive:7.2f} s   peak {mem_naive:8.1f} MiB (no memo, no 4E091 rules)")
    print(f"  explanations         {t_explain * 1e6 / 10000:7.1f} µs per model (10k rendered)")
    print(f"  process max RSS      {rss:7.1f} MiB (includes the generated data set)")


def bench_store(records: dict[str, ModelRecord], path: Path) -> None:
    from sqlalchemy import insert
    from sqlmodel import Session

    from agent import ledger as svc
    from agent.store.db import get_engine
    from agent.store.tables.core import Party, utcnow
    from agent.store.tables.ledger import LedgerModel, LedgerRun, LedgerSyntheticInput

    if path.exists():
        path.unlink()
    url = f"sqlite:///{path}"
    eng = get_engine(url)
    names = list(records)
    ids = {n: i + 1 for i, n in enumerate(names)}
    now = utcnow()
    t0 = time.perf_counter()
    with eng.begin() as c:
        owners = sorted({r.owner for r in records.values()})
        oid = {o: i + 1 for i, o in enumerate(owners)}
        c.execute(insert(Party), [{"id": oid[o], "name": o, "hq": "US", "created_at": now, "updated_at": now}
                                  for o in owners])
        c.execute(insert(LedgerModel), [
            {"id": ids[n], "name": n, "owner_id": oid[r.owner], "base_id": ids[r.base] if r.base else None,
             "published": r.published, "published_on": None, "created_at": now, "updated_at": now}
            for n, r in records.items()])
        batch: list[dict[str, Any]] = []
        for n, r in records.items():
            for x in r.runs:
                batch.append({"model_id": ids[n], "operations": x.operations, "low": x.operations,
                              "high": x.operations, "method": x.method, "period_start": x.start, "period_end": None,
                              "site": "", "job_ref": "", "explanation": "", "inputs": {}, "recorded_by": "bench",
                              "created_at": now})
                if len(batch) >= 50000:
                    c.execute(insert(LedgerRun), batch)
                    batch = []
        if batch:
            c.execute(insert(LedgerRun), batch)
        c.execute(insert(LedgerSyntheticInput), [
            {"model_id": ids[n], "generator_id": ids[s.generator], "fraction": s.fraction,
             "generation_operations": s.generation_operations, "since": None, "recorded_by": "bench",
             "created_at": now}
            for n, r in records.items() for s in r.synthetic])
    t_insert = time.perf_counter() - t0
    packs = registry()
    with Session(eng) as s:
        t_load, loaded = timed(lambda: svc.load_records(s, None, AS_OF))
        rules = regime(packs, "eccn-4e091", AS_OF)
        t_eval, _ = timed(lambda: list(Ledger(loaded, rules, AS_OF).statuses()))
        deepest = max(names, key=lambda n: (records[n].base is not None, n))
        t_one, _ = timed(lambda: svc.admission_lineage(s, packs, deepest, AS_OF))
    print(f"store (SQLite {path}): bulk insert {t_insert:.1f} s")
    print(f"  load all records     {t_load:7.2f} s   evaluate {t_eval:.2f} s")
    print(f"  one lineage (admission_lineage) {t_one * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small smoke size (2k models, 20k runs)")
    ap.add_argument("--models", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--store", action="store_true", help="also bulk-load a SQLite store and time load_records")
    ap.add_argument("--store-path", default="/tmp/veu-bench-ledger.db")
    a = ap.parse_args()
    n_models, n_runs = (2_000, 20_000) if a.quick else (a.models, a.runs)
    bench_estimator(20_000 if a.quick else 200_000)
    t, records = timed(lambda: build(n_models, n_runs, a.seed))
    print(f"generated {n_models:,} models / {n_runs:,} runs in {t:.1f} s")
    bench_ledger(records)
    if a.store:
        bench_store(records, Path(a.store_path))


if __name__ == "__main__":
    main()
