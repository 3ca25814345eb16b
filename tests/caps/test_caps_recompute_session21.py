"""Caps figures recomputed by hand from small fleets built with the README's commands (session 21).

Each test writes its arithmetic out and compares it with `veuctl caps show --json`, `veuctl whatif`,
`veuctl reservations add` and `veuctl paths`. Sources: Supp. No. 10 to part 748 ¶6 (UVEU shares),
§ 742.6(b)(10)(iii)(B)(1) (country allocation counted "cumulatively beginning in 2025").
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.cli import app as cli_app
from agent.cli._common import run_app
from agent.store.tables.core import utc_today

H100 = 15832
A100 = 4992


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


def caps(name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         *extra: str) -> dict[str, dict[str, Any]]:
    data = ok(["caps", "show", *([name] if name else []), *extra, "--json"], capsys, monkeypatch)
    return {c["id"]: c for c in data["caps"]}


# ------------------------------------------------------------------------------ MIG slices in a reservation


@pytest.fixture()
def nord(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Nord (SE, Supp. 5(a)) holds a UVEU: 93 A100 in Sweden, 6 A100 in the UAE (Tier 2)."""
    ok(["parties", "add", "Nord", "--hq", "SE"], capsys, monkeypatch)
    ok(["sites", "add", "sto", "--country", "SE"], capsys, monkeypatch)
    ok(["sites", "add", "auh", "--country", "AE"], capsys, monkeypatch)
    csv = tmp_path / "assets.csv"
    csv.write_text("site,accelerator,count,owner,operator\n"
                   "sto,a100-sxm4-40gb,93,Nord,Nord\n"
                   "auh,a100-sxm4-40gb,6,Nord,Nord\n")
    ok(["inventory", "import", str(csv), "--json"], capsys, monkeypatch)
    ok(["authorizations", "add", "nord-uveu", "--kind", "uveu", "--holder", "Nord"], capsys, monkeypatch)
    return db_url


def test_a_reservation_of_mig_slices_is_refused_rather_than_stored_as_that_many_whole_chips(
    nord: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # AE share before: 6 / 99 = 6.06% <= 7%. One more A100 in AE: 7 / 100 = 7% exactly, within ¶6's "not more
    # than 7%"; two: 8 / 101 = 7.92%, over. Seven 1g.5gb slices are one A100 (7 x 1/7).
    before = caps("nord-uveu", capsys, monkeypatch)["uveu.single_country.AE.owned"]
    assert (before["numerator_tpp"], before["denominator_tpp"]) == (6 * A100, 99 * A100)
    w = ok(["whatif", "nord-uveu", "--add", "1", "--chip", "a100-sxm4-40gb", "--site", "auh", "--json"],
           capsys, monkeypatch)
    assert w["ok"] and w["max_fit"] == 1
    # The reservation was checked as one A100 (7 x 1/7) but stored as 7 x a100-sxm4-40gb, count 7: 7 whole chips,
    # so the caps then read AE as 13 / 106 = 12.26%, over the 7% the check had just let through.
    planned = (utc_today() + timedelta(days=30)).isoformat()
    rc, _, err = veuctl(["reservations", "add", "nord-uveu", "--count", "7", "--chip", "A100-SXM4-40GB MIG 1g.5gb",
                         "--site", "auh", "--planned-for", planned], capsys, monkeypatch)
    assert rc == 2 and "--chip" in err and "MIG slice" in err and "NVIDIA A100 SXM4 40GB" in err
    assert ok(["reservations", "list", "--json"], capsys, monkeypatch) == []
    after = caps("nord-uveu", capsys, monkeypatch)["uveu.single_country.AE.owned"]
    assert after["ok"] and after["numerator_tpp"] == 6 * A100
    # The whole chip reserves as the what-if said: AE at exactly 7% (7 x 4992 / 100 x 4992), within the limit.
    ok(["reservations", "add", "nord-uveu", "--count", "1", "--chip", "NVIDIA A100 SXM4 40GB", "--site", "auh",
        "--planned-for", planned], capsys, monkeypatch)
    at = caps("nord-uveu", capsys, monkeypatch)["uveu.single_country.AE.owned"]
    assert (at["numerator_tpp"], at["denominator_tpp"], at["ok"], at["headroom"]) == (7 * A100, 100 * A100, True, 0)


# ------------------------------------------------------------- licences shipped 2025-01-01 .. 2025-01-12


@pytest.fixture()
def lumen(db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    ok(["parties", "add", "Lumen", "--hq", "SG"], capsys, monkeypatch)
    return db_url


def test_a_licence_shipped_in_early_january_2025_is_recorded_and_counts_toward_the_country_allocation(
    lumen: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # § 742.6(b)(10)(iii)(B)(1): "BIS will calculate progress toward country allocations by totaling the TPP ...
    # licensed to each destination cumulatively beginning in 2025. Items exported ... before 2025 will not count."
    # The rule took effect on 2025-01-13, but a licence shipped on 2025-01-02 was licensed in 2025: it counts.
    # The ledger refused it ("the AI Diffusion tiers are not in effect on 2025-01-02"), so the allocation
    # undercounted it.
    for day, n in (("2025-01-01", 500), ("2025-01-02", 1500), ("2025-01-13", 1000), ("2025-03-01", 2000)):
        ok(["shipments", "add", "--date", day, "--consignee", "Lumen", "--destination", "MY", "--chip", "h100-sxm",
            "--count", str(n), "--via", "licence", "--json"], capsys, monkeypatch)
    # A licence of 2024 counts toward no allocation ("before 2025 will not count"): still refused, naming the date.
    rc, _, err = veuctl(["shipments", "add", "--date", "2024-12-31", "--consignee", "Lumen", "--destination", "MY",
                         "--chip", "h100-sxm", "--count", "1", "--via", "licence"], capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --date:") and "2024-12-31" in err
    my = caps("", capsys, monkeypatch, "--as-of", "2025-06-01")["tier2.country_allocation.MY"]
    # 500 + 1500 + 1000 + 2000 = 5000 H100 licensed from 2025-01-01: 5000 x 15832 = 79,160,000 of 790,000,000.
    assert my["numerator_tpp"] == 5000 * H100 == 79_160_000
    assert my["limit"] == 790_000_000 and my["headroom"] == 790_000_000 - 79_160_000
    p = ok(["paths", "--items", "H100 SXM x 1", "--consignee", "Lumen", "--country", "MY", "--date", "2025-06-01",
            "--json"], capsys, monkeypatch)
    lic = next(x for x in p["paths"] if x["path"] == "LICENCE")
    assert lic["figures"]["used_tpp"] == 79_160_000 and lic["figures"]["after_tpp"] == 79_160_000 + H100


def test_lpp_aia_and_veu_shipments_before_the_rule_took_effect_are_still_refused_naming_the_date(
    lumen: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # License Exceptions LPP and AIA and the Data Center VEUs exist from 2025-01-13 only (90 FR 4544).
    for via in ("lpp", "aia"):
        rc, _, err = veuctl(["shipments", "add", "--date", "2025-01-12", "--consignee", "Lumen", "--destination",
                             "MY", "--chip", "h100-sxm", "--count", "1", "--via", via], capsys, monkeypatch)
        assert rc == 2 and err.startswith("error: --date:") and "2025-01-12" in err
    assert ok(["shipments", "list", "--json"], capsys, monkeypatch) == []
