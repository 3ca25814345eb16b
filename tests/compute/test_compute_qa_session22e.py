"""Session 22 (task E): 4E091 estimation inputs and the lineage ledger under attack.

- A value that is not a number was refused with "write e.g. 1e26 or 1.5e25" whatever the field: a utilization,
  a chip count, hours, tokens or a synthetic-data share told to be written as 10^26. A utilization or (over the API)
  a synthetic-data fraction written as a percentage ("40%") was not recognised as one. Each field now suggests a
  value of its own kind, and a share written as a percentage is refused with the share to write.
- A mixture-of-experts 6·N·D with only the active count wrote the figure twice ("3.7e10 active parameters per token
  (mixture-of-experts, 3.7e10)").
- Recording a run (or a base) checked every model loaded for the lineage, each by walking its whole lineage: on a
  chain of fine-tunes that is quadratic (3,000 deep: ~13 s to record one run). Only the models whose totals include
  the model can change, and none can overflow when all the operations loaded together are finite.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date

import pytest

from agent.cli import app
from agent.cli._common import run_app
from policies.compute import parse_number
from policies.errors import PolicyError

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def cli(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        capsys.readouterr()
        rc = run_app(app)
        out = capsys.readouterr()
        return rc, out.out, out.err
    assert run("parties", "add", "Lumen", "--hq", "SG")[0] == 0
    return run


@pytest.mark.parametrize(("field", "text", "hint"), [
    ("--utilization", "high", "0.4"),
    ("utilization", "high", "0.4"),
    ("--count", "many", "1024"),
    ("count", "many", "1024"),
    ("--hours", "2d", "720"),
    ("hours", "1:30", "720"),
    ("--chip-hours", "lots", "5e5"),
    ("chip_hours", "lots", "5e5"),
    ("--tokens", "abc", "1.5e13"),
    ("annotation compute.veu-governor.io/tokens", "abc", "1.5e13"),
    ("--params", "big", "7e10"),
    ("active_params", "big", "3.7e10"),
    ("fraction", "half", "0.15"),
    ("annotation compute.veu-governor.io/expected-hours", "soon", "720"),
])
def test_a_non_number_is_refused_with_a_value_of_the_fields_own_kind(field: str, text: str, hint: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_number(text, field)
    msg = str(exc.value)
    assert msg.startswith(f"{field}: {text!r} is not a number"), msg
    assert hint in msg and "1e26" not in msg, msg


@pytest.mark.parametrize("field", ["--operations", "operations", "--generation-operations", "generation_operations"])
def test_an_operations_field_still_suggests_an_operation_count(field: str) -> None:
    with pytest.raises(PolicyError, match=r"write e\.g\. 1e26 or 1\.5e25"):
        parse_number("lots", field)


@pytest.mark.parametrize(("field", "text", "share"), [
    ("--utilization", "40%", "0.4"), ("utilization", "35 %", "0.35"), ("fraction", "15%", "0.15"),
])
def test_a_share_written_as_a_percentage_names_the_share_to_write(field: str, text: str, share: str) -> None:
    with pytest.raises(PolicyError, match=rf"^{field}: '{text}' is a percentage; write it as the number {share}$"):
        parse_number(text, field)


def test_the_cli_utilization_as_a_percentage_names_the_fraction(cli: Cli) -> None:
    rc, _, err = cli("estimate", "--chip", "H100", "--count", "8", "--hours", "10", "--utilization", "40%")
    assert rc != 0 and "--utilization: '40%' is a percentage; write it as the number 0.4" in err, err
    rc, _, err = cli("estimate", "--chip", "H100", "--count", "eight", "--hours", "10")
    assert rc != 0 and "--count: 'eight' is not a number" in err and "1e26" not in err, err


def test_the_api_names_the_fraction_and_utilization_to_write(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app
    from agent.auth import create_token
    from agent.parties import add_party
    from agent.store import session_scope

    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        _, secret = create_token(s, role="admin", name="s22e")
    c = TestClient(create_app(db_url), base_url="https://testserver")
    c.headers["Authorization"] = f"Bearer {secret}"
    r = c.post("/api/v1/estimate", json={"chip": "H100", "count": 8, "hours": 10, "utilization": "40%"})
    assert r.status_code == 422 and r.json()["detail"] == (
        "utilization: '40%' is a percentage; write it as the number 0.4"), r.text
    for name in ("gen", "student"):
        assert c.post("/api/v1/models", json={"name": name, "owner": "Acme"}).status_code == 201
    r = c.post("/api/v1/models/student/synthetic", json={"generator": "gen", "fraction": "15%",
                                                          "generation_operations": 1e24})
    assert r.status_code == 422 and r.json()["detail"] == (
        "fraction: '15%' is a percentage; write it as the number 0.15"), r.text


def test_moe_with_only_the_active_count_writes_it_once(cli: Cli) -> None:
    rc, out, err = cli("estimate", "--active-params", "3.7e10", "--tokens", "1.48e13", "--moe", "--json")
    assert rc == 0, err
    expl = json.loads(out)["explanation"]
    assert "N = 3.7e10 active parameters per token (mixture-of-experts);" in expl, expl


def test_recording_runs_on_a_deep_chain_of_fine_tunes_is_not_quadratic(db_url: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import ledger as svc
    from agent.packs import registry
    from agent.parties import add_party
    from agent.store import session_scope
    from policies.compute import EstimationDefaults, declared_operations
    from policies.ledger import dependencies

    depth = 400
    packs = registry()
    d = EstimationDefaults.from_packs(packs, date(2026, 1, 1))
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        prev: str | None = None
        for i in range(depth):
            svc.add_model(s, f"m{i}", "Acme", base=prev)
            prev = f"m{i}"
    walked = [0]

    def counted(*a: object, **k: object) -> list[str]:
        walked[0] += 1
        return dependencies(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(svc, "dependencies", counted)
    with session_scope(db_url) as s:
        svc.add_run(s, "m0", declared_operations(d, 6e25), date(2025, 1, 1))  # every model's total includes it
        svc.add_run(s, f"m{depth - 1}", declared_operations(d, 4e25), date(2025, 2, 1))  # the whole chain loaded
    # Walking each model's whole lineage once per model visited depth²/2 = 80,000 models for the first run.
    assert walked[0] <= 4 * depth, f"{walked[0]} lineage steps for two runs on a {depth}-deep chain"
    monkeypatch.undo()
    with session_scope(db_url) as s:
        v = svc.model_view(s, packs, f"m{depth - 1}", date(2026, 1, 1))
    assert v["cumulative_operations"] == pytest.approx(1e26) and v["status"] == "4E091"


def test_an_overflow_is_still_refused_for_a_deep_dependent(db_url: str) -> None:
    """The fast bound does not lose the refusal: the leaf's total would overflow, and it is named."""
    from agent import ledger as svc
    from agent.packs import registry
    from agent.parties import add_party
    from agent.store import session_scope
    from policies.compute import EstimationDefaults, declared_operations

    d = EstimationDefaults.from_packs(registry(), date(2026, 1, 1))
    with session_scope(db_url) as s:
        add_party(s, "Acme", "US")
        svc.add_model(s, "root", "Acme")
        svc.add_model(s, "side", "Acme")
        svc.add_model(s, "leaf", "Acme", base="root")
        svc.add_run(s, "leaf", declared_operations(d, 1e308), date(2025, 1, 1))
        svc.add_run(s, "side", declared_operations(d, 1e308), date(2025, 1, 1))  # not in root's lineage: fine
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"'leaf''s .*not a finite number"):
        svc.add_run(s, "root", declared_operations(d, 1e308), date(2025, 1, 1))


@pytest.mark.parametrize("text", ["150%", "-5%", "1000%", "0%"])
def test_a_percentage_outside_the_shares_taken_is_not_told_a_share_that_is_then_refused(text: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_number(text, "--utilization")
    assert "not a share this field takes" in str(exc.value) and "write it as the number" not in str(exc.value)
    assert "from above 0 to 1" in str(exc.value)


def test_zero_percent_where_zero_is_allowed_is_told_0() -> None:
    with pytest.raises(PolicyError, match=r"write it as the number 0$"):
        parse_number("0%", "fraction", allow_zero=True)


def test_a_rate_that_is_not_a_number_is_told_a_rate(cli: Cli) -> None:
    rc, _, err = cli("chips", "classify", "--rate", "FP8=abc")
    assert rc != 0 and "--rate FP8: 'abc' is not a number; write e.g. 1979 (dense TFLOPS" in err, err
