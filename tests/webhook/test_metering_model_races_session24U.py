"""Session 24 (U, review R8): a metering tick registers the models its pods name before it writes any audit entry.

The audit chain's lock is held from a transaction's first entry until its commit. A tick that charged one pod (an
entry: the lock held) and then registered the next pod's model waited, in its insert, for a CLI registration of the
same name (or a look-alike) not yet committed; that registration next waited for the audit lock to record itself.
PostgreSQL found the deadlock and failed the whole tick. The tick now registers its missing models first, while it
holds no audit lock, so a concurrent registration commits and the tick charges that model.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import kmock
import psycopg
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, EventsV1Api
from sqlmodel import Session, select

import agent.ledger as ledger
from agent.audit import record
from agent.store import get_engine, session_scope
from agent.store.tables.core import Party
from agent.store.tables.ledger import LedgerModel, MeteredUsage
from controllers.metering import Meter

from .conftest import M

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NFC = unicodedata.normalize("NFC", "Zoë 70B")
NFD = unicodedata.normalize("NFD", "Zoë 70B")


@pytest.fixture()
def apis(kmock: kmock.KubernetesEmulator) -> Iterator[tuple[CoreV1Api, EventsV1Api]]:
    with ApiClient(Configuration(host=str(kmock.url).rstrip("/"))) as client:
        yield CoreV1Api(client), EventsV1Api(client)


def _pod(name: str, model: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "tenant-ae", "uid": f"u-{name}",
                         "annotations": {M + "model": model}},
            "spec": {"nodeName": "n1", "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]},
            "status": {"phase": "Running", "startTime": (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}}


def _wait_for_a_lock_wait(url: str, timeout: float = 20.0) -> None:
    """Until some session of the test's database waits on a lock (the tick's model insert)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock'").fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the tick never waited for the uncommitted registration")


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_tick_charging_a_model_a_cli_registers_meanwhile_is_not_failed_by_a_deadlock(
    kmock: kmock.KubernetesEmulator, apis: tuple[CoreV1Api, EventsV1Api], pg_store: str,
) -> None:
    """Review R8 (deadlock.py): the first pod's entry held the audit lock while the second pod's model insert waited
    for the CLI's uncommitted look-alike, whose own entry waited for that lock."""
    with session_scope(pg_store) as s:
        ledger.add_model(s, "Aurora 7B", "Emirates AI")
    kmock.objects["v1/nodes", None, "n1"] = {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": "n1", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}}
    kmock.objects["v1/pods", "tenant-ae", "a-registered"] = _pod("a-registered", "Aurora 7B")
    kmock.objects["v1/pods", "tenant-ae", "b-new"] = _pod("b-new", NFC)
    cli = Session(get_engine(pg_store))
    try:
        owner = cli.exec(select(Party.id).where(Party.name == "Emirates AI")).one()
        # `veuctl models add` has inserted its model and not yet recorded it.
        ledger._insert_model(cli, NFD, int(owner or 0), None, False, None)
        tick = asyncio.ensure_future(asyncio.to_thread(Meter(*apis, pg_store).tick, NOW))
        await asyncio.to_thread(_wait_for_a_lock_wait, pg_store)

        def finish_registration() -> None:
            record(cli, actor="cli", action="model.create", subject=f"model:{NFD}", payload={"name": NFD})
            cli.commit()

        await asyncio.to_thread(finish_registration)
        report = await tick
    finally:
        cli.close()
    assert report.pods_metered == 2, report
    with session_scope(pg_store) as s:
        models = {m.id: m.name for m in s.exec(select(LedgerModel))}
        charged = {r.job_ref.split("#")[0].split("/")[-1]: models.get(r.model_id) for r in s.exec(select(MeteredUsage))}
    assert sorted(models.values()) == sorted(["Aurora 7B", NFD])
    assert charged == {"a-registered": "Aurora 7B", "b-new": NFD}
