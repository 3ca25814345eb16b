"""Bench: caps recomputation over 1,000,000 holdings and the dashboard overview's server time.

On SQLite and on PostgreSQL (127.0.0.1:5432), with the same fleet: the caps engine (one aggregated SQL
query, exact arithmetic over the groups) side by side with a naive baseline that loads every holding and
sums per-holding TPP in Python. Prints wall time and peak Python memory (tracemalloc) for each, checks that
both give the same figures, and times GET / (the caps overview page, rendered by the server).

    .venv/bin/python bench/bench_caps.py            # 1,000,000 holdings
    .venv/bin/python bench/bench_caps.py --quick    # 20,000 holdings (smoke)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_ADMIN = os.environ.get("VEU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
AS_OF = date(2026, 6, 1)
COUNTRIES = ["US", "US", "US", "DE", "JP", "GB", "FR", "NO", "AE", "SG", "IN", "BR", "SA", "MY", "ID"]
CHIPS = ["h100-sxm", "h200-sxm", "b200", "gb200", "a100-sxm4-80gb", "l4", "mi300x"]
OWNERS = ["Bench Corp", "Bench EU", "Bench Asia", "Other Cloud", "Other Cloud 2"]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_mib(fn: Callable[[], Any]) -> float:
    """Peak Python allocations (MiB) while ``fn`` runs; measured in a separate run (tracemalloc slows Python)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def seed(url: str, n: int) -> None:
    """Parties, sites, a UVEU, and ``n`` holdings with their history rows, bulk-loaded."""
    from sqlmodel import select

    from agent import caps as svc
    from agent import parties as party_svc
    from agent.packs import registry
    from agent.store import get_engine, session_scope
    from agent.store.tables.core import Party, Site

    with session_scope(url) as s:
        party_svc.add_party(s, "Bench Corp", "US")
        party_svc.add_party(s, "Bench EU", "DE", parent="Bench Corp")
        party_svc.add_party(s, "Bench Asia", "SG", parent="Bench Corp")
        party_svc.add_party(s, "Other Cloud", "GB")
        party_svc.add_party(s, "Other Cloud 2", "AE")
        for i in range(30):
            party_svc.add_site(s, f"site-{i:02d}", COUNTRIES[i % len(COUNTRIES)])
        svc.add_authorization(s, registry(), "bench-uveu", "uveu", "Bench Corp", None, actor="bench")
        s.flush()
        site_ids = [x.id for x in s.exec(select(Site).order_by(Site.name)).all()]
        party_ids = {p.name: p.id for p in s.exec(select(Party)).all()}
    rnd = random.Random(7)
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    rows = []
    for i in range(n):
        first = t0 + timedelta(hours=rnd.randrange(0, 24 * 600))
        retired = first + timedelta(days=rnd.randrange(30, 400)) if rnd.random() < 0.1 else None
        owner = party_ids[OWNERS[rnd.randrange(len(OWNERS))]]
        rows.append((i + 1, "bench", f"h{i}", site_ids[rnd.randrange(len(site_ids))], CHIPS[rnd.randrange(len(CHIPS))],
                     float(rnd.choice((1, 2, 4, 8, 8, 8))), owner, owner, first, retired))
    eng = get_engine(url)
    cols_h = "id, source, external_id, site_id, accelerator, count, owner_id, operator_id, serial, instance_type, " \
             "scope, first_seen, last_seen, retired_at"
    cols_p = "holding_id, site_id, accelerator, count, owner_id, operator_id, valid_from, valid_to"
    if url.startswith("postgresql"):
        raw = eng.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY holding ({cols_h}) FROM STDIN") as cp:  # type: ignore[attr-defined]
                for r in rows:
                    cp.write_row((*r[:8], "", "", "", r[8], r[8], r[9]))
            with cur.copy(f"COPY holding_period ({cols_p}) FROM STDIN") as cp:  # type: ignore[attr-defined]
                for r in rows:
                    cp.write_row((r[0], r[3], r[4], r[5], r[6], r[7], r[8], r[9]))
            cur.execute("SELECT setval('holding_id_seq', %s)", (n + 1,))
            cur.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()
    else:
        raw = eng.raw_connection()
        try:
            cur = raw.cursor()
            cur.executemany(f"INSERT INTO holding ({cols_h}) VALUES (?,?,?,?,?,?,?,?,'','','',?,?,?)",
                            [(*r[:8], r[8].isoformat(sep=" "), r[8].isoformat(sep=" "),
                              r[9].isoformat(sep=" ") if r[9] else None) for r in rows])
            cur.executemany(f"INSERT INTO holding_period ({cols_p}) VALUES (?,?,?,?,?,?,?,?)",
                            [(r[0], r[3], r[4], r[5], r[6], r[7], r[8].isoformat(sep=" "),
                              r[9].isoformat(sep=" ") if r[9] else None) for r in rows])
            cur.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()


def engine_caps(url: str) -> dict[str, Fraction]:
    from agent import caps as svc
    from agent.packs import registry
    from agent.store import session_scope

    with session_scope(url) as s:
        return {c.id: c.value for c in svc.caps_for(s, registry(), "bench-uveu", AS_OF) if c.binding}


def naive_caps(url: str) -> dict[str, Fraction]:
    """Baseline: read every holding as an ORM object, filter by date and sum per-holding TPP in Python."""
    from sqlmodel import select

    from agent import caps as svc
    from agent.packs import registry
    from agent.parties import party_refs
    from agent.store import session_scope
    from agent.store.tables.core import Holding, Party, Site
    from policies import caps as core
    from policies.jurisdictions import tier

    packs = registry()
    end = core.last_instant(AS_OF)
    counted = core.counted_eccns(packs, AS_OF)
    with session_scope(url) as s:
        group = set(core.corporate_group(party_refs(s), "Bench Corp"))
        sites = {x.id: x.country for x in s.exec(select(Site)).all()}
        site_tier = {sid: tier(packs, cc, AS_OF).tier for sid, cc in sites.items()}
        names = {p.id: p.name for p in s.exec(select(Party)).all()}
        total, outside, outside_us, tier3 = Fraction(0), Fraction(0), Fraction(0), Fraction(0)
        per_country: dict[str, Fraction] = {}
        for h in s.exec(select(Holding)).all():
            if not (h.first_seen <= end and (h.retired_at is None or h.retired_at > end)):
                continue
            if names.get(h.owner_id) not in group:
                continue
            info = svc.chip(packs, h.accelerator, AS_OF)
            if not core.counts(info.eccn, counted):
                continue
            tpp = core.exact(h.count) * info.fraction * info.tpp
            cc = sites[h.site_id]
            t = site_tier[h.site_id]
            total += tpp
            if t != 1:
                outside += tpp
                per_country[cc] = per_country.get(cc, Fraction(0)) + tpp
            if t == 3:
                tier3 += tpp
            if cc != "US":
                outside_us += tpp
    out = {"uveu.outside_tier1.owned": outside / total, "uveu.outside_us.owned": outside_us / total,
           "uveu.excluded_locations.owned": tier3}
    out.update({f"uveu.single_country.{cc}.owned": v / total for cc, v in per_country.items()})
    return out


def overview_times(url: str) -> tuple[float, float, int]:
    """Server time of GET / (the caps overview page): first request and a second, warm one."""
    os.environ["VEU_AUTH"] = "none"
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    with TestClient(create_app(url)) as client:
        client.get("/healthz")
        r, cold = timed(lambda: client.get("/", params={"as_of": AS_OF.isoformat()}))
        _r, warm = timed(lambda: client.get("/", params={"as_of": AS_OF.isoformat()}))
    return cold, warm, r.status_code


def run(label: str, url: str, n: int) -> None:
    _, dt = timed(lambda: seed(url, n))
    print(f"[{label}] seeded {n:,} holdings (+ history rows) in {dt:.1f} s", flush=True)
    engine_caps(url)  # warm the catalog, packs and connection pool for both paths
    ours, t_ours = timed(lambda: engine_caps(url))
    rss0 = rss_mib()
    base, t_base = timed(lambda: naive_caps(url))
    rss_base = rss_mib() - rss0
    m_ours = peak_mib(lambda: engine_caps(url))
    # tracemalloc slows the per-holding Python loop several-fold; at full size the baseline is run once and its
    # memory is the growth of the process's peak RSS during that run (the engine's is under 1 MiB either way).
    m_base = peak_mib(lambda: naive_caps(url)) if n <= 100_000 else rss_base
    how = "tracemalloc" if n <= 100_000 else "peak-RSS growth"
    same = ours == base
    print(f"[{label}] caps recomputation   engine (aggregated SQL):  {t_ours:8.3f} s  peak {m_ours:8.1f} MiB")
    print(f"[{label}] caps recomputation   baseline (per holding):   {t_base:8.3f} s  peak {m_base:8.1f} MiB ({how})"
          f"   -> engine {t_base / t_ours:.1f}x faster; same figures: {same}", flush=True)
    cold, warm, status = overview_times(url)
    m_page = peak_mib(lambda: overview_times(url))
    print(f"[{label}] dashboard overview GET / (caps, allocations, 13-point history chart): first {cold:.3f} s, "
          f"warm {warm:.3f} s  HTTP {status}  peak {m_page:.1f} MiB", flush=True)
    if not same:
        for k in sorted(set(ours) | set(base)):
            print(f"    {k}: engine {float(ours.get(k, -1)):.6f} baseline {float(base.get(k, -1)):.6f}")
        raise SystemExit(f"[{label}] engine and baseline disagree")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 holdings instead of 1,000,000")
    ap.add_argument("--holdings", type=int, default=None)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    n = args.holdings or (20_000 if args.quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="veu-bench-") as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        os.environ["VEU_DATABASE_URL"] = url
        run("sqlite", url, n)
        from agent.store.db import dispose_all

        dispose_all()
    if args.skip_postgres:
        return
    import psycopg

    name = f"veu_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        os.environ["VEU_DATABASE_URL"] = url
        run("postgresql", url, n)
    finally:
        from agent.store.db import dispose_all

        dispose_all()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
