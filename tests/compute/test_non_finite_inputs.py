"""Numbers that are not finite, or not sensible, never get through: one-line error naming the option, exit 2.

Overflows (1e200 × 1e200), infinities and NaN (``inf``, ``nan``, ``1e400``), a precision given twice, a
fraction of a chip, an unknown role or country: each is refused where it is typed, and whatever ``--json``
prints is valid JSON (never ``Infinity`` or ``NaN``).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from policies.classification import classify
from policies.duediligence import LogicIC, check
from policies.errors import PolicyError
from policies.packs import PackRegistry
from tests.compute.test_compute_cli import Veuctl as _Veuctl


def strict_json(text: str) -> Any:
    """Parse JSON as any other JSON reader would: Infinity and NaN are not JSON."""
    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in --json output")
    return json.loads(text, parse_constant=refuse)


class Veuctl(_Veuctl):
    """The compute tests' in-process veuctl, whose --json output must be strict JSON (no Infinity, no NaN)."""

    def json(self, *args: str) -> Any:
        rc, out, err = self(*args, "--json")
        assert rc == 0, err
        return strict_json(out)

    def refused(self, *args: str) -> str:
        """Run with --json; assert exit 2, nothing on stdout and one line on stderr; return that line."""
        rc, out, err = self(*args, "--json")
        assert rc == 2, (out, err)
        assert out == "" and err.startswith("error: ") and err.strip().count("\n") == 0, err
        return err


@pytest.fixture()
def veuctl(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Veuctl:
    v = Veuctl(capsys, monkeypatch)
    assert v("parties", "add", "Acme", "--hq", "US")[0] == 0
    return v


# ------------------------------------------------------------------------ 1. estimates that overflow


@pytest.mark.parametrize("args,names", [
    (("--params", "1e200", "--tokens", "1e200"), ("--params", "--tokens")),
    (("--params", "1e200", "--active-params", "1e200", "--tokens", "1e200", "--moe"), ("--active-params", "--tokens")),
    (("--chip", "h100", "--count", "1e300", "--hours", "1e300"), ("--count", "--hours")),
    (("--chip", "h100", "--chip-hours", "1e300"), ("--chip-hours",)),
    (("--operations", "1.7e308"), ("--operations",)),  # finite, but its declared band (×1.6) is not
])
def test_an_estimate_that_overflows_is_an_error_naming_its_inputs(
    veuctl: Veuctl, args: tuple[str, ...], names: tuple[str, ...]
) -> None:
    err = veuctl.refused("estimate", *args)
    assert "overflows" in err and "not a finite number" in err
    assert all(n in err for n in names), err


def test_the_largest_estimates_that_fit_are_still_answered_in_valid_json(veuctl: Veuctl) -> None:
    out = veuctl.json("estimate", "--params", "1e100", "--tokens", "1e100")
    assert out["operations"] == pytest.approx(6e200)
    assert veuctl.json("estimate", "--operations", "1e308")["high"] == pytest.approx(1.6e308)


@pytest.mark.parametrize("count", ["1.5", "0.25", "1e-3"])
def test_chips_are_whole_devices_so_a_fractional_count_is_an_error(veuctl: Veuctl, count: str) -> None:
    err = veuctl.refused("estimate", "--chip", "h100", "--count", count, "--hours", "10")
    assert err.startswith("error: --count: ") and "whole" in err


def test_a_whole_count_written_as_a_decimal_or_exponent_is_accepted(veuctl: Veuctl) -> None:
    a = veuctl.json("estimate", "--chip", "h100", "--count", "8", "--hours", "10")
    assert veuctl.json("estimate", "--chip", "h100", "--count", "8.0", "--hours", "10") == a
    assert veuctl.json("estimate", "--chip", "h100", "--count", "8e0", "--hours", "10") == a


# ------------------------------------------------------------------------ 2. chips classify


@pytest.mark.parametrize("rate", ["FP8=1e400", "FP8=inf", "FP8=nan", "FP8=-1979", "FP8=1e308"])
def test_a_rate_that_is_not_a_positive_finite_number_or_overflows_tpp_names_rate(veuctl: Veuctl, rate: str) -> None:
    err = veuctl.refused("chips", "classify", "--rate", rate)
    assert err.startswith("error: --rate")


@pytest.mark.parametrize("area", ["inf", "nan", "1e400", "-814", "0", "1e-320"])
def test_a_die_area_that_is_not_a_positive_finite_number_or_overflows_density_names_die_area(
    veuctl: Veuctl, area: str
) -> None:
    err = veuctl.refused("chips", "classify", "--rate", "FP8=1979", "--die-area", area)
    assert err.startswith("error: --die-area: ")


@pytest.mark.parametrize("second", ["FP8=100", "fp8=1979", "e4m3=100"])
def test_the_same_precision_given_twice_is_an_error_not_last_one_wins(veuctl: Veuctl, second: str) -> None:
    err = veuctl.refused("chips", "classify", "--rate", "FP8=1979", "--rate", second)
    assert err.startswith("error: --rate: ") and "twice" in err


def test_distinct_precisions_still_classify(veuctl: Veuctl) -> None:
    out = veuctl.json("chips", "classify", "--rate", "FP8=1979", "--rate", "BF16=989.5", "--die-area", "814")
    assert out["tpp"] == pytest.approx(15832) and out["eccn"] == "3A090.a"


@pytest.mark.parametrize("tpp,pd", [(float("nan"), None), (float("inf"), None), (5000.0, float("nan")),
                                    (5000.0, float("inf"))])
def test_the_classifier_refuses_non_finite_tpp_or_density(packs: PackRegistry, tpp: float, pd: float | None) -> None:
    # NaN fails every ">=" threshold test: it must never come out "not 3A090".
    with pytest.raises(PolicyError):
        classify(packs, tpp, pd, True, date(2026, 6, 1))


# ------------------------------------------------------------------------ 3. dd check


@pytest.mark.parametrize("option", ["--node-nm", "--transistors"])
@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-5", "0"])
def test_dd_figures_must_be_positive_finite_numbers(veuctl: Veuctl, option: str, value: str) -> None:
    err = veuctl.refused("dd", "check", option, value)
    assert err.startswith(f"error: {option}: ")


def test_dd_role_must_be_one_of_the_allowed_roles(veuctl: Veuctl) -> None:
    err = veuctl.refused("dd", "check", "--role", "foo")
    assert err.startswith("error: --role: ") and "front-end-fabricator" in err and "osat" in err


@pytest.mark.parametrize("option", ["--packaging-country", "--designer-hq", "--designer-parent-hq"])
def test_dd_countries_must_resolve(veuctl: Veuctl, option: str) -> None:
    err = veuctl.refused("dd", "check", option, "XX")
    assert err.startswith(f"error: {option}: ") and "XX" in err


def test_dd_countries_resolve_like_elsewhere_names_and_codes(veuctl: Veuctl) -> None:
    out = veuctl.json("dd", "check", "--node-nm", "5", "--transistors", "2.5e10", "--hbm", "yes",
                      "--packaging", "fabricator", "--packaging-country", "Taiwan", "--count-attested-by",
                      "fabricator", "--as-of", "2026-06-01")
    assert out["overcome_by"] == "b-fabricator-packaging" and "TW" in out["reason"]


def test_a_node_that_is_not_a_number_is_never_taken_as_not_presumed(packs: PackRegistry) -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(PolicyError, match="node_nm"):
            check(packs, LogicIC(node_nm=bad), date(2026, 6, 1))
        with pytest.raises(PolicyError, match="transistors"):
            check(packs, LogicIC(node_nm=5, transistors=bad), date(2026, 6, 1))
    with pytest.raises(PolicyError, match="exporter_role"):
        check(packs, LogicIC(node_nm=5, exporter_role="foo"), date(2026, 6, 1))
    with pytest.raises(PolicyError, match="designer_hq"):
        check(packs, LogicIC(node_nm=5, designer_hq="XX"), date(2026, 6, 1))


# ------------------------------------------------------------------------ 4. the model ledger


def test_a_run_that_would_make_the_lineage_total_infinite_is_refused_and_nothing_written(
    veuctl: Veuctl, tmp_path: Path
) -> None:
    assert veuctl("models", "add", "m", "--owner", "Acme")[0] == 0
    assert veuctl("models", "add-run", "m", "--operations", "1e308")[0] == 0
    err = veuctl.refused("models", "add-run", "m", "--operations", "1e308")
    assert err.startswith("error: --operations: ") and "finite" in err
    shown = veuctl.json("models", "show", "m")
    assert shown["cumulative_operations"] == 1e308 and len(shown["runs"]) == 1
    rc, _, err = veuctl("export", "model-ledger", "--from", "2020-01-01", "--to", "2100-01-01", "--format", "json",
                          "--out", str(tmp_path))
    assert rc == 0, err
    (exported,) = tmp_path.glob("model-ledger_*[0-9].json")
    strict_json(exported.read_text())


def test_a_run_of_a_base_model_that_would_overflow_a_fine_tune_total_is_refused(veuctl: Veuctl) -> None:
    assert veuctl("models", "add", "base", "--owner", "Acme")[0] == 0
    assert veuctl("models", "add", "tuned", "--owner", "Acme", "--base", "base")[0] == 0
    assert veuctl("models", "add-run", "base", "--operations", "1e308")[0] == 0
    assert veuctl("models", "add-run", "tuned", "--operations", "5e307")[0] == 0
    # base alone would stay finite (1.5e308), but tuned counts base's operations too (2e308).
    err = veuctl.refused("models", "add-run", "base", "--operations", "5e307")
    assert err.startswith("error: --operations: ") and "'tuned'" in err
    assert veuctl.json("models", "show", "tuned")["cumulative_operations"] == pytest.approx(1.5e308)
    assert veuctl.json("models", "add-run", "base", "--operations", "1e25")["cumulative_operations"] \
        == pytest.approx(1e308)


def test_synthetic_data_generation_that_would_overflow_the_lineage_total_is_refused(veuctl: Veuctl) -> None:
    assert veuctl("models", "add", "gen", "--owner", "Acme")[0] == 0
    assert veuctl("models", "add", "student", "--owner", "Acme")[0] == 0
    assert veuctl("models", "add-run", "student", "--operations", "1e308")[0] == 0
    err = veuctl.refused("models", "add-synthetic", "student", "--generator", "gen", "--fraction", "0.5",
                         "--generation-operations", "1e308")
    assert err.startswith("error: --generation-operations: ")
    assert veuctl.json("models", "show", "student")["cumulative_operations"] == pytest.approx(1e308)


def test_a_number_too_large_for_a_float_is_named_as_typed(veuctl: Veuctl) -> None:
    err = veuctl.refused("estimate", "--operations", "1e400")
    assert "--operations: '1e400' is not a finite number" in err
