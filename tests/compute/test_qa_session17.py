"""QA session 17: 4E091 training-compute estimation and the model ledger, as a user meets them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime

import pytest

from agent import ledger as svc
from agent.cli import app
from agent.cli._common import run_app
from agent.parties import add_party
from agent.store import session_scope
from policies.compute import Estimate
from policies.packs import PackRegistry

D = date(2026, 6, 1)
H100_HOUR = 1000 * 3600 * 989.4e12 * 0.35  # 1000 H100 for an hour at the default utilization, BF16 dense


def _seed(u: str) -> str:
    with session_scope(u) as s:
        add_party(s, "Acme", "US")
        add_party(s, "Zeta", "CN")
    return u


@pytest.fixture()
def url(db_url: str) -> str:
    return _seed(db_url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest) -> str:
    """The embedded SQLite store and a fresh database on the real PostgreSQL server."""
    return _seed(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """veuctl in-process (the console script's code path): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    capsys.readouterr()
    rc = run_app(app)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _ops(packs: PackRegistry, x: float) -> Estimate:
    return svc.estimate(packs, D, operations=x)


def _meter_pod(s: object, packs: PackRegistry, job: str, start: datetime, model: str = "m") -> None:
    """What the metering controller writes for one pod of a job: ``<ns>/<Kind>/<name>#<pod>``."""
    svc.add_metered_usage(
        s, customer="Zeta", model=model, job=job, accelerator_name="h100-sxm",  # type: ignore[arg-type]
        chip_seconds=1000 * 3600, start=start, end=start.replace(hour=start.hour + 1), packs=packs,
    )


# ------------------------------------------------------------------- a declared run and its pods' metered usage


def test_a_declared_run_and_the_metered_pods_of_its_job_are_counted_once_at_the_larger(
    both: str, packs: PackRegistry
) -> None:
    url = both
    # The run is declared under the job's reference; metering files each pod as JOB#POD. The chips' work is
    # the same operations as the declared run: charged max(declared, metered), never both.
    job = "zeta/PyTorchJob/train"
    t0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
    with session_scope(url) as s:
        svc.add_model(s, "m", "Zeta")
        svc.add_run(s, "m", _ops(packs, 1e22), start=date(2026, 5, 1), job=job)
        _meter_pod(s, packs, f"{job}#train-worker-0", t0)
        _meter_pod(s, packs, f"{job}#train-worker-1", t0)
    with session_scope(url) as s:
        view = svc.model_view(s, packs, "m", D)
        listed = svc.list_models(s, packs, D).items[0]
    assert view["cumulative_operations"] == pytest.approx(1e22)
    assert listed["cumulative_operations"] == pytest.approx(1e22)


def test_metered_pods_above_a_low_declared_run_charge_what_the_chips_did_once(
    url: str, packs: PackRegistry
) -> None:
    job = "zeta/PyTorchJob/train"
    t0 = datetime(2026, 5, 1, 10, tzinfo=UTC)
    with session_scope(url) as s:
        svc.add_model(s, "m", "Zeta")
        svc.add_run(s, "m", _ops(packs, 1e20), start=date(2026, 5, 1), job=job)
        _meter_pod(s, packs, f"{job}#train-worker-0", t0)
        _meter_pod(s, packs, f"{job}#train-worker-1", t0)
    with session_scope(url) as s:
        view = svc.model_view(s, packs, "m", D)
        listed = svc.list_models(s, packs, D).items[0]
    assert view["cumulative_operations"] == pytest.approx(2 * H100_HOUR)
    assert listed["cumulative_operations"] == pytest.approx(2 * H100_HOUR)
    assert [r["method"] for r in view["runs"]] == ["metered>declared-operations"]


def test_a_job_metered_before_its_declared_start_counts_from_the_day_its_chips_ran(
    url: str, packs: PackRegistry
) -> None:
    # Declared to start on 1 June, its pods ran from 1 May: as of 15 May the run has started, and what the
    # ledger charges it (max(declared, metered)) is in the total, not held back until the declared date.
    job = "zeta/PyTorchJob/train"
    with session_scope(url) as s:
        svc.add_model(s, "m", "Zeta")
        svc.add_run(s, "m", _ops(packs, 1e22), start=date(2026, 6, 1), job=job)
        _meter_pod(s, packs, f"{job}#train-worker-0", datetime(2026, 5, 1, 10, tzinfo=UTC))
    with session_scope(url) as s:
        view = svc.model_view(s, packs, "m", date(2026, 5, 15))
    assert view["cumulative_operations"] == pytest.approx(1e22)
    assert view["runs"][0]["start"] == "2026-05-01" and view["runs"][0]["counted"]


# ------------------------------------------------------------------- publication date kept on an update


def test_re_marking_a_model_published_without_a_date_keeps_its_publication_date(
    url: str, packs: PackRegistry, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # § 734.7: parameters are published from the day they were; before that day the model was 4E091. An update
    # that says --published again (options left out keep their stored values) must not move that day back to
    # "always published", which would rewrite every earlier date's status to excluded.
    with session_scope(url) as s:
        svc.add_model(s, "frontier", "Acme")
        svc.add_run(s, "frontier", _ops(packs, 1.2e26), start=date(2025, 2, 1))
        svc.add_model(s, "frontier", "Acme", published=True, published_on=date(2025, 9, 1))
    rc, out, err = _cli(capsys, monkeypatch, "models", "add", "frontier", "--owner", "Acme", "--published", "--json")
    assert rc == 0, err
    assert json.loads(out)["published"] is True
    with session_scope(url) as s:
        before = svc.model_view(s, packs, "frontier", date(2025, 5, 1))
        after = svc.model_view(s, packs, "frontier", date(2025, 10, 1))
        assert svc.get_model(s, "frontier").published_on == date(2025, 9, 1)
    assert before["status"] == "4E091" and not before["published"]
    assert after["status"] == "excluded:published"


# ------------------------------------------------------------------- numbers as the explanation writes them


def test_a_figure_that_rounds_up_to_a_million_is_written_like_every_other_large_figure() -> None:
    # 999,999.7 hours at six significant digits is 1e6: written 1e6 as 1e26 is, never Python's "1e+06".
    from policies.compute import sci

    assert sci(999999.7) == "1e6"
    assert sci(999999.4) == "999999" and sci(1e6) == "1e6" and sci(0.35) == "0.35"
