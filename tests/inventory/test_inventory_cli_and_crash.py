"""`veuctl inventory` end to end, and a sync killed mid-way converging on the next run (nothing lost or doubled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlmodel import col, func, select

from agent.collectors.base import build
from agent.inventory import sync
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from agent.store.tables.inventory import CollectorRun, HoldingPeriod
from tests.inventory.awsfake import AwsFake, run, seed_client

VEUCTL = [sys.executable, "-m", "agent"]
ACCOUNT = "123456789012"
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-1"]


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "agent.yaml"
    p.write_text(
        yaml.safe_dump(
            {
                "collectors": {
                    "aws": {
                        "max_workers": 3,
                        "accounts": [{"regions": REGIONS, "owner": "Acme Cloud", "operator": "Acme Ops"}],
                    }
                }
            }
        )
    )
    return p


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """veuctl in-process (same entry point, exit-code mapping and output as the console script)."""
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_sync_show_and_import_from_the_command_line(
    aws: AwsFake,
    store: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = run(seed_client(aws.moto_url, "ec2", "eu-west-1"), "p5.48xlarge", 2)
    code, out, err = _veuctl(
        capsys, monkeypatch, "inventory", "sync", "--source", "aws", "--config", str(_config(tmp_path)), "--json"
    )
    assert code == 0, err
    res = json.loads(out)["runs"][0]
    assert res["status"] == "ok" and res["added"] == len(ids)
    assert "test-secret-never-logged" not in out + err

    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    reg = tmp_path / "reg.csv"
    reg.write_text("site,accelerator,count,owner,operator,serial\nDublin DC1,h100,1,Acme Cloud,Acme Ops,SN-9\n")
    assert _veuctl(capsys, monkeypatch, "inventory", "import", str(reg), "--json")[0] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("site,accelerator,count,owner,operator\nDublin DC1,h100,zero,Acme Cloud,Acme Ops\n")
    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(bad))
    assert code == 2 and "row 2, field count" in err and err.count("\n") == 1

    code, out, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--json")
    assert code == 0, err
    data = json.loads(out)
    by_site = {h["site"]: h for h in data["holdings"]}
    assert by_site["aws-eu-west-1"]["count"] == 16 and by_site["aws-eu-west-1"]["tier"] == 1
    assert by_site["aws-eu-west-1"]["owner"] == "Acme Cloud" and by_site["aws-eu-west-1"]["operator"] == "Acme Ops"
    assert by_site["Dublin DC1"]["count"] == 1
    assert data["totals"]["by_country"]["IE"]["count"] == 17
    assert abs(data["totals"]["tpp"] - sum(h["tpp"] for h in data["holdings"])) < 1e-6
    code, out, _ = _veuctl(capsys, monkeypatch, "inventory", "show", "--as-of", "2020-01-01", "--json")
    assert code == 0 and json.loads(out)["holdings"] == []
    code, _, err = _veuctl(capsys, monkeypatch, "inventory", "show", "--site", "Atlantis")
    assert code == 2 and "Atlantis" in err


def test_sync_killed_mid_way_converges_on_the_next_run(aws: AwsFake, store: str, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    clients = {r: seed_client(aws.moto_url, "ec2", r) for r in REGIONS}
    first = {r: run(clients[r], "p5.48xlarge", 2) for r in REGIONS}
    assert sync(build("aws", yaml.safe_load(cfg.read_text())["collectors"]["aws"]), store).status == "ok"
    # Changes the killed run will see only partly: a new instance in one region, one gone in another.
    added = run(clients["eu-west-1"], "p5.48xlarge", 1)
    clients["us-east-1"].terminate_instances(InstanceIds=first["us-east-1"][:1])
    aws.faults.delay["ap-southeast-1"] = 60  # this region hangs, so the run is killed between scopes

    proc = subprocess.Popen(
        [*VEUCTL, "inventory", "sync", "--source", "aws", "--config", str(cfg), "--json"],
        env={**os.environ, "VEU_DATABASE_URL": store},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            with session_scope(store) as s:
                seen = s.exec(select(Holding).where(Holding.external_id == f"{ACCOUNT}:{added[0]}")).first()
            if seen is not None:
                break
            time.sleep(0.2)
        assert seen is not None, "the killed run never applied its first scopes"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    aws.faults.delay.clear()

    with session_scope(store) as s:
        killed = s.exec(select(CollectorRun).order_by(CollectorRun.id.desc())).first()  # type: ignore[union-attr]
        assert killed is not None and killed.status == "running"

    assert sync(build("aws", yaml.safe_load(cfg.read_text())["collectors"]["aws"]), store).status == "ok"

    expected = {f"{ACCOUNT}:{i}" for r in REGIONS for i in first[r]} - {f"{ACCOUNT}:{first['us-east-1'][0]}"}
    expected |= {f"{ACCOUNT}:{added[0]}"}
    with session_scope(store) as s:
        live = s.exec(select(Holding).where(Holding.retired_at == None)).all()  # noqa: E711
        assert sorted(h.external_id for h in live) == sorted(expected)  # nothing lost, nothing doubled
        total = s.exec(select(func.count()).select_from(Holding)).one()
        assert total == len(expected) + 1  # the terminated instance is retired, not deleted
        for h in live:
            open_periods = s.exec(
                select(HoldingPeriod).where(HoldingPeriod.holding_id == h.id, col(HoldingPeriod.valid_to).is_(None))
            ).all()
            assert len(open_periods) == 1
        assert s.get(CollectorRun, killed.id).status == "aborted"  # type: ignore[union-attr]
