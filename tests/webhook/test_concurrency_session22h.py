"""Session 22h QA: the webhook's anti-evasion sums under parallel HTTPS reviews (two replicas on one PostgreSQL)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

import agent.directory
from agent.store import session_scope
from agent.store.tables.cases import AdmissionDecision, RedFlagCase
from policies import redflag

from .conftest import M, job, review
from .tlsutil import CA, ServerThread

# 128 pods × 8 H100 × 8000 h ≈ 0.29e26 operations: three parts stay under 10^26, the fourth reaches it.
SLICE = {"pods": 128}


def _slice(name: str, model: str | None) -> dict[str, Any]:
    ann = {M + "expected-hours": "8000", **({M + "model": model} if model else {})}
    return review(job(name, annotations=ann, **SLICE))


@pytest.fixture()
def replicas(pg_store: str, tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    """Two webhook servers (the chart's webhook-only port) on one PostgreSQL database, each with its own engine."""
    ca = CA()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    ca.issue(cert, key)
    ca_path = ca.write_ca(tmp_path / "ca.crt")
    second = pg_store + ("&" if "?" in pg_store else "?") + "application_name=veu-replica-2"
    agent.directory.clear()
    with ServerThread(cert, key, pg_store, webhook_only=True) as a, \
            ServerThread(cert, key, second, webhook_only=True) as b:
        yield [a.url, b.url], ca_path
    agent.directory.clear()


def _post_all(urls: list[str], ca: Path, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(ca))

    def one(i: int) -> dict[str, Any]:
        with httpx.Client(base_url=urls[i % len(urls)], verify=ctx, timeout=60) as c:
            r = c.post("/validate", content=json.dumps(bodies[i]), headers={"content-type": "application/json"})
            assert r.status_code == 200, r.text
            return dict(r.json()["response"])

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, range(len(bodies))))


@pytest.mark.parametrize("model", ["frontier-split", None], ids=["named-model", "unnamed-bucket"])
def test_a_split_run_posted_all_at_once_to_two_replicas_admits_only_what_stays_under_the_threshold(
    replicas: tuple[list[str], Path], pg_store: str, model: str | None,
) -> None:
    urls, ca = replicas
    answers = _post_all(urls, ca, [_slice(f"slice-{i}", model) for i in range(12)])
    codes = sorted(a["auditAnnotations"]["code"] for a in answers)
    assert codes.count(redflag.ALLOW) == 3, codes
    assert codes.count(redflag.HOLD_FOR_INQUIRY) == 9, codes
    with session_scope(pg_store) as s:
        rows = s.exec(select(AdmissionDecision)).all()
        admitted = [r for r in rows if r.allowed]
        assert len(admitted) == 3 and sum(r.run_operations or 0 for r in admitted) < 1e26
        held = [r for r in rows if not r.allowed]
        # Every held slice saw the three admitted ones: each is filed under the one case of the lineage.
        assert all((r.lineage_operations or 0) >= 1e26 for r in held)
        assert len({r.case_id for r in held}) == 1
        assert len(s.exec(select(RedFlagCase)).all()) == 1


def test_a_run_split_across_model_names_and_namespaces_posted_at_once_is_held_once_the_customer_sum_reaches_it(
    replicas: tuple[list[str], Path], pg_store: str,
) -> None:
    urls, ca = replicas
    # Emirates AI (tenant-ae) and its Irish subsidiary (tenant-ie-ae, Tier 1 HQ, Tier 2 parent): one group.
    bodies = [review(job(f"part-{i}", "tenant-ae" if i % 2 else "tenant-ie-ae", pods=128,
                         annotations={M + "expected-hours": "8000", M + "model": f"model-{i}"}))
              for i in range(10)]
    answers = _post_all(urls, ca, bodies)
    codes = sorted(a["auditAnnotations"]["code"] for a in answers)
    assert codes.count(redflag.ALLOW) == 3, codes
    with session_scope(pg_store) as s:
        admitted = [r for r in s.exec(select(AdmissionDecision)).all() if r.allowed]
        assert sum(r.run_operations or 0 for r in admitted) < 1e26
