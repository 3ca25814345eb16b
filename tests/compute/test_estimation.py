"""Training-compute estimation: 6·N·D (active parameters for MoE), hardware, metered, and the admission max."""

from __future__ import annotations

from datetime import date

import pytest

from agent.kb import catalog
from agent.packs import load_yaml
from policies import compute
from policies.compute import EstimationDefaults, admission_estimate, parse_number
from policies.errors import EstimateError, PolicyError
from policies.packs import PackRegistry, parse_pack

D = date(2026, 6, 1)


@pytest.fixture(scope="module")
def defaults(packs: PackRegistry) -> EstimationDefaults:
    return EstimationDefaults.from_packs(packs, D)


def test_declared_6nd_for_a_dense_model_is_six_times_params_times_tokens(defaults: EstimationDefaults) -> None:
    e = compute.declared_6nd(defaults, params=1.75e11, tokens=3e11)
    assert e.value == pytest.approx(3.15e23) and e.method == "declared-6nd"
    assert e.low == pytest.approx(3.15e23 * defaults.declared_band_low)
    assert e.high == pytest.approx(3.15e23 * defaults.declared_band_high)
    assert "6 × 1.75e11 × 3e11 tokens = 3.15e23" in e.explanation


def test_mixture_of_experts_uses_active_parameters(defaults: EstimationDefaults) -> None:
    # DeepSeek-V3: 671B total, 37B active, 14.8T tokens -> 6 x 37B x 14.8T.
    e = compute.declared_6nd(defaults, params=6.71e11, active_params=3.7e10, tokens=1.48e13)
    assert e.value == pytest.approx(6 * 3.7e10 * 1.48e13)
    assert "mixture-of-experts" in e.explanation


def test_mixture_of_experts_without_active_parameters_is_rejected(defaults: EstimationDefaults) -> None:
    with pytest.raises(EstimateError, match="active-params"):
        compute.declared_6nd(defaults, params=6.71e11, tokens=1.48e13, moe=True)


def test_active_parameters_above_the_total_are_rejected(defaults: EstimationDefaults) -> None:
    with pytest.raises(EstimateError, match="exceeds the total"):
        compute.declared_6nd(defaults, params=1e10, active_params=2e10, tokens=1e12)


def test_declared_operations_figure_is_taken_with_the_declared_band(defaults: EstimationDefaults) -> None:
    e = compute.declared_operations(defaults, 3.2e25)
    assert (e.value, e.method) == (3.2e25, "declared-operations")
    assert e.high == pytest.approx(3.2e25 * defaults.declared_band_high)


def test_hardware_method_uses_bf16_dense_peak_and_the_packs_utilization(defaults: EstimationDefaults) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    e = compute.hardware(defaults, h100, count=1000, hours=720)
    raw = 1000 * 720 * 3600 * h100.peak_flops("BF16")
    assert e.value == pytest.approx(raw * defaults.utilization)
    assert e.low == pytest.approx(raw * defaults.utilization_low)
    assert e.high == pytest.approx(raw * defaults.utilization_high)
    # The conservative bound: the chips at 100% of dense peak.
    assert e.conservative == pytest.approx(raw * defaults.conservative_utilization)
    assert e.inputs["precision"] == "BF16"


def test_hardware_method_uses_the_fp8_peak_when_fp8_training_is_declared(defaults: EstimationDefaults) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    bf16 = compute.hardware(defaults, h100, count=8, hours=10)
    fp8 = compute.hardware(defaults, h100, count=8, hours=10, precision="fp8")
    assert fp8.value == pytest.approx(bf16.value * h100.peak_flops("FP8") / h100.peak_flops("BF16"))
    assert fp8.inputs["precision"] == "FP8"


def test_precision_the_chip_lacks_is_an_error_naming_the_chip(defaults: EstimationDefaults) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    with pytest.raises(EstimateError, match="h100"):
        compute.hardware(defaults, h100, count=8, hours=10, precision="FP4")


def test_chip_without_bf16_is_taken_at_its_fp16_rate(defaults: EstimationDefaults) -> None:
    v100 = catalog().accelerator("v100-sxm2-32gb")
    e = compute.hardware(defaults, v100, count=1, hours=1)
    assert e.inputs["precision"] == "FP16" and "no dense BF16 rate" in e.explanation


def test_chip_hours_are_accepted_directly(defaults: EstimationDefaults) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    a = compute.hardware(defaults, h100, count=64, hours=100)
    b = compute.hardware(defaults, h100, chip_hours=6400)
    assert a.value == pytest.approx(b.value)
    with pytest.raises(EstimateError, match="not both"):
        compute.hardware(defaults, h100, count=64, hours=100, chip_hours=6400)


def test_stated_utilization_replaces_the_default_and_must_be_a_fraction(defaults: EstimationDefaults) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    e = compute.hardware(defaults, h100, count=10, hours=10, utilization=0.5)
    assert e.value == pytest.approx(10 * 10 * 3600 * h100.peak_flops("BF16") * 0.5)
    with pytest.raises(EstimateError, match="utilization"):
        compute.hardware(defaults, h100, count=10, hours=10, utilization=1.5)


def test_metered_chip_seconds_convert_like_the_hardware_method(defaults: EstimationDefaults) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    e = compute.metered(defaults, h100, chip_seconds=3600 * 500)
    assert e.method == "metered"
    assert e.value == pytest.approx(compute.hardware(defaults, h100, chip_hours=500).value)
    assert "metered 1.8e6 chip-seconds" in e.explanation


def test_admission_estimate_is_the_ledger_total_plus_the_larger_of_declared_and_hardware(
    defaults: EstimationDefaults,
) -> None:
    h100 = catalog().accelerator("NVIDIA H100 SXM5 80GB")
    declared = compute.declared_operations(defaults, 1e24)  # understated
    hw = compute.hardware(defaults, h100, count=20000, hours=720)
    e = admission_estimate(declared=declared, hardware=hw, ledger_cumulative=5e25)
    assert e.value == pytest.approx(5e25 + hw.value)
    assert e.inputs["run_method"] == "hardware"
    assert e.conservative == pytest.approx(5e25 + hw.conservative)
    assert "lineage total = 5e25 +" in e.explanation
    only = admission_estimate(declared=compute.declared_operations(defaults, 8e25), ledger_cumulative=3e25)
    assert only.value == pytest.approx(1.1e26)
    with pytest.raises(EstimateError):
        admission_estimate()


@pytest.mark.parametrize("text,value", [("1e26", 1e26), ("1.5e25", 1.5e25), (" 6_000 ", 6000.0), ("3E24", 3e24)])
def test_numbers_accept_scientific_notation(text: str, value: float) -> None:
    assert parse_number(text, "--operations") == value


@pytest.mark.parametrize("text", ["abc", "1e26x", "nan", "inf", "-1e25", "0", ""])
def test_bad_numbers_are_rejected_naming_the_field(text: str) -> None:
    with pytest.raises(PolicyError, match="--operations"):
        parse_number(text, "--operations")


def test_inconsistent_estimation_defaults_in_a_pack_are_rejected(packs: PackRegistry) -> None:
    bad = parse_pack(load_yaml("""
id: operator-bad-defaults
version: "1"
title: bad
provisions:
  - id: estimation-defaults
    title: bad
    citation: test
    effective_from: 2020-01-01
    status: [{since: 2020-01-01, codified: false, enforced: true}]
    values: {utilization: 0.2, utilization_low: 0.3, utilization_high: 0.4, conservative_utilization: 1.0,
             default_precision: BF16, declared_band_low: 0.5, declared_band_high: 1.6}
"""), "bad")
    with pytest.raises(EstimateError, match="utilization_low <= utilization"):
        EstimationDefaults.from_packs(PackRegistry([*packs.packs, bad]), D)
