"""Benchmark: the real red-flag-28 webhook over HTTPS against a bare FastAPI echo webhook, same run, same machine.

Both servers run as separate uvicorn processes with TLS on 127.0.0.1, one worker each, and are measured
taking turns (each server's reviews in slices, alternating), so the machine's other load falls on both.
The real webhook (``veuctl serve --webhook-only``, the port the chart deploys; ``--full-app`` for the
combined API+dashboard server) answers from a warm PostgreSQL store of 10k customers (namespace mappings, HQs in
Tier 1/2/3 countries), 100k ledger models with runs and 100k earlier decisions with their audit chain
(months of history, so the related-jobs lookups and the chain append work on tables of production shape, not
on empty ones); every review is a CREATE that is evaluated and
recorded (decision row, audit entry, cases for held jobs). The echo webhook parses the review and
answers ``allowed: true`` with the uid: the floor any Python webhook pays for TLS, HTTP and JSON.
After the run the bench checks what the real webhook recorded: one ``admission.decide`` audit entry per
decision, and the whole hash chain verifies (no record was skipped or weakened to win the race).

Two phases, each server's reviews in alternating slices:
- throughput: a closed loop at fixed concurrency (8), saturating each server: reviews/s (and, printed for
  completeness, the latency there, which is only concurrency / throughput by Little's law);
- latency: an open loop at the same offered load for both (by default half the real webhook's measured
  throughput; each request sent on schedule, its latency counted from its scheduled time): p50/p99 as
  the API server sees them when the webhook is not overloaded.

Both phases print each server's CPU per review (the real webhook's PostgreSQL apart) and the host's CPU
steal during its slices: on a shared VM those are steadier than latencies, and they show when a run was
noisy for one server more than the other. The load generator is aiohttp: with httpx it cost more CPU per
review than either server on these two cores and capped the echo at a fraction of its throughput.

Targets (issue 5): p99 within 2x of the echo (latency phase), throughput at least 40% of the echo's.

    .venv/bin/python bench/bench_webhook.py            # full: 10k customers, 100k models, 4000 reviews
    .venv/bin/python bench/bench_webhook.py --quick    # smoke: 500 customers, 5k models, 400 reviews

The load is bounded (a fixed number of reviews at fixed concurrency) and goes only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Connections stay open between slices on both sides: the echo is told the keep-alive the real server uses,
# and the client keeps idle connections that long too (aiohttp's default is 15 s).
from agent.server import KEEP_ALIVE_SECONDS as KEEP_ALIVE  # noqa: E402

PG_ADMIN = os.environ.get("VEU_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
TIER1 = ["US", "GB", "DE", "FR", "JP", "CA", "NL", "IE"]
TIER2 = ["AE", "SA", "IN", "SG", "BR", "MY", "IL", "MX"]
TIER3 = ["MO", "CN"]

ECHO_APP = textwrap.dedent('''
    import json
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    app = FastAPI()

    @app.post("/validate")
    async def validate(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        uid = body["request"]["uid"]
        return JSONResponse({"apiVersion": body["apiVersion"], "kind": "AdmissionReview",
                             "response": {"uid": uid, "allowed": True}})
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_pki(d: Path) -> tuple[Path, Path, Path]:
    sys.path.insert(0, str(ROOT / "tests" / "webhook"))
    from tlsutil import CA  # the same throwaway CA the tests use

    ca = CA()
    cert, key = d / "tls.crt", d / "tls.key"
    ca.issue(cert, key)
    return ca.write_ca(d / "ca.crt"), cert, key


def create_db() -> tuple[str, str]:
    import psycopg

    name = f"veu_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name


def drop_db(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(url: str, customers: int, models: int, rng: random.Random, history: int = 0) -> list[tuple[str, list[str]]]:
    """Bulk-load parties, namespace mappings, ledger models and runs; return (namespace, models) per customer."""
    from sqlalchemy import insert

    from agent.store import get_engine
    from agent.store.tables.core import Party, PartyNamespace, utcnow
    from agent.store.tables.ledger import LedgerModel, LedgerRun

    eng = get_engine(url)
    now = utcnow()
    parties, mappings = [], []
    for i in range(customers):
        r = rng.random()
        hq = rng.choice(TIER1 if r < 0.45 else TIER2 if r < 0.97 else TIER3)
        parties.append({"id": i + 1, "name": f"customer-{i:05d}", "hq": hq, "parent_id": None,
                        "created_at": now, "updated_at": now})
        mappings.append({"cluster": "", "namespace": f"ns-{i:05d}", "party_id": i + 1, "created_at": now})
    # A tenth of the customers are subsidiaries (the ultimate-parent walk is on the hot path).
    for p in parties[1::10]:
        p["parent_id"] = rng.randint(1, customers)
        if p["parent_id"] == p["id"]:
            p["parent_id"] = None
    rows_m, rows_r = [], []
    per: dict[int, list[str]] = {}
    for j in range(models):
        owner = rng.randint(1, customers)
        name = f"model-{j:06d}"
        per.setdefault(owner, []).append(name)
        rows_m.append({"id": j + 1, "name": name, "owner_id": owner, "base_id": None, "published": False,
                       "published_on": None, "created_at": now, "updated_at": now})
        ops = 10 ** rng.uniform(22, 25.7)
        rows_r.append({"model_id": j + 1, "operations": ops, "low": ops * 0.5, "high": ops * 1.6,
                       "method": "declared-operations", "period_start": date(2026, 1, 1), "period_end": None,
                       "site": "", "job_ref": "", "explanation": "bench", "inputs": {}, "recorded_by": "bench",
                       "created_at": now})
    with eng.begin() as c:
        # Parents reference other parties: insert without parents, then set them.
        c.execute(insert(Party), [{**p, "parent_id": None} for p in parties])
        from sqlalchemy import bindparam, update

        sub = [{"pid": p["id"], "par": p["parent_id"]} for p in parties if p["parent_id"]]
        if sub:
            c.execute(update(Party).where(Party.id == bindparam("pid")).values(parent_id=bindparam("par")), sub)
        c.execute(insert(PartyNamespace), mappings)
        for k in range(0, len(rows_m), 20000):
            c.execute(insert(LedgerModel), rows_m[k:k + 20000])
            c.execute(insert(LedgerRun), rows_r[k:k + 20000])
    seed_history(eng, parties, per, history, rng)
    # A warm store in steady state: vacuumed and analysed now, so no autovacuum of the freshly loaded
    # tables competes for the CPUs while either server is being measured.
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as pc:
        pc.execute("VACUUM ANALYZE")
        # And checkpointed: otherwise the server spends the next minutes writing the load's dirty pages
        # out in the background (checkpoint_completion_target), stalling commits while we measure.
        pc.execute("CHECKPOINT")
    # And the operating system's dirty pages too (the load wrote hundreds of MB): their write-back would
    # stall WAL flushes, i.e. commits, for whichever server happened to be measured then.
    os.sync()
    from agent.store.db import dispose_all

    dispose_all()
    return [(f"ns-{i:05d}", per.get(i + 1, [])) for i in range(customers)]


def seed_history(eng: Any, parties: list[dict[str, Any]], per: dict[int, list[str]], n: int, rng: random.Random
                 ) -> None:
    """``n`` earlier admission decisions over the last 120 days, each with its ``admission.decide`` audit entry.

    A store that has been answering for months, not one whose decision and audit tables start empty: the
    related-jobs and customer-load lookups then read real history, and the audit chain the webhook appends
    to is already long (the bench verifies the whole chain at the end, history included).
    """
    from datetime import timedelta

    from sqlalchemy import insert

    from agent.audit import GENESIS, canonical_json, entry_hash, ts_text
    from agent.store.tables.audit import AuditEntry
    from agent.store.tables.cases import AdmissionDecision

    if n <= 0:
        return
    now = datetime.now(UTC)
    rows, entries = [], []
    prev = GENESIS
    for i, at in enumerate(sorted(now - timedelta(days=rng.uniform(0.01, 120)) for _ in range(n))):
        p = rng.choice(parties)
        names = per.get(p["id"], [])
        model = rng.choice(names) if names and rng.random() < 0.8 else f"unnamed:{p['name']}"
        ops = 10 ** rng.uniform(20, 24.5)
        # Most runs bounded at the default maximum (720 h); some declared short, some for months: those approved
        # before the windows and still running are the sums' second scan (runs_until, migration 0024).
        hours = rng.choice((720.0,) * 7 + (24.0, 2000.0, 8000.0))
        job = f"ns-{p['id'] - 1:05d}/Job/hist-{i}"
        rows.append({"id": i + 1, "uid": str(uuid.UUID(int=rng.getrandbits(128))), "decided_at": at,
                     "as_of": at.date().isoformat(), "namespace": f"ns-{p['id'] - 1:05d}", "kind": "Job",
                     "name": f"hist-{i}", "operation": "CREATE", "job_ref": job, "customer_id": p["id"],
                     "customer_name": p["name"], "model_key": model, "code": "ALLOW", "allowed": True,
                     "mode": "enforce", "chips": 64.0, "run_operations": ops, "lineage_operations": ops,
                     "case_id": None, "message": "below the threshold", "pack_versions": "{}",
                     "detail": json.dumps({"hours": hours}), "runs_until": at + timedelta(hours=hours)})
        body = canonical_json({"uid": rows[-1]["uid"], "code": "ALLOW", "allowed": True, "mode": "enforce",
                               "customer": p["name"], "model": model, "estimate": ops, "case_id": None,
                               "pack_versions": {}, "decision_id": i + 1})
        ts, subject = ts_text(at), f"job:{job}"
        h = entry_hash(i + 1, ts, "webhook", "admission.decide", subject, body, prev)
        entries.append({"seq": i + 1, "ts": at, "actor": "webhook", "action": "admission.decide",
                        "subject": subject, "payload": body, "prev_hash": prev, "hash": h})
        prev = h
    with eng.begin() as c:
        for k in range(0, n, 20000):
            c.execute(insert(AdmissionDecision), rows[k:k + 20000])
            c.execute(insert(AuditEntry), entries[k:k + 20000])
        c.exec_driver_sql("SELECT setval(pg_get_serial_sequence('admission_decision', 'id'), %s)", (n,))


def reviews(n: int, tenants: list[tuple[str, list[str]]], rng: random.Random) -> list[bytes]:
    out = []
    for i in range(n):
        ns, models = rng.choice(tenants)
        ann = {"compute.veu-governor.io/expected-hours": str(rng.choice([24, 168, 720, 8000]))}
        if models and rng.random() < 0.8:
            ann["compute.veu-governor.io/model"] = rng.choice(models)
        pods = rng.choice([1, 4, 16, 64, 256, 1024])
        obj = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": f"job-{i}", "namespace": ns, "annotations": ann},
               "spec": {"parallelism": pods, "template": {"spec": {
                   "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                   "containers": [{"name": "t", "image": "train:1",
                                   "resources": {"limits": {"nvidia.com/gpu": "8", "cpu": "32"}}}]}}}}
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": str(uuid.UUID(int=rng.getrandbits(128))), "kind": {"group": "batch", "version": "v1", "kind": "Job"},
            "resource": {"group": "batch", "version": "v1", "resource": "jobs"}, "namespace": ns,
            "operation": "CREATE", "userInfo": {"username": "bench"}, "object": obj, "dryRun": False}}
        out.append(json.dumps(body).encode())
    return out


def start(cmd: list[str], port: int, ca: Path, env: dict[str, str], log: Path, probe: str = "/healthz"
          ) -> subprocess.Popen[bytes]:
    import httpx

    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"https://127.0.0.1:{port}{probe}", verify=ctx, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("server did not start within 120 s")


class Client:
    """A kept-alive HTTPS client for one server (aiohttp: about a third of httpx's CPU per request).

    The load generator shares this 2-core machine with both servers and PostgreSQL: with httpx it spent
    ~4 ms of CPU per review, more than either server, and the contention it caused fell hardest on
    whichever server was slower. ``opened`` counts the TCP connections it has opened.
    """

    def __init__(self, ca: Path, limit: int) -> None:
        import aiohttp

        self.opened = 0
        trace = aiohttp.TraceConfig()

        async def counted(*_args: Any) -> None:
            self.opened += 1

        trace.on_connection_create_end.append(counted)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)), limit=limit,
                                           keepalive_timeout=KEEP_ALIVE),
            trace_configs=[trace], timeout=aiohttp.ClientTimeout(total=30))

    async def review(self, url: str, body: bytes) -> bool:
        """POST one review; True when the answer is an AdmissionReview response."""
        async with self.session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            answer = await r.read()
            return r.status == 200 and b'"response"' in answer

    async def aclose(self) -> None:
        await self.session.close()


async def load(client: Client, url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float], int]:
    """POST every body with ``concurrency`` workers over ``client``'s kept-alive connections."""
    lat: list[float] = []
    errors = 0
    queue = list(reversed(bodies))

    async def worker() -> None:
        nonlocal errors
        while queue:
            body = queue.pop()
            t0 = time.perf_counter()
            ok = await client.review(url, body)
            lat.append(time.perf_counter() - t0)
            errors += not ok

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, lat, errors


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


@contextlib.contextmanager
def client_gc_paused() -> Iterator[None]:
    """No cyclic-GC pass in the load generator while it measures: a full collection of its many request
    objects stalls its event loop for tens of ms, and that stall would be charged to whichever server
    happened to be answering (bounded memory: the run is a fixed number of requests)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def load_at_rate(client: Client, url: str, bodies: list[bytes], rate: float) -> tuple[list[float], int]:
    """Open loop: request i is sent at t0 + i/rate whatever the server is doing, and its latency counts from
    that scheduled time (a slow answer cannot delay the next request and hide itself: no coordinated
    omission)."""
    lat: list[float] = []
    errors = 0

    async def one(body: bytes, due: float) -> None:
        nonlocal errors
        ok = await client.review(url, body)
        lat.append(time.perf_counter() - due)
        errors += not ok

    t0 = time.perf_counter() + 0.05
    tasks = []
    for i, body in enumerate(bodies):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(body, due)))
    await asyncio.gather(*tasks)
    return lat, errors


_TICK = os.sysconf("SC_CLK_TCK")  # /proc's unit of CPU time


class Meter:
    """CPU seconds of groups of processes and the host's stolen CPU time, summed over the slices measured.

    CPU per review is steadier than latency on a shared VM: it does not count time the host gave to other
    guests (steal, printed beside it), nor time spent waiting for the other server's turn to end.
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self._pids: dict[str, list[int]] = {}
        self.cpu = dict.fromkeys(groups, 0.0)
        self.steal = self.wall = 0.0
        self._at: tuple[dict[str, float], float, float] = ({}, 0.0, 0.0)

    @staticmethod
    def _host() -> tuple[float, float]:
        """(all CPU time, stolen time) of the host in seconds, from /proc/stat."""
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f[:8]) / _TICK, f[7] / _TICK

    def _procs(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pids in self._pids.items():
            out[name] = 0.0
            for pid in pids:
                with contextlib.suppress(OSError):
                    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    out[name] += (int(f[11]) + int(f[12])) / _TICK
        return out

    def __enter__(self) -> Meter:
        self._pids = {name: pids() for name, pids in self.groups.items()}  # backends come and go
        self._at = (self._procs(), *self._host())
        return self

    def __exit__(self, *_exc: object) -> None:
        cpu, (all_, steal) = self._procs(), self._host()
        for name in self.groups:
            self.cpu[name] += cpu[name] - self._at[0][name]
        self.wall += all_ - self._at[1]
        self.steal += steal - self._at[2]

    @property
    def steal_pct(self) -> float:
        return 100 * self.steal / self.wall if self.wall else 0.0

    def per_review_ms(self, n: int) -> dict[str, float]:
        return {name: cpu / n * 1000 for name, cpu in self.cpu.items()}


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (its backends do the real webhook's store work)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip().startswith("postgres"):
                    out.append(int(d.name))
    return out


WARM_CONNECTIONS = 16
# label, URL, bodies, and the processes whose CPU it is charged (by group name)
Server = tuple[str, str, list[bytes], dict[str, Callable[[], list[int]]]]


def latency_interleaved(servers: list[Server], rate: float, rounds: int, ca: Path,
                        warm: list[bytes]) -> list[dict[str, Any]]:
    """p50/p99 of each server at the same offered load (``rate`` reviews/s), slices taking turns.

    Each client first opens ``WARM_CONNECTIONS`` kept-alive connections (a closed loop at that concurrency),
    as the API server keeps its connections to a webhook: otherwise a burst would open new ones, and their
    TLS handshakes would land in the measured latency of whichever server was slower, more often.
    """

    async def run() -> list[dict[str, Any]]:
        clients = [Client(ca, 64) for _ in servers]
        acc: list[dict[str, Any]] = [{"lat": [], "errors": 0, "meter": Meter(pids)}
                                     for _label, _url, _bodies, pids in servers]
        try:
            for c, (_label, url, _bodies, _pids) in zip(clients, servers, strict=True):
                await load(c, url, warm, WARM_CONNECTIONS)
            for c, a in zip(clients, acc, strict=True):
                a["warm"] = c.opened
            for r in range(rounds):
                for c, a, (_label, url, bodies, _pids) in zip(clients, acc, servers, strict=True):
                    with a["meter"]:
                        lat, errors = await load_at_rate(c, url, bodies[r::rounds], rate)
                    a["lat"] += lat
                    a["errors"] += errors
            for c, a in zip(clients, acc, strict=True):
                a["opened"] = c.opened - a["warm"]
        finally:
            for c in clients:
                await c.aclose()
        return [{"label": label, "n": len(bodies), "rate": rate, "p50_ms": pct(a["lat"], 50) * 1000,
                 "p99_ms": pct(a["lat"], 99) * 1000, "mean_ms": statistics.fmean(a["lat"]) * 1000,
                 "errors": a["errors"], "opened": a["opened"], "warm": a["warm"],
                 "cpu_ms": a["meter"].per_review_ms(len(bodies)), "steal_pct": a["meter"].steal_pct}
                for a, (label, _url, bodies, _pids) in zip(acc, servers, strict=True)]

    with client_gc_paused():
        return asyncio.run(run())


def run_interleaved(servers: list[Server], warm: list[bytes], rounds: int, conc: int,
                    ca: Path) -> list[dict[str, Any]]:
    """Each server's reviews in ``rounds`` slices, the servers taking turns slice by slice.

    The two are measured over the same stretch of time, so a swing in the machine's other load (this box
    has 2 cores) lands on both instead of on whichever happened to run then. Each server keeps one client
    with ``conc`` kept-alive connections for the whole run (as the API server keeps its connections), so
    TLS handshakes happen in the warm-up, not in the measured slices.
    """

    async def run() -> list[dict[str, Any]]:
        clients = [Client(ca, conc) for _ in servers]
        acc: list[dict[str, Any]] = [{"wall": 0.0, "lat": [], "errors": 0, "meter": Meter(pids)}
                                     for _label, _url, _bodies, pids in servers]
        try:
            for c, (_label, url, _bodies, _pids) in zip(clients, servers, strict=True):
                await load(c, url, warm, conc)
            for r in range(rounds):
                for c, a, (_label, url, bodies, _pids) in zip(clients, acc, servers, strict=True):
                    with a["meter"]:
                        wall, lat, errors = await load(c, url, bodies[r::rounds], conc)
                    a["wall"] += wall
                    a["lat"] += lat
                    a["errors"] += errors
        finally:
            for c in clients:
                await c.aclose()
        return [{"label": label, "n": len(bodies), "rps": len(bodies) / a["wall"],
                 "p50_ms": pct(a["lat"], 50) * 1000, "p99_ms": pct(a["lat"], 99) * 1000,
                 "mean_ms": statistics.fmean(a["lat"]) * 1000, "errors": a["errors"],
                 "cpu_ms": a["meter"].per_review_ms(len(bodies)), "steal_pct": a["meter"].steal_pct}
                for a, (label, _url, bodies, _pids) in zip(acc, servers, strict=True)]

    with client_gc_paused():
        return asyncio.run(run())


def cpu_text(cpu: dict[str, float]) -> str:
    """``1.02`` for a server alone, ``3.10 + 1.20 pg`` for the real webhook and its store."""
    server = f"{cpu['server']:.2f}"
    return server + (f" + {cpu['postgres']:.2f} pg" if "postgres" in cpu else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke size (500 customers, 5k models, 400 reviews)")
    ap.add_argument("--customers", type=int)
    ap.add_argument("--models", type=int)
    ap.add_argument("--reviews", type=int)
    ap.add_argument("--history", type=int, help="earlier decisions (and audit entries) in the warm store")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=28)
    ap.add_argument("--rounds", type=int, default=8, help="slices per server, measured taking turns")
    ap.add_argument("--load-fraction", type=float, default=0.5,
                    help="offered load for the latency phase, as a fraction of the real webhook's throughput")
    ap.add_argument("--latency-reviews", type=int, help="reviews per server in the latency phase")
    ap.add_argument("--full-app", action="store_true",
                    help="serve the webhook from the combined API+dashboard app (default: the webhook-only port the "
                         "chart deploys)")
    a = ap.parse_args()
    customers = a.customers or (500 if a.quick else 10_000)
    models = a.models or (5_000 if a.quick else 100_000)
    n = a.reviews or (400 if a.quick else 4_000)
    history = a.history if a.history is not None else (5_000 if a.quick else 100_000)
    a.latency_reviews = a.latency_reviews or (200 if a.quick else 2_000)
    rng = random.Random(a.seed)
    py = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    url, dbname = create_db()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            ca, cert, key = make_pki(d)
            t0 = time.perf_counter()
            tenants = seed(url, customers, models, rng, history)
            print(f"store: {customers} customers, {models} models, {history} earlier decisions seeded in "
                  f"{time.perf_counter() - t0:.1f} s (PostgreSQL {url.rsplit('@', 1)[-1]})")
            (d / "echo_app.py").write_text(ECHO_APP)
            env = {**os.environ, "VEU_AUTH": "none", "VEU_DATABASE_URL": url, "PYTHONPATH": f"{d}:{ROOT}"}
            env.pop("VEU_POLICY_DIRS", None)
            echo_port, real_port = free_port(), free_port()
            procs.append(start([py, "-m", "uvicorn", "echo_app:app", "--host", "127.0.0.1", "--port", str(echo_port),
                                "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning",
                                "--no-access-log", "--timeout-keep-alive", str(int(KEEP_ALIVE))],
                               echo_port, ca, env, d / "echo.log", probe="/docs"))
            procs.append(start([py, "-m", "agent", "serve", "--host", "127.0.0.1", "--port", str(real_port),
                                "--tls-cert", str(cert), "--tls-key", str(key), "--log-level", "warning",
                                "--db", url, *([] if a.full_app else ["--webhook-only"])], real_port, ca, env,
                                d / "real.log"))
            warm = reviews(min(200, n // 4), tenants, rng)
            bodies = reviews(n, tenants, rng)
            # CPU is charged per process: the echo's server; the real webhook's server and, apart, PostgreSQL.
            echo_cpu = {"server": lambda: [procs[0].pid]}
            real_cpu = {"server": lambda: [procs[1].pid], "postgres": postgres_pids}
            echo, real = run_interleaved([
                ("bare FastAPI echo webhook", f"https://127.0.0.1:{echo_port}/validate", bodies, echo_cpu),
                ("veu-governor /validate", f"https://127.0.0.1:{real_port}/validate",
                 reviews(n, tenants, random.Random(a.seed + 1)), real_cpu),
            ], warm, a.rounds, a.concurrency, ca)
            # Latency as the API server sees it: both servers at the same offered load, well inside the
            # slower one's capacity (at saturation, latency is only concurrency / throughput).
            rate = max(1.0, round(a.load_fraction * real["rps"]))
            nl = a.latency_reviews
            echo_lat, real_lat = latency_interleaved([
                ("bare FastAPI echo webhook", f"https://127.0.0.1:{echo_port}/validate",
                 reviews(nl, tenants, random.Random(a.seed + 2)), echo_cpu),
                ("veu-governor /validate", f"https://127.0.0.1:{real_port}/validate",
                 reviews(nl, tenants, random.Random(a.seed + 3)), real_cpu),
            ], rate, a.rounds, ca, reviews(4 * WARM_CONNECTIONS, tenants, random.Random(a.seed + 4)))
            from sqlalchemy import text

            from agent.store import get_engine

            with get_engine(url).connect() as c:
                codes = dict(c.execute(text("SELECT code, count(*) FROM admission_decision GROUP BY code")).all())
                audited = c.execute(text("SELECT count(*) FROM audit_entry WHERE action = 'admission.decide'")
                                    ).scalar_one()
            # Every decision has its audit entry and the chain the webhook appended to verifies end to end.
            from sqlmodel import Session

            from agent.audit import verify_chain

            with Session(get_engine(url)) as s:
                chain = verify_chain(s)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        from agent.store.db import dispose_all

        dispose_all()
        drop_db(dbname)
    served = "veuctl serve" + ("" if a.full_app else " --webhook-only")
    print(f"\nreal webhook served by `{served}`")
    print(f"{n} reviews per server in {a.rounds} alternating slices at concurrency {a.concurrency}, HTTPS on "
          "127.0.0.1, 1 uvicorn worker each, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs")
    print(f"{'server':32} {'reviews/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'errors':>7} "
          f"{'CPU ms/review':>20} {'steal':>6}")
    for r in (echo, real):
        print(f"{r['label']:32} {r['rps']:10.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['mean_ms']:8.2f} "
              f"{r['errors']:7d} {cpu_text(r['cpu_ms']):>20} {r['steal_pct']:5.1f}%")
    ratio_sat = real["p99_ms"] / echo["p99_ms"]
    ratio_rps = real["rps"] / echo["rps"]
    print(f"(at saturation latency is Little's law, concurrency / throughput: p99 ratio {ratio_sat:.2f}x)")
    print(f"\nlatency at the same offered load: {real_lat['rate']:.0f} reviews/s open loop "
          f"({a.load_fraction:.0%} of the real webhook's throughput), {nl} reviews per server")
    print(f"{'server':32} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'errors':>7} {'new conns':>9} "
          f"{'CPU ms/review':>20} {'steal':>6}")
    for r in (echo_lat, real_lat):
        print(f"{r['label']:32} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['mean_ms']:8.2f} {r['errors']:7d} "
              f"{r['opened']:9d} {cpu_text(r['cpu_ms']):>20} {r['steal_pct']:5.1f}%")
    print(f"(the clients held {echo_lat['warm']} and {real_lat['warm']} warm connections; 'new conns' were opened "
          "while measuring)")
    ratio_p99 = real_lat["p99_ms"] / echo_lat["p99_ms"]
    print(f"\np99 ratio real/echo at equal load = {ratio_p99:.2f}x (target <= 2x): "
          f"{'MET' if ratio_p99 <= 2 else 'NOT MET'}")
    print(f"throughput real/echo = {ratio_rps:.0%} (target >= 40%): {'MET' if ratio_rps >= 0.4 else 'NOT MET'}")
    print(f"decisions recorded by the real webhook: {codes}")
    print(f"audit: {audited} admission.decide entries for {sum(codes.values())} decisions; chain of "
          f"{chain.checked} entries {'verifies' if chain.ok else 'BROKEN at ' + str(chain.break_seq)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
