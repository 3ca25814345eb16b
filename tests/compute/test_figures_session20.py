"""QA session 20: a figure just under 10^26 is never written as 10^26, and the 6·N·D arithmetic can be checked by hand.

6 × 1.6666e11 × 1e14 is 9.9996e25, below "10^26 or more": the ledger said so in its status and total, but wrote the
run itself as "1e26" (four significant digits), and the estimate wrote "6 × 1.667e11 × 1e14 tokens = 1e26" (a
product that is 1.0002e26 by hand, on the other side of the threshold)."""

from __future__ import annotations

import re
import sys

import pytest

from agent.cli import app
from agent.cli._common import run_app
from policies.compute import sci, sci_apart


def _veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    capsys.readouterr()
    rc = run_app(app)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_sci_never_rounds_a_figure_onto_a_power_of_ten() -> None:
    assert sci(9.9996e25) == "9.9996e25"
    assert sci(1.0002e26) == "1.0002e26"
    assert sci(9.99996e24) == "9.99996e24"
    assert sci(-9.9996e25) == "-9.9996e25"
    assert sci(999999.7) == "1e6"  # session 17: smaller figures carry six digits, and this one is written so
    # Figures that are the power of ten up to the rounding of decimals held as doubles are written as it.
    assert sci(1e26) == "1e26" and sci(3.7e25 + 6.3e25) == "1e26" and sci(1.0000000000000001e26) == "1e26"
    # Everything else keeps its four significant digits.
    assert sci(3.14159e23) == "3.142e23" and sci(1.5e25) == "1.5e25" and sci(2.5e25) == "2.5e25"
    assert sci(1024) == "1024" and sci(0.35) == "0.35" and sci(0) == "0"
    assert sci_apart(9.9996e25, 1e26) == ("9.9996e25", "1e26")


def test_6nd_explanation_writes_the_inputs_and_product_as_they_are(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _veuctl(monkeypatch, capsys, "estimate", "--params", "1.6666e11", "--tokens", "1e14")
    first = out.splitlines()[0]
    assert first.startswith("9.9996e25 operations (declared-6nd)"), first
    assert "6 × 1.6666e11 × 1e14 tokens = 9.9996e25 operations" in out
    assert "N = 1.6666e11 parameters (dense)" in out
    assert not re.search(r"(?<![\d.])1e26", out), out
    # MoE: the active and total counts as typed.
    out = _veuctl(monkeypatch, capsys, "estimate", "--params", "6.71e11", "--active-params", "3.7e10",
                  "--tokens", "1.48e13")
    assert "6 × 3.7e10 × 1.48e13 tokens = 3.2856e24 operations" in out
    assert "(mixture-of-experts, 3.7e10 of 6.71e11 total)" in out
    out = _veuctl(monkeypatch, capsys, "estimate", "--active-params", "3.7e10", "--tokens", "1.48e13")
    assert "N = 3.7e10 active parameters per token;" in out, out
    # A stated figure is written as stated.
    out = _veuctl(monkeypatch, capsys, "estimate", "--operations", "9.99995e25")
    assert out.startswith("9.99995e25 operations"), out
    assert "declared operations: 9.99995e25;" in out


def test_a_run_just_under_the_threshold_is_not_listed_as_1e26(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _veuctl(monkeypatch, capsys, "parties", "add", "Acme", "--hq", "US")
    _veuctl(monkeypatch, capsys, "models", "add", "m3", "--owner", "Acme")
    _veuctl(monkeypatch, capsys, "models", "add-run", "m3", "--params", "1.6666e11", "--tokens", "1e14",
            "--start", "2026-01-01")
    out = _veuctl(monkeypatch, capsys, "models", "show", "m3", "--as-of", "2026-06-01")
    assert "below-threshold" in out
    assert "own runs: 1 counted = 9.9996e25 [9.9996e25 (declared-6nd, 2026-01-01)]" in out, out
    assert re.search(r"run \d+: 9\.9996e25 \(declared-6nd", out), out
    assert "threshold >= 1e26: 9.9996e25 does not meet it" in out
    assert "1e26 [" not in out and ": 1e26 (" not in out


def test_a_figure_just_under_a_power_of_ten_at_more_digits_is_still_not_written_as_it() -> None:
    from policies.compute import sci

    assert sci(9.9999996e25, 7) == "9.9999996e25"
    assert sci(1e26, 7) == "1e26"
