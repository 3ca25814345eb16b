"""Fleet inventory, fresh-eyes review (session 17): the register as a user writes it, and MIG counted as whole chips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from agent.collectors.csv_import import RegisterError
from agent.collectors.k8s_nodes import node_accelerators
from agent.inventory import import_register
from agent.kb import catalog
from agent.parties import add_site
from agent.store import session_scope
from agent.store.tables.core import Holding
from policies.errors import PolicyError

HEADER = "site,accelerator,count,owner,operator,serial\n"


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _write(tmp_path: Path, body: str, name: str = "register.csv") -> Path:
    p = tmp_path / name
    p.write_text(body, encoding="utf-8", newline="")
    return p


def _live(url: str) -> dict[str, Holding]:
    with session_scope(url) as s:
        return {h.external_id: h for h in s.exec(select(Holding).where(Holding.retired_at == None))}  # noqa: E711


def _veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    from agent.cli import app
    from agent.cli._common import run_app

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    code = run_app(app)
    out = capsys.readouterr()
    return code, out.out, out.err


# --- the register: quantities ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", ["1e308", "1e30", "9007199254740993"])
def test_a_register_quantity_too_large_to_be_a_count_of_chips_is_refused_naming_row_and_field(
    dc: str, tmp_path: Path, count: str
) -> None:
    # 1e308 H100s made the installed base's TPP infinite and `inventory show --json` print "Infinity" (not JSON);
    # past 2**53 a float no longer holds a whole number of chips exactly.
    f = _write(tmp_path, HEADER + f"Dublin DC1,H100,{count},Acme Cloud,Acme Ops,\n")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    assert exc.value.problems[0].startswith("row 2, field count:")
    assert _live(dc) == {}


def test_the_installed_base_stays_valid_json_after_a_register_import_from_the_command_line(
    dc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _write(tmp_path, HEADER + "Dublin DC1,H100,4,Acme Cloud,Acme Ops,\n", "good.csv")
    assert _veuctl(capsys, monkeypatch, "inventory", "import", str(good), "--json")[0] == 0
    huge = _write(tmp_path, HEADER + "Dublin DC1,A100-SXM4-40GB,1e308,Acme Cloud,Acme Ops,\n", "huge.csv")
    code, _, err = _veuctl(capsys, monkeypatch, "inventory", "import", str(huge))
    assert code == 2 and "row 2, field count" in err
    code, out, _ = _veuctl(capsys, monkeypatch, "inventory", "show", "--json")
    data = json.loads(out, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert data["totals"]["count"] == 4 and data["totals"]["tpp"] == 4 * 15832


def test_a_register_with_a_bom_crlf_and_every_bad_quantity_names_each_row_and_writes_nothing(
    dc: str, tmp_path: Path
) -> None:
    body = "\ufeff" + HEADER.replace("\n", "\r\n") + "".join(
        f"Dublin DC1,H100,{q},Acme Cloud,Acme Ops,\r\n" for q in ("0", "-1", "1.5", "nan", "inf", "ten")
    )
    f = _write(tmp_path, body)
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    assert [p.split(":")[0] for p in exc.value.problems] == [f"row {n}, field count" for n in range(2, 8)]
    assert _live(dc) == {}


def test_an_unknown_chip_name_is_named_by_row_and_field_with_the_fix(dc: str, tmp_path: Path) -> None:
    f = _write(tmp_path, HEADER + "Dublin DC1,H100,1,Acme Cloud,Acme Ops,SN-1\n"
               "Dublin DC1,H101,2,Acme Cloud,Acme Ops,\n")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    (problem,) = exc.value.problems
    assert problem.startswith("row 3, field accelerator: H101")
    assert "VEU_CATALOG_FILES" in problem and "did you mean" in problem
    assert _live(dc) == {}


def test_a_failed_reimport_keeps_the_register_as_it_was_and_a_good_one_does_not_double_count(
    dc: str, tmp_path: Path
) -> None:
    f = _write(tmp_path, HEADER + "Dublin DC1,H100,4,Acme Cloud,Acme Ops,\n"
               "Dublin DC1,H100,1,Acme Cloud,Acme Ops,SN-1\n")
    import_register(f, dc)
    before = {k: (h.count, h.last_seen) for k, h in _live(dc).items()}
    f.write_text(HEADER + "Dublin DC1,H100,6,Acme Cloud,Acme Ops,\nDublin DC1,H100,1e308,Acme Cloud,Acme Ops,SN-1\n")
    with pytest.raises(RegisterError):
        import_register(f, dc)
    assert {k: (h.count, h.last_seen) for k, h in _live(dc).items()} == before
    f.write_text(HEADER + "Dublin DC1,H100,4,Acme Cloud,Acme Ops,\nDublin DC1,H100,1,Acme Cloud,Acme Ops,SN-1\n")
    import_register(f, dc)
    assert sum(h.count for h in _live(dc).values()) == 5


# --- the register: MIG slices are not chips ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "count", "serial"),
    [
        ("A100-SXM4-40GB-MIG-1g.5gb", "1", "SN-1"),  # was 1/7 of a serialised chip
        ("A100-SXM4-40GB-MIG-3g.20gb", "2", ""),  # was 6/7 of a chip
        ("NVIDIA-H100-80GB-HBM3-MIG-1g.10gb", "7", ""),
    ],
)
def test_a_register_row_naming_a_mig_slice_is_refused_saying_to_list_the_whole_gpu(
    dc: str, tmp_path: Path, accelerator: str, count: str, serial: str
) -> None:
    # A MIG-partitioned GPU is one chip: a register of slices counted fractions of chips (1.71 A100s).
    f = _write(tmp_path, HEADER + f"Dublin DC1,{accelerator},{count},Acme Cloud,Acme Ops,{serial}\n")
    with pytest.raises(RegisterError) as exc:
        import_register(f, dc)
    (problem,) = exc.value.problems
    assert problem.startswith("row 2, field accelerator:") and "MIG" in problem
    parent = catalog().resolve(accelerator).accelerator
    assert parent.name in problem or parent.id in problem
    assert _live(dc) == {}


# --- Kubernetes nodes: MIG partitions counted as whole GPUs, once ------------------------------------------


def test_a_gke_node_with_gpu_partitions_counted_from_its_label_is_its_physical_gpus() -> None:
    # Before the device plugin reports nvidia.com/gpu, the count comes from gke-accelerator-count, which counts
    # physical GPUs: dividing it by the partitions per GPU made 8 A100s into 2.
    labels = {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
        "cloud.google.com/gke-gpu-partition-size": "1g.5gb",
        "cloud.google.com/gke-accelerator-count": "8",
    }
    a100 = catalog().resolve("nvidia-tesla-a100").accelerator.id
    assert node_accelerators(labels, {}) == (a100, 8.0)
    assert node_accelerators(labels, {"nvidia.com/gpu": "56"}) == (a100, 8.0)  # 56 partitions of 1g.5gb


def test_a_labelled_gpu_node_advertising_only_mig_devices_and_no_gpu_count_is_an_error_not_zero_chips() -> None:
    # MIG "mixed" with nvidia.com/gpu.product set by hand (as the unlabelled-node error advises) and no
    # gpu.count: nvidia.com/gpu is 0, every GPU is in MIG slices. The node silently held nothing, and a complete
    # cluster listing retired its chips.
    labels = {"nvidia.com/gpu.product": "A100-SXM4-40GB", "nvidia.com/mig.strategy": "mixed"}
    with pytest.raises(PolicyError, match=r"nvidia\.com/gpu\.count"):
        node_accelerators(labels, {"nvidia.com/gpu": "0", "nvidia.com/mig-1g.5gb": "56"})
    # With GFD's gpu.count (physical under "mixed") the node is its 8 GPUs.
    labels["nvidia.com/gpu.count"] = "8"
    assert node_accelerators(labels, {"nvidia.com/mig-1g.5gb": "56"}) == (
        catalog().resolve("A100-SXM4-40GB").accelerator.id, 8.0)
