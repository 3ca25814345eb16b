"""The 4E091 training-compute logic read against the rule's letter: limits met by sums, MIG slices, ¶7's 25%.

Rule text (in /work/shared/reference): ECCN 4E091 is "'Parameters' for an artificial intelligence model trained
utilizing 10^26 or more 'operations'" (regulation.md §8, line 214); derivatives of published models stay excluded
unless derived with additional operations "more than 2.5 × 10^25 'operations' or more than 25 percent" (line 227);
synthetic data counts when "more than ten percent" of the operations train on it (line 222); Supp. 10 ¶7 permits
fine-tuning that "constitutes no more than 25 percent of the training operations of the original AI model"
(uveu-nveu-primary.md §4b, line 195). Figures are typed in decimal and summed as binary doubles, so a sum that is
exactly a limit in decimal must be judged as that limit, on whichever side of it the doubles land.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from typing import Any

import pytest

from agent import ledger as svc
from agent.cli import app
from agent.cli._common import run_app
from agent.kb import catalog
from policies import obligations as ob
from policies.jurisdictions import tier
from policies.ledger import BELOW, EXCLUDED_DERIVATIVE, Ledger, ModelRecord, Run, SyntheticInput, regime
from policies.packs import PackRegistry
from policies.parties import PartyRef, effective_tier

D = date(2026, 6, 1)
START = date(2026, 1, 1)


def _runs(*ops: float) -> tuple[Run, ...]:
    return tuple(Run(x, start=START) for x in ops)


def _ledger(packs: PackRegistry, *recs: ModelRecord, regime_id: str = "eccn-4e091") -> Ledger:
    return Ledger({r.name: r for r in recs}, regime(packs, regime_id, D), D)


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """veuctl in-process (the console script's code path): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    capsys.readouterr()
    rc = run_app(app)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    rc, out, err = _veuctl(capsys, monkeypatch, *args, "--json")
    assert rc == 0, err
    return json.loads(out)


# ------------------------------------------------------------------ "10^26 or more 'operations'" (regulation.md:214)


def test_the_arithmetic_the_tests_rest_on() -> None:
    # Each sum below is exactly its limit in decimal; as doubles it lands on the wrong side of the limit.
    assert 3.7e25 + 6.3e25 < 1e26
    assert sum([6e23, 2.02e25, 4.2e24]) > 2.5e25
    assert sum([1.2e24, 4.04e25, 8.4e24]) > 5e25
    assert sum([4e22, 9.82e24, 1.4e23]) > 1e25
    assert sum([0.0007, 0.0952, 0.0041]) > 0.1


def test_runs_that_add_up_to_exactly_ten_to_the_26_operations_are_10_to_the_26_or_more(packs: PackRegistry) -> None:
    st = _ledger(packs, ModelRecord("m", "acme", runs=_runs(3.7e25, 6.3e25))).status("m")
    assert st.status == "4E091"
    assert "threshold >= 1e26: 1e26 meets it" in st.explanation


def test_fine_tuning_that_brings_the_lineage_to_exactly_ten_to_the_26_is_4e091(packs: PackRegistry) -> None:
    lg = _ledger(packs, ModelRecord("pre", "acme", runs=_runs(6.3e25)),
                 ModelRecord("ft", "acme", base="pre", runs=_runs(3.7e25)))
    assert lg.status("ft").status == "4E091"


def test_a_total_one_part_in_a_million_under_ten_to_the_26_is_still_below_the_threshold(packs: PackRegistry) -> None:
    # Rounding of decimal figures is forgiven, nothing more: 1e20 operations short is short.
    st = _ledger(packs, ModelRecord("m", "acme", runs=_runs(1e26 * (1 - 1e-6)))).status("m")
    assert st.status == BELOW
    assert "does not meet it" in st.explanation


def test_veuctl_models_show_two_runs_of_3_7e25_and_6_3e25_as_4e091(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _veuctl(capsys, monkeypatch, "parties", "add", "Acme", "--hq", "US")[0] == 0
    assert _veuctl(capsys, monkeypatch, "models", "add", "split", "--owner", "Acme")[0] == 0
    for ops, day in (("3.7e25", "2026-01-01"), ("6.3e25", "2026-02-01")):
        assert _veuctl(capsys, monkeypatch, "models", "add-run", "split", "--operations", ops, "--start", day)[0] == 0
    out = _json(capsys, monkeypatch, "models", "show", "split", "--as-of", "2026-06-01")
    assert out["status"] == "4E091", out["explanation"]
    rc, text, _ = _veuctl(capsys, monkeypatch, "models", "show", "split", "--as-of", "2026-06-01")
    assert rc == 0 and text.splitlines()[0] == "split: 4E091 — 1e26 operations"


def test_eu_greater_than_ten_to_the_25_is_not_met_by_runs_adding_up_to_exactly_ten_to_the_25(
    packs: PackRegistry,
) -> None:
    # Art. 51(2): "greater than 10^25" (the EU regime's comparison is strict).
    st = _ledger(packs, ModelRecord("m", "acme", runs=_runs(4e22, 9.82e24, 1.4e23)),
                 regime_id="eu-ai-act-gpai-systemic-risk").status("m")
    assert st.status == BELOW


# ------------------------------------------- derivatives: "more than 2.5 × 10^25 ... or more than 25 percent" (l.227)


def test_derivative_with_additional_operations_of_exactly_2_5e25_is_not_more_than_the_allowance(
    packs: PackRegistry,
) -> None:
    pub = ModelRecord("open", "lab", published=True, runs=_runs(8e25))
    ft = ModelRecord("ft", "acme", base="open", runs=_runs(6e23, 2.02e25, 4.2e24))
    st = _ledger(packs, pub, ft).status("ft")
    assert st.status == EXCLUDED_DERIVATIVE
    assert "not more than that: excluded" in st.explanation


def test_derivative_with_exactly_25_percent_of_a_large_published_base_is_not_more_than_25_percent(
    packs: PackRegistry,
) -> None:
    pub = ModelRecord("open", "lab", published=True, runs=_runs(2e26))  # 25% = 5e25, above 2.5e25
    ft = ModelRecord("ft", "acme", base="open", runs=_runs(1.2e24, 4.04e25, 8.4e24))
    assert _ledger(packs, pub, ft).status("ft").status == EXCLUDED_DERIVATIVE


def test_derivative_with_more_than_the_allowance_is_not_excluded(packs: PackRegistry) -> None:
    pub = ModelRecord("open", "lab", published=True, runs=_runs(8e25))
    ft = ModelRecord("ft", "acme", base="open", runs=_runs(2.6e25))
    st = _ledger(packs, pub, ft).status("ft")
    assert st.status == "4E091"  # 8e25 + 2.6e25: the published model's pre-training counts once not excluded


# ------------------------------------------------------------- synthetic data: "more than ten percent" (l.222)


def test_synthetic_data_of_exactly_ten_percent_from_one_generator_and_its_variants_is_not_counted(
    packs: PackRegistry,
) -> None:
    gen = ModelRecord("gen", "lab", runs=_runs(5e25))
    gen_ft = ModelRecord("gen-ft", "lab", base="gen", runs=_runs(1e24))
    gen_ft2 = ModelRecord("gen-ft2", "lab", base="gen", runs=_runs(1e24))
    m = ModelRecord("m", "acme", runs=_runs(6e25), synthetic=(
        SyntheticInput("gen", 0.0007, 1e23), SyntheticInput("gen-ft", 0.0952, 1e23),
        SyntheticInput("gen-ft2", 0.0041, 1e23)))
    c = _ledger(packs, gen, gen_ft, gen_ft2, m).cumulative("m")
    assert [d.qualifies for d in c.synthetic] == [False]
    assert c.total == 6e25


# --------------------------------------------------------------------------- MIG: a slice is its share of the GPU


def test_a_mig_slice_estimate_counts_its_share_of_the_gpu(packs: PackRegistry) -> None:
    h100 = catalog().accelerator("h100-sxm")
    whole = 3600 * h100.peak_flops("BF16")
    one = svc.estimate(packs, D, chip="H100 SXM MIG 1g.10gb", count=7, hours=1, utilization=1.0)
    assert one.value == pytest.approx(whole)  # seven 1g slices are one GPU
    three = svc.estimate(packs, D, chip="H100 SXM MIG 3g.40gb", chip_hours=7, utilization=1.0)
    assert three.value == pytest.approx(3 * whole)
    assert "1/7 of a h100-sxm" in one.explanation and one.inputs["slice_fraction"] == pytest.approx(1 / 7)


def test_veuctl_models_add_run_on_mig_slices_records_the_slices_share(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _veuctl(capsys, monkeypatch, "parties", "add", "Acme", "--hq", "US")[0] == 0
    assert _veuctl(capsys, monkeypatch, "models", "add", "small", "--owner", "Acme")[0] == 0
    out = _json(capsys, monkeypatch, "models", "add-run", "small", "--chip", "nvidia.com/mig-1g.10gb", "--count", "7",
                "--hours", "10", "--utilization", "1", "--start", "2026-01-01")
    h100 = catalog().accelerator("h100-sxm")  # the highest-TPP GPU offering 1g.10gb: the safe parent
    assert out["cumulative_operations"] == pytest.approx(10 * 3600 * h100.peak_flops("BF16"))


# ----------------------------------------------- Supp. 10 ¶7: "no more than 25 percent" (uveu-nveu-primary.md:195)


def test_fine_tune_of_exactly_25_percent_is_within_the_allowance(packs: PackRegistry) -> None:
    on = date(2025, 9, 1)
    run = ob.TrainingRun(
        run="r1", site="dc-de", location=tier(packs, "DE", on),
        customer=effective_tier(packs, {"Gulf": PartyRef("Gulf", "AE")}, "Gulf", on), model="ft",
        model_status="4E091", operations=2.5e25, fine_tune_of="base", base_status="4E091", base_operations=1e26)
    rows = ob.para7(packs, on, [run])
    assert rows[0]["verdict"] == "ok" and rows[0]["fine_tune_fraction"] == 0.25
