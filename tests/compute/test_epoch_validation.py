"""Validate the estimators against Epoch AI's Notable AI Models figures (training-compute.md, notable_models.csv).

For every row, print the ratio of each method to Epoch's training compute. Assert:

* declared 6·N·D: Epoch's figure lies inside the estimate's band (×declared_band_low–×declared_band_high from
  the ``estimation-defaults`` provision, ×0.5–×1.6 in the built-in pack) for every row with a compute figure,
  active (or dense) parameters and tokens;
* hardware (chips × hours × dense BF16/FP16 peak × the pack's default utilization): within ×0.5–×2 of Epoch
  for every row with chip count and training hours.

Rows skipped or excluded are listed below with the reason from training-compute.md §4; the test fails if
the CSV changes so that a listed exclusion no longer applies.
"""

from __future__ import annotations

import csv
import math
from datetime import date
from pathlib import Path

import pytest

from agent.kb import load_catalog
from policies import compute
from policies.compute import EstimationDefaults
from policies.errors import EstimateError
from policies.packs import PackRegistry

# A pinned copy of the reference rows (Data: Epoch AI, CC BY 4.0; see data/README.md): values are revised
# between Epoch snapshots, so the validation runs against a fixed one.
CSV = Path(__file__).parent / "data" / "notable_models.csv"
EXTRA_CATALOG = Path(__file__).parent / "data" / "epoch-validation-catalog.yaml"
D = date(2026, 6, 1)
HARDWARE_BAND = (0.5, 2.0)  # the acceptance band for the hardware method

# Epoch's hardware names -> catalog names where the catalog spells them differently (same silicon and rates).
EPOCH_HARDWARE = {
    "NVIDIA Tesla V100 DGXS 32 GB": "v100-sxm2-32gb",  # GV100, 125 TFLOP/s FP16 tensor, as the SXM2 part
    "NVIDIA A100 SXM4 80 GB": "a100-sxm4-80gb",
    "NVIDIA A100 SXM4 40 GB": "a100-sxm4-40gb",
    "NVIDIA A800": "a800-sxm4-80gb",
}

# Declared method: rows with every field but outside the dense-model band, per training-compute.md §4.
DECLARED_EXCLUDED = {
    "AFM-on-device": "compute includes distillation-teacher forward passes and a pruned 6.4B parent (§4: ×3.6)",
}
# Hardware method: rows with chips and hours whose hours or compute do not describe the same stage (§4).
HARDWARE_EXCLUDED = {
    "Minerva (540B)": "hours are the fine-tune stage only while compute includes the PaLM base (§4)",
    "Flan-PaLM 540B": "hours are the fine-tune stage only while compute includes the PaLM base (§4)",
    "Gemini 1.0 Ultra": "speculative third-party chips/days guess, not ground truth (§4)",
}


def _num(text: str) -> float | None:
    t = text.strip()
    return None if not t or t.upper() == "UNCONFIRMED" else float(t)


def _rows() -> list[dict[str, str]]:
    with CSV.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def defaults(packs: PackRegistry) -> EstimationDefaults:
    return EstimationDefaults.from_packs(packs, D)


def _within(x: float, lo: float, hi: float) -> bool:
    return lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9)


def test_declared_6nd_band_contains_epochs_figure_for_every_row_with_n_and_d(defaults: EstimationDefaults) -> None:
    checked, skipped, report = [], [], []
    for row in _rows():
        name = row["model"]
        epoch = _num(row["training_compute_flop"])
        params, active, tokens = _num(row["parameters"]), _num(row["active_parameters"]), _num(row["training_tokens"])
        missing = [k for k, v in (("training_compute_flop", epoch), ("active_parameters", active),
                                  ("training_tokens", tokens)) if v is None]
        if missing:
            skipped.append(f"{name}: {', '.join(missing)} UNCONFIRMED")
            continue
        assert epoch is not None and tokens is not None
        est = compute.declared_6nd(defaults, params=params, active_params=active, tokens=tokens)
        ratio = est.value / epoch
        inside = _within(epoch, est.low, est.high)
        report.append(f"{name:32s} 6ND/Epoch = {ratio:5.2f}  band {'ok' if inside else 'OUT'}")
        if name in DECLARED_EXCLUDED:
            assert not inside, f"{name} is listed as an exclusion but is now inside the band"
            continue
        assert inside, f"{name}: Epoch {epoch:.3g} outside 6ND band {est.low:.3g}–{est.high:.3g} (ratio {ratio:.2f})"
        checked.append(name)
    print("\n".join(["", "declared 6·N·D vs Epoch:", *report, "skipped:", *skipped]))
    # MoE rows without an active count are skipped, never estimated from the total.
    assert any(s.startswith("Switch") and "active_parameters" in s for s in skipped)
    assert len(checked) >= 20, checked


def test_moe_rows_without_active_parameters_are_rejected_not_guessed(defaults: EstimationDefaults) -> None:
    row = next(r for r in _rows() if r["model"] == "Switch")
    with pytest.raises(EstimateError, match="active-params"):
        compute.declared_6nd(defaults, params=_num(row["parameters"]), tokens=_num(row["training_tokens"]) or 1.0,
                             moe=True)


def test_hardware_estimate_is_within_half_to_double_of_epoch_for_rows_with_chips_and_hours(
    defaults: EstimationDefaults,
) -> None:
    cat = load_catalog((EXTRA_CATALOG,))
    checked, skipped, report = [], [], []
    for row in _rows():
        name = row["model"]
        epoch, chips, hours = _num(row["training_compute_flop"]), _num(row["chip_count"]), _num(row["training_hours"])
        if epoch is None or chips is None or hours is None:
            continue
        hw = row["hardware"].strip()
        if "," in hw:
            skipped.append(f"{name}: several chip types ({hw})")
            continue
        chip = cat.accelerator(EPOCH_HARDWARE.get(hw, hw))
        est = compute.hardware(defaults, chip, count=chips, hours=hours)
        ratio = est.value / epoch
        implied_mfu = epoch / (est.value / defaults.utilization)
        ok = HARDWARE_BAND[0] <= ratio <= HARDWARE_BAND[1]
        note = f"  (excluded: {HARDWARE_EXCLUDED[name]})" if name in HARDWARE_EXCLUDED else ""
        report.append(f"{name:32s} hardware/Epoch = {ratio:5.2f}  implied MFU {implied_mfu:4.2f}  "
                      f"{'ok' if ok else 'OUT'}{note}")
        if name in HARDWARE_EXCLUDED:
            continue
        assert ok, f"{name}: hardware {est.value:.3g} vs Epoch {epoch:.3g} (ratio {ratio:.2f})"
        assert not math.isnan(ratio)
        checked.append(name)
    print("\n".join(["", "hardware vs Epoch:", *report, "skipped:", *skipped]))
    assert all(any(r.startswith(n) for r in report) for n in HARDWARE_EXCLUDED), "an exclusion no longer applies"
    assert len(checked) >= 14, checked
    # The fine-tune-only rows really are nonsense against total compute (implied MFU > 1).
    minerva = next(r for r in _rows() if r["model"] == "Minerva (540B)")
    m_est = compute.hardware(defaults, cat.accelerator(minerva["hardware"]), count=_num(minerva["chip_count"]),
                             hours=_num(minerva["training_hours"]), utilization=1.0)
    assert m_est.value < (_num(minerva["training_compute_flop"]) or 0)
