"""`veuctl chips|instances|regions|dd` as a user runs them: --json fields, exit code 2 with one line on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

VEUCTL = [sys.executable, "-m", "agent"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _capture(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    global _CAP, _MP
    _CAP, _MP = capsys, monkeypatch
    monkeypatch.delenv("VEU_CATALOG_FILES", raising=False)
    yield


_CAP: pytest.CaptureFixture[str]
_MP: pytest.MonkeyPatch


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run veuctl in-process through the same entry point as the console script (exit-code mapping included).

    In-process because a fresh interpreter costs seconds per call; one subprocess test below covers the script.
    """
    from agent.cli import app
    from agent.cli._common import run_app

    for k, v in (env or {}).items():
        _MP.setenv(k, v)
    _CAP.readouterr()
    _MP.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = _CAP.readouterr()
    return Result(code, out.out, out.err)


def ok_json(*args: str, env: dict[str, str] | None = None) -> object:
    r = run(*args, "--json", env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_veuctl_script_exits_2_with_one_line_on_an_unknown_chip() -> None:
    r = subprocess.run([*VEUCTL, "chips", "show", "H1000", "--json"], capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "VEU_CATALOG_FILES"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().count("\n") == 0 and "H1000: not in catalog" in r.stderr


def test_chips_show_by_nvidia_smi_name() -> None:
    out = ok_json("chips", "show", "NVIDIA H100 80GB HBM3", "--as-of", "2026-06-01")
    assert isinstance(out, dict)
    assert out == {**out, "id": "h100-sxm", "vendor": "nvidia", "tpp": 15832.0, "datacenter": True,
                   "eccn": "3A090.a", "tpp_precision": "FP8"}
    assert out["performance_density"] == pytest.approx(19.4496, abs=1e-3)
    assert out["reason"] and out["name"] == "NVIDIA H100 SXM5 80GB"


def test_chips_show_mig_slice_gives_parent_and_fraction() -> None:
    out = ok_json("chips", "show", "NVIDIA-A100-SXM4-80GB-MIG-1g.10gb")
    assert isinstance(out, dict)
    assert out["id"] == "a100-sxm4-80gb" and out["fraction_text"] == "1/7"


def test_chips_show_consumer_card_is_nac_aca_eligible() -> None:
    out = ok_json("chips", "show", "NVIDIA-GeForce-RTX-4090")
    assert isinstance(out, dict)
    assert out["datacenter"] is False and out["eccn"] == "3A090.a" and out["nac_aca_eligible"] is True


def test_chips_list_has_every_chip() -> None:
    out = ok_json("chips", "list")
    assert isinstance(out, list)
    ids = {r["id"] for r in out}
    assert {"h100-sxm", "mi355x", "tpu-v6e", "trainium2", "ascend-910b3", "rtx-5090"} <= ids
    assert all(r["eccn"] in {"3A090.a", "3A090.b", "not-3A090"} for r in out)


def test_chips_classify_from_rates() -> None:
    out = ok_json("chips", "classify", "--rate", "FP8=1979", "--rate", "BF16=989.5", "--die-area", "814")
    assert isinstance(out, dict)
    assert out["tpp"] == 15832.0 and out["eccn"] == "3A090.a"
    assert out["performance_density"] == pytest.approx(19.45, abs=0.01)


def test_chips_classify_non_datacenter_under_4800() -> None:
    out = ok_json("chips", "classify", "--rate", "FP4=1187.5", "--die-area", "750", "--non-datacenter")
    assert isinstance(out, dict)
    assert out["tpp"] == 4750.0 and out["eccn"] == "not-3A090" and out["datacenter"] is False


def test_instances_show_aws_p5() -> None:
    out = ok_json("instances", "show", "aws", "p5.48xlarge")
    assert isinstance(out, dict)
    assert out == {**out, "accelerator": "h100-sxm", "count": 8, "tpp": 8 * 15832.0, "eccn": "4A090.a"}


def test_instances_show_gcp_tpu_slice() -> None:
    out = ok_json("instances", "show", "gcp", "v5p-8")
    assert isinstance(out, dict)
    assert out["accelerator"] == "tpu-v5p" and out["count"] == 4


def test_regions_show_with_tier() -> None:
    out = ok_json("regions", "show", "aws", "eu-west-1", "--as-of", "2025-06-01")
    assert isinstance(out, dict)
    assert out["country"] == "IE" and out["tier"] == 1
    out = ok_json("regions", "show", "aws", "cn-north-1", "--as-of", "2025-06-01")
    assert isinstance(out, dict)
    assert out["country"] == "CN" and out["tier"] == 3


def test_local_zone_groups_are_listed_and_shown_with_the_country_their_chips_count_in() -> None:
    zones = ok_json("regions", "zones", "--provider", "aws")
    assert isinstance(zones, list)
    tpe = next(z for z in zones if z["zone_group"] == "ap-northeast-1-tpe-1")
    assert tpe == {**tpe, "kind": "local", "parent_region": "ap-northeast-1", "country": "TW"}
    out = ok_json("regions", "show", "aws", "ap-northeast-1-tpe-1", "--as-of", "2025-06-01")
    assert isinstance(out, dict)
    assert out == {**out, "country": "TW", "tier": 1, "zone_kind": "local", "parent_region": "ap-northeast-1"}
    r = run("regions", "zones", "--provider", "gcp")
    assert r.returncode == 2 and "--provider: 'gcp' is not in the catalog" in r.stderr


def test_dd_check_presumed_then_overcome() -> None:
    out = ok_json("dd", "check", "--node-nm", "5", "--transistors", "8e10", "--hbm", "yes", "--as-of", "2026-06-01")
    assert isinstance(out, dict)
    assert out["presumed_3a090a"] is True
    out = ok_json("dd", "check", "--node-nm", "5", "--transistors", "3.2e10", "--hbm", "no", "--packaging",
                  "fabricator", "--packaging-country", "TW", "--count-attested-by", "fabricator",
                  "--as-of", "2027-03-01")
    assert isinstance(out, dict)
    assert out["presumed_3a090a"] is False and out["overcome_by"] == "b-fabricator-packaging"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("chips", "show", "H1000"), "H1000: not in catalog"),
        (("chips", "show", ""), "name: empty"),
        (("instances", "show", "gcp", "v5p-0"), "N must be positive"),
        (("instances", "list", "--provider", "gpc"), "--provider: 'gpc'"),
        (("regions", "list", "--provider", "mars"), "--provider: 'mars'"),
        (("chips", "show", "h100", "--as-of", "2025-13-01"), "--as-of"),
        (("chips", "classify", "--rate", "FP8"), "PRECISION=TFLOPS"),
        (("chips", "classify", "--rate", "FP12=5"), "FP12"),
        (("instances", "show", "aws", "p9.48xlarge"), "p9.48xlarge"),
        (("regions", "show", "aws", "mars-1"), "mars-1"),
        (("dd", "check", "--packaging", "someone"), "packaging"),
        (("dd", "check", "--node-nm", "5", "--as-of", "2025-01-01"), "--as-of: foundry-presumption: not in effect"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: tuple[str, ...], needle: str) -> None:
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().count("\n") == 0 and needle in r.stderr


def test_operator_catalog_file_via_env(tmp_path: Path) -> None:
    f = tmp_path / "ops.yaml"
    f.write_text("regions:\n  azure:\n    newzealandnorth: NZ\n")
    r = run("regions", "show", "azure", "newzealandnorth", "--json", "--as-of", "2025-06-01",
            env={"VEU_CATALOG_FILES": str(f)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["country"] == "NZ"


def test_malformed_operator_catalog_file_exits_2_naming_the_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("regions:\n  aws:\n    xx-1: Germany\n")
    r = run("chips", "show", "h100", env={"VEU_CATALOG_FILES": str(f)})
    assert r.returncode == 2 and "bad.yaml" in r.stderr and "regions.aws.xx-1" in r.stderr


def test_list_provider_filter_is_case_insensitive_and_still_lists() -> None:
    rows = ok_json("instances", "list", "--provider", "GCP")
    assert isinstance(rows, list) and rows and {r["provider"] for r in rows} == {"gcp"}
    regs = ok_json("regions", "list", "--provider", "azure")
    assert isinstance(regs, list) and regs and {r["provider"] for r in regs} == {"azure"}


def test_json_performance_density_is_not_rounded_onto_the_3a090b_threshold() -> None:
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "agent", "chips", "classify", "--rate", "FP8=200", "--die-area",
                        "270.2725", "--json"], capture_output=True, text=True, check=True)
    out = json.loads(r.stdout)
    assert out["eccn"] == "3A090.b" and out["performance_density"] < 5.92  # 5.91995..., not "5.92"
