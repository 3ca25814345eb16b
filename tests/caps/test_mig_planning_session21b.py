"""MIG slices in planning and shipments (session 21b).

A VEU operator plans, installs, retires and ships whole GPUs; a MIG slice is a runtime partition of one. A
reservation and the inventory import already refuse a MIG slice as a chip. The what-if and the shipments ledger took
one as a fraction of its GPU: `veuctl whatif --add 7 --chip "A100-SXM4-40GB MIG 1g.5gb"` was titled
"add 7 x NVIDIA A100 SXM4 40GB" but counted one A100 (and its max N was in slices, which no reservation takes), and
`--retire 42` of the slice "fitted" six installed A100s. `veuctl shipments add --count 7` of the slice recorded one
A100 shipped, where `veuctl paths --items "... x 7"` counts the same words as seven A100s. Each is refused now, on
the CLI, the API and the dashboard's what-if form alike, naming --chip and the GPU to give instead.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent.api.app import create_app
from agent.cli import app as cli_app
from agent.cli._common import run_app
from agent.store import session_scope
from agent.store.tables.caps import Shipment
from agent.store.tables.core import Party

A100 = 4992
SLICE = "A100-SXM4-40GB MIG 1g.5gb"
GPU = "NVIDIA A100 SXM4 40GB"


def veuctl(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           ) -> tuple[int, Any, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(cli_app)
    out = capsys.readouterr()
    data = json.loads(out.out) if rc == 0 and "--json" in args else out.out
    return rc, data, out.err


def ok(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    rc, data, err = veuctl(args, capsys, monkeypatch)
    assert rc == 0, err
    return data


def refused(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    rc, _, err = veuctl(args, capsys, monkeypatch)
    assert rc == 2, err
    return " ".join(err.split())  # rich wraps long messages


@pytest.fixture()
def nord(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Nord (SE) holds a UVEU: 93 A100 in Sweden, 6 in the UAE; Gulf AI (AE) is a consignee."""
    ok(["parties", "add", "Nord", "--hq", "SE"], capsys, monkeypatch)
    ok(["parties", "add", "Gulf AI", "--hq", "AE"], capsys, monkeypatch)
    ok(["sites", "add", "sto", "--country", "SE"], capsys, monkeypatch)
    ok(["sites", "add", "auh", "--country", "AE"], capsys, monkeypatch)
    csv = tmp_path / "assets.csv"
    csv.write_text("site,accelerator,count,owner,operator\n"
                   "sto,a100-sxm4-40gb,93,Nord,Nord\n"
                   "auh,a100-sxm4-40gb,6,Nord,Nord\n")
    ok(["inventory", "import", str(csv), "--json"], capsys, monkeypatch)
    ok(["authorizations", "add", "nord-uveu", "--kind", "uveu", "--holder", "Nord"], capsys, monkeypatch)
    return db_url


# ---------------------------------------------------------------------------------------------- what-if


@pytest.mark.parametrize("change", [["--add", "7"], ["--retire", "42"], ["--move", "7", "--to", "sto"]])
def test_a_whatif_of_mig_slices_is_refused_naming_the_gpu(
    nord: str, change: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --add 7 was titled "add 7 x NVIDIA A100 SXM4 40GB" but counted one A100 (7 x 1/7); --retire 42 "fitted"
    # the six A100s installed at auh, read as 42 slices.
    err = refused(["whatif", "nord-uveu", *change, "--chip", SLICE, "--site", "auh", "--json"], capsys, monkeypatch)
    assert "--chip" in err and "MIG slice" in err and GPU in err
    assert change[0] in err  # the option whose N is to be given in GPUs


def test_a_whatif_of_the_whole_gpu_still_answers_in_gpus(
    nord: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # AE share: 6 / 99 A100 before; one more is 7 / 100 = 7%, exactly the ¶6 limit; two are over.
    w = ok(["whatif", "nord-uveu", "--add", "1", "--chip", GPU, "--site", "auh", "--json"], capsys, monkeypatch)
    assert w["ok"] and w["max_fit"] == 1 and w["change"]["chip"] == "a100-sxm4-40gb"
    r = ok(["whatif", "nord-uveu", "--retire", "6", "--chip", "a100-sxm4-40gb", "--site", "auh", "--json"],
           capsys, monkeypatch)
    assert r["change"]["available"] == 6 and r["max_fit"] == 6


@pytest.fixture()
def client(nord: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("VEU_AUTH", "none")
    with TestClient(create_app(nord)) as c:
        yield c


def test_the_api_and_dashboard_whatif_refuse_a_mig_slice_on_the_chip_field(client: TestClient) -> None:
    r = client.post("/api/v1/whatif", json={"authorization": "nord-uveu", "n": 7, "chip": SLICE, "site": "auh"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "chip" in detail and "MIG slice" in detail and GPU in detail
    page = client.post("/whatif", data={"authorization": "nord-uveu", "op": "add", "n": "7", "chip": SLICE,
                                        "site": "auh"})
    assert page.status_code == 422 and "MIG slice" in page.text and GPU in page.text
    assert 'id="whatif-chip" aria-invalid="true"' in page.text  # the chip field is the one marked
    assert "(How many)" in page.text and "characters)" not in page.text  # the form's words, not cut short
    # The whole GPU: the same answer as the CLI's.
    r = client.post("/api/v1/whatif", json={"authorization": "nord-uveu", "n": 1, "chip": GPU, "site": "auh"})
    assert r.status_code == 200 and r.json()["ok"] and r.json()["max_fit"] == 1


# -------------------------------------------------------------------------------------------- shipments


def test_a_shipment_of_mig_slices_is_refused_and_nothing_is_recorded(
    nord: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --count 7 of the slice was recorded as one A100 shipped (count 1, 4,992 TPP), where `veuctl paths --items
    # "A100-SXM4-40GB MIG 1g.5gb x 7"` reads the same words as seven A100s (34,944 TPP).
    ship = ["shipments", "add", "--date", "2026-02-10", "--consignee", "Gulf AI", "--destination", "AE",
            "--via", "licence", "--reference", "D1", "--count", "7"]
    err = refused([*ship, "--chip", SLICE, "--json"], capsys, monkeypatch)
    assert "--chip" in err and "MIG slice" in err and GPU in err and "--count" in err
    assert ok(["shipments", "list", "--json"], capsys, monkeypatch) == []
    row = ok([*ship, "--chip", GPU, "--json"], capsys, monkeypatch)
    assert (row["accelerator"], row["count"], row["tpp"]) == ("a100-sxm4-40gb", 7, 7 * A100)


def test_the_api_refuses_a_shipment_of_mig_slices(client: TestClient) -> None:
    body = {"date": "2026-02-10", "consignee": "Gulf AI", "destination": "AE", "chip": SLICE, "count": 7,
            "via": "licence", "reference": "D1"}
    r = client.post("/api/v1/shipments", json=body)
    assert r.status_code == 422, r.text
    assert "chip" in r.json()["detail"] and GPU in r.json()["detail"]
    assert client.get("/api/v1/shipments").json()["total"] == 0


def test_a_fractional_shipment_stored_before_is_still_listed_as_it_was(
    nord: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A store written before this release may hold a shipment of slices (count 1/7 of a GPU): it is kept and read.
    with session_scope(nord) as s:
        gulf = s.exec(select(Party).where(Party.name == "Gulf AI")).one()
        s.add(Shipment(day=date(2026, 2, 10), consignee_id=gulf.id, destination="AE", accelerator="a100-sxm4-40gb",
                       count=1 / 7, tpp_each=float(A100), eccn="3A090.a", via="licence", reference="old"))
    rows = ok(["shipments", "list", "--json"], capsys, monkeypatch)
    assert [(r["reference"], r["count"]) for r in rows] == [("old", 1 / 7)]


def test_a_proposal_of_mig_slices_is_refused_naming_items() -> None:
    """`veuctl paths --items "A100-SXM4-40GB MIG 1g.5gb x 7"` read the slice as its GPU at full TPP: 7 GPUs."""
    from datetime import date

    import pytest

    from agent.obligations import resolve_items
    from agent.packs import load_registry
    from policies.errors import PolicyError

    packs = load_registry()
    with pytest.raises(PolicyError, match=r"--items: .*is a MIG slice .*NVIDIA A100"):
        resolve_items(packs, "A100-SXM4-40GB MIG 1g.5gb x 7", date(2026, 6, 1))
    assert resolve_items(packs, "A100-SXM4-40GB x 7", date(2026, 6, 1))[0].count == 7
