"""The agent service: Lease leader election on kmock, the scheduler's one-run-at-a-time jobs, and the API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from agent.collectors.config import AgentConfig, load_config
from agent.parties import add_site
from agent.scheduler import Agent
from agent.store import session_scope
from controllers.leader import LeaderElector
from tests.inventory.kmockthread import KmockThread


@pytest.fixture()
def k8s() -> Iterator[KmockThread]:
    km = KmockThread().start()
    yield km
    km.stop()


def _elector(k8s: KmockThread, who: str, events: list[str]) -> LeaderElector:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = k8s.url
    return LeaderElector(
        client.ApiClient(cfg),
        "veu",
        "inventory",
        identity=who,
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.5,
        on_started_leading=lambda: events.append(f"{who}+"),
        on_stopped_leading=lambda: events.append(f"{who}-"),
    )


def test_only_one_replica_leads_and_a_standby_takes_over_when_the_lease_lapses(k8s: KmockThread) -> None:
    events: list[str] = []
    a, b = _elector(k8s, "a", events), _elector(k8s, "b", events)
    assert a.try_acquire_or_renew() is True
    assert a.try_acquire_or_renew() is True  # renewal
    assert b.try_acquire_or_renew() is False  # a live lease held by someone else: b starts its own clock
    time.sleep(3.2)  # a stops renewing (crashed): a lease duration on b's clock later, the lease is up for grabs
    assert b.try_acquire_or_renew() is True
    lease = b.api.read_namespaced_lease("inventory", "veu")
    assert lease.spec.holder_identity == "b" and lease.spec.lease_transitions == 1


def test_released_lease_is_taken_at_once_and_callbacks_follow_leadership(k8s: KmockThread) -> None:
    events: list[str] = []
    a, b = _elector(k8s, "a", events), _elector(k8s, "b", events)
    ta = threading.Thread(target=a.run, daemon=True)
    ta.start()
    deadline = time.time() + 5
    while not a.leading and time.time() < deadline:
        time.sleep(0.05)
    tb = threading.Thread(target=b.run, daemon=True)
    tb.start()
    time.sleep(1.2)
    assert a.leading and not b.leading
    a.stop.set()  # graceful shutdown releases the lease
    ta.join(5)
    deadline = time.time() + 3
    while not b.leading and time.time() < deadline:
        time.sleep(0.05)
    b.stop.set()
    tb.join(5)
    assert events[:3] == ["a+", "a-", "b+"]


def test_scheduler_runs_each_collector_once_at_a_time_and_records_failures(store: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sqlmodel import select

    from agent.store.tables.inventory import CollectorRun

    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    reg = tmp_path / "reg.csv"
    reg.write_text("site,accelerator,count,owner,operator\nDublin DC1,h100,2,Acme Cloud,Acme Ops\n")
    cfg_file = tmp_path / "agent.yaml"
    cfg_file.write_text(
        f"collectors:\n  csv:\n    files: [{reg}]\n    interval_seconds: 3600\n    jitter_seconds: 0\n"
        "  nvml:\n    site: Nowhere\n    interval_seconds: 3600\n    jitter_seconds: 0\n"
    )
    cfg = load_config(cfg_file)
    agent = Agent(cfg, store)
    try:
        jobs = {j.id: j for j in agent.scheduler.get_jobs()}
        assert set(jobs) == {"csv", "nvml"} and all(j.max_instances == 1 for j in jobs.values())
        deadline = time.time() + 150  # generous: CI machines can be slow; normally a few seconds
        while time.time() < deadline:
            with session_scope(store) as s:
                runs = s.exec(select(CollectorRun).where(CollectorRun.status != "running")).all()
            if {r.source for r in runs} >= {"csv", "nvml"}:
                break
            time.sleep(0.2)
    finally:
        agent.shutdown()
    status = {r.source: r.status for r in runs}
    assert set(status) == {"csv", "nvml"}, runs
    assert status["csv"] == "ok"
    assert status["nvml"] == "failed"  # no GPU/driver here (or no such site): recorded, nothing retired


def test_bad_agent_config_names_the_field(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from policies.errors import PolicyError

    f = tmp_path / "agent.yaml"
    f.write_text("collectors:\n  aws:\n    max_workers: 0\n")
    with pytest.raises(PolicyError, match=r"collectors\.aws\.max_workers"):
        load_config(f)
    f.write_text("collectors:\n  azure: {}\n")
    with pytest.raises(PolicyError, match=r"collectors\.azure: unknown collector"):
        load_config(f)
    assert AgentConfig().collector("aws").name == "aws"


def test_api_lists_holdings_with_provenance_paginated_and_filtered(store: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from agent.api.app import create_app
    from agent.inventory import import_register

    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
        add_site(s, "Austin Lab", "US")
    reg = tmp_path / "reg.csv"
    reg.write_text(
        "site,accelerator,count,owner,operator,serial\n"
        + "".join(f"Dublin DC1,h100,1,Acme Cloud,Acme Ops,SN-{i}\n" for i in range(5))
        + "Austin Lab,h100,1,Acme Cloud,Acme Cloud,SN-X\n"
    )
    import_register(reg, store)
    api = TestClient(create_app(store))
    r = api.get("/api/v1/inventory/holdings", params={"site": "Dublin DC1", "limit": 2})
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 5 and len(body["items"]) == 2 and body["next_offset"] == 2
    assert body["items"][0]["source"] == "csv" and body["items"][0]["serial"].startswith("SN-")
    r = api.get("/api/v1/inventory/holdings", params={"operator": "Acme Cloud"})
    assert [x["serial"] for x in r.json()["items"]] == ["SN-X"]
    assert api.get("/api/v1/inventory/holdings", params={"owner": "Nobody"}).status_code == 422
    base = api.get("/api/v1/inventory/installed-base").json()
    assert base["totals"]["count"] == 6 and set(base["totals"]["by_country"]) == {"IE", "US"}
    assert api.get("/api/v1/inventory/installed-base", params={"site": "Atlantis"}).status_code == 404
    runs = api.get("/api/v1/inventory/runs").json()
    assert runs[0]["source"] == "csv" and runs[0]["status"] == "ok"
