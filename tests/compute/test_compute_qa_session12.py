"""QA of compute estimation and the model ledger: FP32 runs, figures at a limit, publication dates, regimes."""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import ledger as svc
from agent.api.app import create_app
from agent.auth import create_token
from agent.cli import app
from agent.cli._common import run_app
from agent.kb import catalog
from agent.parties import add_party
from agent.store import session_scope
from policies import compute
from policies.compute import Estimate, EstimationDefaults
from policies.ledger import EXCLUDED_DERIVATIVE, Ledger, ModelRecord, Run, SyntheticInput, regime
from policies.packs import PackRegistry

D = date(2026, 6, 1)


def _run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """veuctl in-process (the console script's code path): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    capsys.readouterr()
    rc = run_app(app)
    out = capsys.readouterr()
    return rc, out.out, out.err


def _ops(x: float) -> Estimate:
    return Estimate(x, x, x, "declared-operations", f"declared {x}")


# ----------------------------------------------------------------------------------- FP32 on tensor-core chips


def test_fp32_training_on_a_tensor_core_chip_is_bounded_at_its_tf32_rate(packs: PackRegistry) -> None:
    # The catalog holds tensor rates; FP32 matrix math runs no faster than the FP32-input (TF32) tensor path.
    defaults = EstimationDefaults.from_packs(packs, D)
    h100 = catalog().accelerator("h100-sxm")
    e = compute.hardware(defaults, h100, count=8, hours=10, utilization=1.0, precision="FP32")
    assert e.value == pytest.approx(8 * 10 * 3600 * h100.peak_flops("TF32"))
    assert e.inputs["precision"] == "TF32" and "no dense FP32 rate; used its TF32 rate" in e.explanation


def test_fp32_is_still_taken_at_a_chip_s_own_fp32_rate_when_the_catalog_has_one(packs: PackRegistry) -> None:
    defaults = EstimationDefaults.from_packs(packs, D)
    a10g = catalog().accelerator("a10g")
    e = compute.hardware(defaults, a10g, count=1, hours=1, utilization=1.0, precision="FP32")
    assert e.inputs["precision"] == "FP32" and e.value == pytest.approx(3600 * a10g.peak_flops("FP32"))


def test_veuctl_estimate_with_precision_fp32_on_h100s_gives_an_estimate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, err = _run(capsys, monkeypatch, "estimate", "--chip", "h100", "--count", "8", "--hours", "10",
                        "--precision", "fp32", "--json")
    assert rc == 0, err
    assert json.loads(out)["inputs"]["precision"] == "TF32"


# ----------------------------------------------------------------------------------- figures at a limit


def _status(packs: PackRegistry, records: list[ModelRecord], name: str) -> Any:
    return Ledger({r.name: r for r in records}, regime(packs, "eccn-4e091", D), D).status(name)


def test_a_total_just_below_1e26_never_reads_as_1e26_in_the_explanation(packs: PackRegistry) -> None:
    st = _status(packs, [ModelRecord("m", "o", runs=(Run(9.9996e25),))], "m")
    assert st.status == "below-threshold"
    assert "threshold >= 1e26: 9.9996e25 does not meet it" in st.explanation
    assert "1e26 does not meet it" not in st.explanation.replace("9.9996e25", "")


def test_a_derivative_just_over_its_allowance_shows_additional_operations_above_the_limit(
    packs: PackRegistry,
) -> None:
    # 4E091: derived with "more than 2.5 × 10^25 'operations' or more than 25 percent ... whichever is higher".
    pub = ModelRecord("p", "o", published=True, runs=(Run(1e26),))
    d = ModelRecord("d", "c", base="p", runs=(Run(2.50001e25),))
    st = _status(packs, [pub, d], "d")
    assert st.status == "4E091"
    assert "= 2.50001e25; limit max(2.5e25, 0.25 × 1e26) = 2.5e25 -> exceeds it" in st.explanation
    at = _status(packs, [pub, ModelRecord("d", "c", base="p", runs=(Run(2.5e25),))], "d")
    assert at.status == EXCLUDED_DERIVATIVE and "= 2.5e25; limit" in at.explanation


def test_a_synthetic_share_just_over_ten_percent_reads_over_ten_percent(packs: PackRegistry) -> None:
    gen = ModelRecord("g", "x", runs=(Run(1e24),))
    c = ModelRecord("c", "o", runs=(Run(1e25),), synthetic=(SyntheticInput("g", 0.10001, 1e22),))
    st = _status(packs, [gen, c], "c")
    assert "0.10001 of operations (> 0.1) -> generation operations 1e22 counted" in st.explanation


def test_veuctl_models_show_headline_of_a_total_below_1e26_shows_its_digits(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(capsys, monkeypatch, "parties", "add", "Acme", "--hq", "US")[0] == 0
    assert _run(capsys, monkeypatch, "models", "add", "near", "--owner", "Acme")[0] == 0
    assert _run(capsys, monkeypatch, "models", "add-run", "near", "--operations", "9.9996e25")[0] == 0
    rc, out, err = _run(capsys, monkeypatch, "models", "show", "near")
    assert rc == 0, err
    assert "below-threshold — 9.9996e25 operations" in out
    rc, out, _ = _run(capsys, monkeypatch, "models", "list")
    assert rc == 0 and "9.9996e25" in out


# ----------------------------------------------------------------------------------- publication dates


def test_a_publication_date_before_recorded_training_is_refused_and_nothing_changes(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # add-run refuses a run starting on or after publication (training published weights makes a derivative);
    # recording the publication after the run must not produce that state the other way round.
    assert _run(capsys, monkeypatch, "parties", "add", "Acme", "--hq", "US")[0] == 0
    assert _run(capsys, monkeypatch, "models", "add", "m", "--owner", "Acme")[0] == 0
    rc, _, err = _run(capsys, monkeypatch, "models", "add-run", "m", "--operations", "1.2e26", "--start", "2026-03-01")
    assert rc == 0, err
    for day in ("2026-01-01", "2026-03-01"):
        rc, _, err = _run(capsys, monkeypatch, "models", "add", "m", "--owner", "Acme", "--published-on", day)
        assert rc == 2 and err.startswith("error: --published-on:") and "2026-03-01" in err
        assert len(err.strip().splitlines()) == 1
    rc, out, _ = _run(capsys, monkeypatch, "models", "show", "m", "--as-of", "2026-06-01", "--json")
    shown = json.loads(out)
    assert rc == 0 and shown["published"] is False and shown["status"] == "4E091"
    assert shown["cumulative_operations"] == 1.2e26
    # Published after that training: accepted.
    assert _run(capsys, monkeypatch, "models", "add", "m", "--owner", "Acme", "--published-on", "2026-04-01")[0] == 0
    rc, out, _ = _run(capsys, monkeypatch, "models", "show", "m", "--as-of", "2026-06-01", "--json")
    assert json.loads(out)["status"] == "excluded:published"


def test_a_publication_date_before_metered_training_is_refused(db_url: str, packs: PackRegistry) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        svc.add_model(s, "m", "Acme")
        svc.add_metered_usage(
            s, customer="Acme", model="m", job="ns/job#pod-0", accelerator_name="h100-sxm", chip_seconds=3600.0,
            start=datetime(2026, 3, 1, 12, tzinfo=UTC), end=datetime(2026, 3, 1, 13, tzinfo=UTC), packs=packs,
        )
    with session_scope(db_url) as s, pytest.raises(svc.LedgerError, match=r"--published-on: .*2026-03-01"):
        svc.add_model(s, "m", "Acme", published=None, published_on=date(2026, 2, 1))
    with session_scope(db_url) as s:
        assert svc.get_model(s, "m").published is False


# ----------------------------------------------------------------------------------- regime


def test_a_provision_that_is_not_a_ledger_regime_is_refused_naming_regime(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _run(capsys, monkeypatch, "parties", "add", "Acme", "--hq", "US")[0] == 0
    assert _run(capsys, monkeypatch, "models", "add", "m", "--owner", "Acme")[0] == 0
    for cmd in (("models", "show", "m"), ("models", "list")):
        rc, _, err = _run(capsys, monkeypatch, *cmd, "--regime", "red-flag-28")
        assert rc == 2 and err.startswith("error: --regime: red-flag-28 is not a training-compute regime"), err


def test_veuctl_estimate_as_of_before_the_estimation_defaults_names_as_of(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, _, err = _run(capsys, monkeypatch, "estimate", "--operations", "1e25", "--as-of", "2019-01-01")
    assert rc == 2 and err.startswith("error: --as-of: estimation-defaults: not in effect on 2019-01-01"), err


def test_an_unknown_regime_query_parameter_is_a_422_naming_regime_not_a_missing_model(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        _, secret = create_token(s, role="admin", name="qa")
    c = TestClient(create_app(db_url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    assert c.post("/api/v1/models", json={"name": "m", "owner": "Acme"}).status_code == 201
    for path in ("/api/v1/models/m", "/api/v1/models"):
        r = c.get(path, params={"regime": "nope"})
        assert r.status_code == 422 and r.json()["detail"].startswith("regime: nope"), r.text
    assert c.get("/api/v1/models/m", params={"regime": "eu-ai-act-gpai-systemic-risk"}).status_code == 200


# ----------------------------------------------------------------------------------- overflow through new links


def _two_huge_models(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        for name in ("a", "g"):
            svc.add_model(s, name, "Acme")
            svc.add_run(s, name, _ops(1e308), date(2026, 1, 1))


def test_a_data_generator_whose_training_would_overflow_the_lineage_total_is_refused(
    db_url: str, packs: PackRegistry
) -> None:
    # Note 3 adds an unpublished generator's training operations: 1e308 + 1e308 is not a number of operations.
    _two_huge_models(db_url)
    with session_scope(db_url) as s, pytest.raises(svc.EstimateError, match=r"^--generator: counting 'g'"):
        svc.add_synthetic(s, "a", "g", 0.5, 1.0)
    with session_scope(db_url) as s:
        view = svc.model_view(s, packs, "a", D)
        assert view["synthetic_inputs"] == [] and view["cumulative_operations"] == 1e308


def test_a_base_whose_total_would_overflow_the_lineage_total_is_refused(db_url: str, packs: PackRegistry) -> None:
    _two_huge_models(db_url)
    with session_scope(db_url) as s, pytest.raises(svc.EstimateError, match=r"^--base: counting 'g'"):
        svc.add_model(s, "a", "Acme", base="g", published=None)
    with session_scope(db_url) as s:
        view = svc.model_view(s, packs, "a", D)
        assert view["base"] is None and view["cumulative_operations"] == 1e308


def test_veuctl_models_add_synthetic_never_prints_an_infinite_total(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _two_huge_models(db_url)
    rc, out, err = _run(capsys, monkeypatch, "models", "add-synthetic", "a", "--generator", "g", "--fraction", "0.5",
                        "--generation-operations", "1", "--json")
    assert rc == 2 and out == "" and err.startswith("error: --generator:"), (out, err)
    rc, out, _ = _run(capsys, monkeypatch, "models", "list", "--json")
    assert rc == 0 and "Infinity" not in out and json.loads(out)[0]["cumulative_operations"] == 1e308


@pytest.mark.parametrize("spelling", ["fp8-e4m3", "FP8_E5M2", "mxfp8"])
def test_fp8_format_names_as_frameworks_write_them_are_the_fp8_precision(spelling: str) -> None:
    assert compute.normalize_precision(spelling) == "FP8"
