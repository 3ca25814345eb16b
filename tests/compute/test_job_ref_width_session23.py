"""The ledger keeps any job reference Kubernetes names allow, on PostgreSQL as on SQLite (migration 0025).

NAMESPACE/KIND/NAME runs to 63 + a kind with its group + 253 characters (the admission decision keeps 620), and
metering files a pod's usage under <job>#<pod> (253 more): the ledger's 300 cut a declared run's --job, and lost
either the pod's part (replicas merged into one interval) or the <job># prefix a pod's usage meets its run by."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

import agent.ledger as ledger
from agent.packs import registry
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.ledger import LedgerRun, MeteredUsage
from controllers.metering import pod_job_ref

NS = "n" * 63
JOB = f"{NS}/PyTorchJob/{'j' * 253}"  # 330 characters
POD = f"{'j' * 240}-worker-1"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def test_a_run_declared_for_a_job_with_a_253_character_name_keeps_its_reference_whole(url: str) -> None:
    with session_scope(url) as s:
        add_party(s, "Lumen", "SG")
        ledger.add_model(s, "m", "Lumen")
        ledger.add_run(s, "m", ledger.estimate(registry(), date(2026, 1, 1), operations=1e24),
                       start=date(2026, 1, 1), job=JOB)
    with session_scope(url) as s:
        assert s.exec(select(LedgerRun.job_ref)).one() == JOB


def test_a_pods_usage_under_a_long_job_keeps_the_job_prefix_and_its_own_name(url: str) -> None:
    key = pod_job_ref(JOB, POD)
    assert key == f"{JOB}#{POD}" and len(key) > 300
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope(url) as s:
        add_party(s, "Lumen", "SG")
        ledger.add_metered_usage(s, customer="Lumen", model="m", job=key, accelerator_name="h100-sxm",
                                 chip_seconds=3600.0, start=start, end=start + timedelta(hours=1), packs=registry())
    with session_scope(url) as s:
        assert s.exec(select(MeteredUsage.job_ref)).one() == key
