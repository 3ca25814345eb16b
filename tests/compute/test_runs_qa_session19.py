"""QA session 19: a run's --job is the job reference the webhook and metering use, NAMESPACE/KIND/NAME (the kind
with its API group after a dot where two groups share it, e.g. Volcano's ``Job.batch.volcano.sh``). Anything else
could never meet the usage metering files under that reference (and ``...#POD``), so it is refused."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from agent import ledger as svc
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.ledger import LedgerRun
from controllers.jobspec import ref_kind
from policies.errors import PolicyError
from policies.packs import PackRegistry

D = date(2026, 6, 1)


def test_a_run_job_that_is_not_namespace_kind_name_is_refused_naming_job(db_url: str, packs: PackRegistry) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Zeta", "CN")
        svc.add_model(s, "m2", "Zeta")
    est = svc.estimate(packs, D, operations=1e24)
    volcano = f"team/{ref_kind('batch.volcano.sh/v1alpha1', 'Job')}/x"
    good = ("team/Job/train", volcano, "zeta/PyTorchJob/train-1", "ns/Pod/a.b-0")
    bad = ("badjob", "ns/train", "a/b", "/Job/x", "team//x", "team/Job/", "team/Job/x/y", "team/Job/train#pod-0",
           "Team/Job/train", "team/Job/Train", "team/9Job/x", "team/Job./x", " team / Job / x")
    for job in bad:
        with session_scope(db_url) as s, pytest.raises(PolicyError) as exc:
            svc.add_run(s, "m2", est, job=job)
        assert str(exc.value).startswith("--job: ") and "NAMESPACE/KIND/NAME" in str(exc.value), (job, exc.value)
    for job in good:
        with session_scope(db_url) as s:
            svc.add_run(s, "m2", est, job=job)
    with session_scope(db_url) as s:
        assert sorted(r.job_ref for r in s.exec(select(LedgerRun)).all()) == sorted(good)
        svc.add_run(s, "m2", est)  # no job: still a run of its own
