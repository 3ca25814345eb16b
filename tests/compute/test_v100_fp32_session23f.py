"""A V100 run declared in FP32 is estimated at the V100's published FP32 rate; it has no TF32 (Volta has none).

Source for the rate: Epoch AI ML Hardware database (mirror joshyou/clod ``ml_hardware.csv``, the catalog's source for
both V100 rows), column "FP32 (single precision) performance": 1.567e13 FLOP/s for "NVIDIA Tesla V100 SXM2" and
"NVIDIA Tesla V100 SXM2 32 GB"; the row cites NVIDIA's V100 datasheet (15.7 TFLOPS single precision, SXM2). Its
TF32 column is empty. At 32 bits the FP32 rate gives 501 TPP, far under the FP16 tensor rate's 2,000, so the
chip's TPP and classification do not move.
"""

from __future__ import annotations

from datetime import date

import pytest

from agent.kb import catalog
from policies import compute
from policies.compute import EstimationDefaults
from policies.errors import EstimateError
from policies.packs import PackRegistry

D = date(2026, 6, 1)


@pytest.fixture(scope="module")
def defaults(packs: PackRegistry) -> EstimationDefaults:
    return EstimationDefaults.from_packs(packs, D)


@pytest.mark.parametrize("chip", ["v100-sxm2-16gb", "v100-sxm2-32gb"])
def test_v100_run_declared_fp32_is_estimated_at_15_67_tflops(defaults: EstimationDefaults, chip: str) -> None:
    v100 = catalog().accelerator(chip)
    e = compute.hardware(defaults, v100, count=8, hours=10, utilization=0.5, precision="fp32")
    assert e.inputs["precision"] == "FP32"
    assert e.value == pytest.approx(8 * 10 * 3600 * 15.67e12 * 0.5)


@pytest.mark.parametrize("chip", ["v100-sxm2-16gb", "v100-sxm2-32gb"])
def test_v100_fp32_rate_leaves_its_tpp_at_the_fp16_tensor_rate(chip: str) -> None:
    v100 = catalog().accelerator(chip)
    assert v100.tpp == 2000 and v100.tpp_precision == "FP16"
    assert v100.rate("FP32") == 15.67


def test_v100_has_no_tf32_so_a_tf32_run_is_refused_naming_the_precision(defaults: EstimationDefaults) -> None:
    v100 = catalog().accelerator("v100-sxm2-16gb")
    with pytest.raises(EstimateError, match="no dense rate for TF32"):
        compute.hardware(defaults, v100, count=8, hours=10, precision="tf32")
