"""4E091 estimation inputs as users write them: training dtypes as frameworks spell them, powers of ten, and
runs known only by an end date that has not come yet (training-compute.md §2, regulation.md §8)."""

from __future__ import annotations

from datetime import date

import pytest

from policies import compute
from policies.compute import EstimationDefaults, normalize_precision, parse_number
from policies.errors import EstimateError
from policies.ledger import Ledger, ModelRecord, Run, regime
from policies.packs import PackRegistry

D = date(2026, 6, 1)


class _H100:
    """Dense rates of the H100 SXM as the catalog holds them (FLOP/s)."""

    id = "h100-sxm"
    _rates = {"BF16": 989.4e12, "FP16": 989.4e12, "FP8": 1978.9e12, "TF32": 494.7e12}

    def peak_flops(self, precision: str) -> float:
        return self._rates[precision]


@pytest.mark.parametrize(("written", "precision"), [
    # PyTorch dtype names (torch.float8_e4m3fn, torch.float8_e5m2, the fnuz variants) and the bare formats:
    # an FP8 run that says so must be bounded at the FP8 peak, not refused as an unknown precision.
    ("float8_e4m3fn", "FP8"), ("float8_e5m2", "FP8"), ("float8_e4m3fnuz", "FP8"), ("float8_e5m2fnuz", "FP8"),
    ("fp8_e4m3fn", "FP8"), ("e4m3fn", "FP8"), ("float8", "FP8"),
    ("float4_e2m1fn_x2", "FP4"), ("e2m1", "FP4"), ("fp4_e2m1", "FP4"), ("float4", "FP4"),
])
def test_an_fp8_or_fp4_run_named_by_its_framework_dtype_is_that_precision(written: str, precision: str) -> None:
    assert normalize_precision(written) == precision


def test_an_fp8_run_named_float8_e4m3fn_is_bounded_at_the_dense_fp8_peak(packs: PackRegistry) -> None:
    defaults = EstimationDefaults.from_packs(packs, D)
    est = compute.hardware(defaults, _H100(), count=1024, hours=720, precision="float8_e4m3fn")
    assert est.inputs["precision"] == "FP8"
    assert est.conservative == pytest.approx(1024 * 720 * 3600 * 1978.9e12)


def test_a_sparse_precision_is_still_refused_naming_the_dense_choices() -> None:
    # Sparsity is never counted: a "sparse" rate is not a training precision.
    with pytest.raises(EstimateError) as exc:
        normalize_precision("FP8-sparse")
    assert "precision" in str(exc.value) and "FP8" in str(exc.value)


@pytest.mark.parametrize(("text", "written"), [
    ("10^26", "1e26"), ("1.2x10^26", "1.2e26"), ("1.2 × 10^26", "1.2e26"), ("2.5*10**25", "2.5e25"),
    ("10**25", "1e25"), ("3.14 x 10^23", "3.14e23"),
])
def test_an_operations_figure_written_as_a_power_of_ten_names_the_number_to_write(text: str, written: str) -> None:
    with pytest.raises(EstimateError) as exc:
        parse_number(text, "--operations")
    assert str(exc.value) == f"--operations: {text!r} is not a number; write it as {written}"


def test_a_run_known_only_by_a_later_end_is_not_said_to_start_after_the_date(packs: PackRegistry) -> None:
    rules = regime(packs, "eccn-4e091", D)
    recs = {"m": ModelRecord("m", owner="Zeta", runs=(Run(1.2e26, end=date(2026, 9, 1)),
                                                       Run(1e25, start=date(2026, 7, 1))))}
    st = Ledger(recs, rules, D).status("m")
    assert st.cumulative.runs_later == 2
    text = st.explanation
    # One run starts after the date; the other has no start at all and is dated by its end (Run.counts_on).
    assert "1 run(s) starting after 2026-06-01 and 1 with no start ending after it not counted" in text


def test_models_show_lists_a_run_known_only_by_a_later_end_as_ending_after_the_date(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from agent.cli import app
    from agent.cli._common import run_app

    def veuctl(*args: str) -> str:
        monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        capsys.readouterr()
        rc = run_app(app)
        out = capsys.readouterr()
        assert rc == 0, out.err
        return out.out

    veuctl("parties", "add", "Zeta", "--hq", "CN")
    veuctl("models", "add", "m", "--owner", "Zeta")
    veuctl("models", "add-run", "m", "--operations", "1.2e26", "--end", "2026-09-01")
    out = veuctl("models", "show", "m", "--as-of", "2026-06-01")
    assert "starts after" not in out
    assert "1.2e26 (declared-operations): no start given, dated by its end 2026-09-01, after 2026-06-01: " \
           "not counted" in out


def test_a_job_annotated_with_precision_float8_e4m3fn_declares_fp8() -> None:
    # The admission webhook reads the annotation with the estimator's names: a job saying it trains in FP8 is
    # bounded at the FP8 peak, not held as invalid for its framework's spelling.
    from agent.cases import parse_declared

    assert parse_declared({"precision": "float8_e4m3fn"}).precision == "FP8"
