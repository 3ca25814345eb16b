"""Faults: the database going away and coming back, a writer killed mid-write, two agents that both lead.

- The outage uses a throwaway PostgreSQL cluster (initdb + pg_ctl in a temporary directory, its own
  port on 127.0.0.1) that the test stops and restarts under a running app.
- "Killed mid-write" runs the real admission path in a subprocess and SIGKILLs it while it writes.
- Leadership: a paused leader whose lease was taken over must lose its renewal (kmock Lease), and two
  processes that both believe they lead write through the store's own guards (audit-chain lock).
  (kmock does not enforce ``metadata.resourceVersion`` preconditions on patches, so the 409 path that
  stops two simultaneous takeovers is proved in tests/inventory/test_lease_race.py, against a Lease server
  that enforces them.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from agent.api.app import create_app
from agent.audit import verify_chain
from agent.store import session_scope
from tests.webhook.conftest import job, review, seed

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A private PostgreSQL cluster owned by the ``postgres`` OS user, started and stopped with pg_ctl."""

    def __init__(self, base: Path) -> None:
        assert PG_BIN is not None
        self.dir = base / "pgdata"
        self.sock = base
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(PG_BIN / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def init(self) -> Cluster:
        self.sock.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.sock, "postgres", "postgres")
        self._run("initdb", "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-l", str(self.sock / "pg.log"), "-o",
                  f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-w", "-m", mode, "stop")


@pytest.fixture()
def cluster() -> Iterator[Cluster]:
    if PG_BIN is None or shutil.which("runuser") is None:
        pytest.fail("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are needed for the outage test")
    # Not under pytest's tmp dir: that is private to this user and the postgres user must reach it.
    base = Path(tempfile.mkdtemp(prefix="veu-pg-"))
    os.chmod(base, 0o755)
    c = Cluster(base).init()
    c.start()
    yield c
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        c.stop("immediate")
    from agent.store.db import _engines, _lock

    with _lock:
        eng = _engines.pop(c.url, None)
    if eng is not None:
        eng.dispose()
    shutil.rmtree(base, ignore_errors=True)


def _decisions(url: str) -> list[tuple[str, int]]:
    """(uid, number of admission.decide audit entries naming it) for every recorded decision."""
    with session_scope(url) as s:
        uids = s.execute(text("SELECT uid FROM admission_decision ORDER BY id")).scalars().all()
        audited = s.execute(text("SELECT payload FROM audit_entry WHERE action = 'admission.decide'")).scalars().all()
    return [(u, sum(1 for p in audited if f'"uid":"{u}"' in p)) for u in uids]


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_database_outage_follows_the_failure_mode_and_nothing_is_lost_when_it_returns(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:
    monkeypatch.setenv("VEU_WEBHOOK_FAILURE_MODE", mode)
    seed(cluster.url)
    client = TestClient(create_app(cluster.url), raise_server_exceptions=False)
    for i in range(3):
        r = client.post("/validate", json=review(job(f"before-{i}"), uid=f"before-{i}"))
        assert r.json()["response"]["allowed"]

    cluster.stop()
    t0 = time.monotonic()
    r = client.post("/validate", json=review(job("during"), uid="during"))
    elapsed = time.monotonic() - t0
    resp = r.json()["response"]
    assert r.status_code == 200 and resp["uid"] == "during" and elapsed < 10  # the API server's timeout
    assert resp["allowed"] is (mode == "allow")
    msg = resp["warnings"][0] if mode == "allow" else resp["status"]["message"]
    assert "store unavailable" in msg and f"VEU_WEBHOOK_FAILURE_MODE={mode}" in msg
    if mode == "deny":
        assert resp["status"]["code"] == 503
    # The API and readiness say the same, as a 503 rather than a stack trace.
    api = client.get("/api/v1/decisions")
    assert api.status_code == 503 and "store unavailable" in api.json()["detail"], api.text[:200]
    assert client.get("/readyz").status_code == 503

    cluster.start()
    # The API server re-sends the review (the Job is re-created or the controller retries): it is decided
    # and recorded like any other, and nothing recorded before the outage is gone.
    again = client.post("/validate", json=review(job("during"), uid="during-retry")).json()["response"]
    assert again["allowed"] is True and again["auditAnnotations"]["code"] == "ALLOW"
    decided = _decisions(cluster.url)
    assert [u for u, _ in decided] == ["before-0", "before-1", "before-2", "during-retry"]
    assert all(n == 1 for _, n in decided), decided
    with session_scope(cluster.url) as s:
        assert verify_chain(s).ok


WRITER = r"""
import sys, uuid
sys.path.insert(0, {root!r})
from agent.cases import evaluate_review
from agent.packs import registry
from agent.store import session_scope
from tests.webhook.conftest import job, review
url = sys.argv[1]
packs = registry()
i = 0
while True:
    with session_scope(url) as s:
        evaluate_review(s, packs, review(job(f"w{{i}}", annotations={{"compute.veu-governor.io/model": f"m{{i % 7}}"}}),
                                         uid=f"{{sys.argv[2]}}-{{i}}"))
    i += 1
    print(i, flush=True)
"""


def _spawn_writer(url: str, tag: str) -> subprocess.Popen[str]:
    env = {**os.environ, "VEU_AUDIT_CHECKPOINT_EVERY": "5"}
    return subprocess.Popen([PY, "-c", WRITER.format(root=str(ROOT)), url, tag], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen[str], n: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    last = 0
    while last < n:
        if time.monotonic() > deadline or proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise AssertionError(f"writer stalled at {last}: {err[-2000:]}")
        line = proc.stdout.readline()
        if line.strip().isdigit():
            last = int(line)
    return last


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_writer_killed_mid_write_leaves_no_half_record_and_the_chain_verifies(
    backend: str, request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("db_url" if backend == "sqlite" else "pg_url")
    seed(url)
    proc = _spawn_writer(url, "k")
    try:
        done = _wait_for(proc, 25)
        time.sleep(0.037)  # land somewhere inside the next transaction
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    decided = _decisions(url)
    # Every committed decision has exactly one audit entry; the interrupted one left nothing at all.
    assert len(decided) >= done and all(n == 1 for _, n in decided), decided
    with session_scope(url) as s:
        result = verify_chain(s)
        cases = s.execute(text("SELECT COUNT(*) FROM redflag_case")).scalar_one()
    assert result.ok, result
    assert cases == 0  # small jobs: no case should exist, half-opened or otherwise


def test_two_processes_that_both_think_they_lead_keep_one_verifiable_chain(pg_url: str) -> None:
    # Split brain for the length of a lease: both write. The store serialises audit appends (advisory
    # lock), so both writers' records survive, each with its entry, and the chain has no fork.
    seed(pg_url)
    a, b = _spawn_writer(pg_url, "a"), _spawn_writer(pg_url, "b")
    try:
        for p in (a, b):
            _wait_for(p, 20)
    finally:
        for p in (a, b):
            p.send_signal(signal.SIGKILL)
            p.wait(10)
    decided = _decisions(pg_url)
    tags = {u.split("-")[0] for u, _ in decided}
    assert tags == {"a", "b"} and all(n == 1 for _, n in decided)
    with session_scope(pg_url) as s:
        seqs = s.execute(text("SELECT seq FROM audit_entry ORDER BY seq")).scalars().all()
        result = verify_chain(s)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) and result.ok, result


@pytest.fixture()
def k8s() -> Iterator[Any]:
    from tests.inventory.kmockthread import KmockThread

    km = KmockThread().start()
    yield km
    km.stop()


def _elector(k8s: Any, who: str, events: list[str]) -> Any:
    from kubernetes import client

    from controllers.leader import LeaderElector

    cfg = client.Configuration()
    cfg.host = k8s.url
    return LeaderElector(client.ApiClient(cfg), "veu", "agent", identity=who, lease_duration=2, renew_deadline=1.5,
                         retry_period=0.25, on_started_leading=lambda: events.append(f"{who}+"),
                         on_stopped_leading=lambda: events.append(f"{who}-"))


def test_paused_leader_loses_its_renewal_once_another_agent_took_the_lease(k8s: Any) -> None:
    events: list[str] = []
    a, b = _elector(k8s, "a", events), _elector(k8s, "b", events)
    assert a.try_acquire_or_renew() is True
    a.leading = True
    # b sees a's record (a live lease: it stands by); expiry is timed on b's own clock from this sighting
    assert b.try_acquire_or_renew() is False
    time.sleep(2.2)  # a is paused (GC, partition) past the lease, its record unchanged: b takes over
    assert b.try_acquire_or_renew() is True
    # a wakes up still believing it leads; its renewal must fail rather than steal the lease back
    assert a.try_acquire_or_renew() is False
    lease = a.api.read_namespaced_lease("agent", "veu")
    assert lease.spec.holder_identity == "b"


def test_running_leader_steps_down_when_it_cannot_renew(k8s: Any) -> None:
    events: list[str] = []
    a, b = _elector(k8s, "a", events), _elector(k8s, "b", events)
    ta = threading.Thread(target=a.run, daemon=True)
    ta.start()
    deadline = time.monotonic() + 5
    while "a+" not in events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events == ["a+"]
    # Someone else forcibly takes the lease (e.g. a's renewals were lost in a partition).
    b_lease = b.api.read_namespaced_lease("agent", "veu")
    b._patch(b_lease, {"holderIdentity": "b", "renewTime": b_lease.spec.renew_time.strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ"), "leaseDurationSeconds": 60})
    deadline = time.monotonic() + 5
    while "a-" not in events and time.monotonic() < deadline:
        time.sleep(0.05)
    a.stop.set()
    ta.join(5)
    assert events[:2] == ["a+", "a-"]  # a noticed within renew_deadline and stopped leading
