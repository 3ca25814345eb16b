"""`veuctl estimate` and `veuctl models` as an operator runs them: JSON fields, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from agent.cli import app
from agent.cli._common import run_app


class Veuctl:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch

    def __call__(self, *args: str) -> tuple[int, str, str]:
        """Run veuctl in-process (same code path as the console script) and capture its output."""
        self.monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        self.capsys.readouterr()
        rc = run_app(app)
        out = self.capsys.readouterr()
        return rc, out.out, out.err

    def json(self, *args: str) -> Any:
        rc, out, err = self(*args, "--json")
        assert rc == 0, err
        return json.loads(out)


@pytest.fixture()
def veuctl(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Veuctl:
    v = Veuctl(capsys, monkeypatch)
    assert v("parties", "add", "Acme", "--hq", "US")[0] == 0
    assert v("parties", "add", "Zeta", "--hq", "CN")[0] == 0
    return v


def test_estimate_6nd_json_has_operations_band_and_method(veuctl: Veuctl) -> None:
    out = veuctl.json("estimate", "--params", "7e10", "--tokens", "1.5e13")
    assert out["operations"] == pytest.approx(6.3e24) and out["method"] == "declared-6nd"
    assert out["low"] == pytest.approx(6.3e24 * 0.5) and out["high"] == pytest.approx(6.3e24 * 1.6)
    assert "6 × 7e10 × 1.5e13" in out["explanation"]


def test_estimate_hardware_json_uses_the_catalog_peak(veuctl: Veuctl) -> None:
    out = veuctl.json("estimate", "--chip", "NVIDIA H100 SXM5 80GB", "--count", "1024", "--hours", "720",
                      "--precision", "BF16")
    assert out["operations"] == pytest.approx(1024 * 720 * 3600 * 989.4e12 * 0.35)
    assert out["upper_bound"] == pytest.approx(1024 * 720 * 3600 * 989.4e12)
    assert out["method"] == "hardware" and out["inputs"]["accelerator"] == "h100-sxm"
    stated = veuctl.json("estimate", "--chip", "NVIDIA H100 SXM5 80GB", "--count", "1", "--hours", "1",
                         "--utilization", "0.5")
    assert stated["operations"] == pytest.approx(3600 * 989.4e12 * 0.5)


def test_estimate_operations_figure(veuctl: Veuctl) -> None:
    out = veuctl.json("estimate", "--operations", "1.5e25")
    assert out["operations"] == 1.5e25 and out["method"] == "declared-operations"


@pytest.mark.parametrize("args,needle", [
    (("estimate", "--params", "1e26x", "--tokens", "1e12"), "--params"),
    (("estimate", "--params", "6.7e11", "--tokens", "1e13", "--moe"), "active-params"),
    (("estimate", "--operations", "1e25", "--params", "7e10", "--tokens", "1e12"), "exactly one"),
    (("estimate", "--chip", "Nonexistent 9000", "--count", "8", "--hours", "1"), "Nonexistent 9000"),
    (("estimate", "--chip", "NVIDIA H100 SXM5 80GB", "--count", "8", "--hours", "1", "--utilization", "2"),
     "utilization"),
    (("models", "show", "ghost"), "ghost"),
    (("models", "add", "m", "--owner", "Nobody"), "Nobody"),
    (("models", "show", "m", "--as-of", "2026-02-30"), "--as-of"),
])
def test_bad_input_exits_2_with_one_line(veuctl: Veuctl, args: tuple[str, ...], needle: str) -> None:
    rc, out, err = veuctl(*args)
    assert rc == 2, (out, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and needle in err


def test_models_lineage_through_the_cli(veuctl: Veuctl) -> None:
    veuctl.json("models", "add", "open-base", "--owner", "Acme", "--published")
    veuctl.json("models", "add-run", "open-base", "--operations", "2e26", "--start", "2025-01-01")
    veuctl.json("models", "add", "zeta-ft", "--owner", "Zeta", "--base", "open-base")
    run = veuctl.json("models", "add-run", "zeta-ft", "--chip", "NVIDIA H100 SXM5 80GB", "--count", "8192",
                      "--hours", "6000", "--start", "2026-03-01", "--end", "2026-06-01", "--site", "dc-1",
                      "--job", "zeta/Job/ft-1")
    assert run["estimate"]["method"] == "hardware"
    ft_ops = run["estimate"]["operations"]
    assert ft_ops > 5e25  # more than 25% of the 2e26 base: no longer an excluded derivative
    shown = veuctl.json("models", "show", "zeta-ft", "--as-of", "2026-06-30")
    assert {"name", "cumulative_operations", "status", "explanation"} <= set(shown)
    assert shown["cumulative_operations"] == pytest.approx(2e26 + ft_ops)
    assert shown["status"] == "4E091"
    # Before the fine-tune started, the model was the base's operations only: an excluded derivative.
    before = veuctl.json("models", "show", "zeta-ft", "--as-of", "2026-02-01")
    assert before["status"] == "excluded:derivative-of-published"
    eu = veuctl.json("models", "show", "open-base", "--regime", "eu-ai-act-gpai-systemic-risk")
    assert eu["status"] == "gpai-systemic-risk"
    listed = veuctl.json("models", "list")
    assert [m["name"] for m in listed] == ["open-base", "zeta-ft"]
    assert listed[0]["status"] == "excluded:published"


def test_note_2_pre_training_from_before_the_estimation_defaults_is_recorded_through_the_cli(
    veuctl: Veuctl,
) -> None:
    # 'Operations' include pre-training whenever it ran (regulation.md §8): T5-11B trained in 2019
    # (notable_models.csv), before the estimation-defaults provision's first version (2020-01-01).
    veuctl.json("models", "add", "t5", "--owner", "Acme")
    out = veuctl.json("models", "add-run", "t5", "--params", "1.1e10", "--tokens", "1e12", "--start", "2019-06-01")
    assert out["runs"][0]["start"] == "2019-06-01"
    assert out["cumulative_operations"] == pytest.approx(6.6e22)
    ft = veuctl.json("models", "add-run", "t5", "--operations", "1e22", "--start", "2019-09-01")
    assert ft["cumulative_operations"] == pytest.approx(7.6e22)


def test_synthetic_data_and_determination_through_the_cli(veuctl: Veuctl) -> None:
    veuctl.json("models", "add", "gen", "--owner", "Acme")
    veuctl.json("models", "add-run", "gen", "--operations", "4e25")
    veuctl.json("models", "add", "student", "--owner", "Zeta")
    veuctl.json("models", "add-run", "student", "--params", "4e11", "--active-params", "5e10", "--tokens", "2e14")
    shown = veuctl.json("models", "add-synthetic", "student", "--generator", "gen", "--fraction", "0.101",
                        "--generation-operations", "1e24")
    assert shown["cumulative_operations"] == pytest.approx(6e25 + 1e24 + 4e25)
    assert shown["status"] == "4E091"
    det = veuctl.json("models", "determine", "student", "--less-capable", "--by", "Compliance (J. Doe)",
                      "--basis", "BIS guidance: below the best published model's benchmark aggregate")
    assert det["status"] == "excluded:less-capable-than-published"
    assert det["determinations"][0]["by"] == "Compliance (J. Doe)"


def test_console_script_exit_code_for_a_bad_number(db_url: str) -> None:
    r = subprocess.run([sys.executable, "-m", "agent", "estimate", "--operations", "lots"], capture_output=True,
                       text=True, env={**os.environ, "VEU_DATABASE_URL": db_url}, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --operations: 'lots' is not a number; write e.g. 1e26 or 1.5e25"
    )
