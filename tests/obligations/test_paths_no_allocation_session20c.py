"""QA session 20c: the path finder's cap breach reason never prints Python's None for a cap without a limit.

`veuctl paths --items 'H100 SXM x 8' --consignee Falcon --country AE --date 2028-01-01` (Falcon holds the NVEU
falcon-ae in AE) said "would breach cap nveu.installed_base.AE (NVEU installed base in AE; limit None)": after
Table 1 to § 748.15(a)(2)(iii)(B) ends (2027 Q1-4) no NVEU allocation is in effect, and the message must say so.
"""

from __future__ import annotations

from datetime import date

import pytest

from agent.obligations import authorization_refs, resolve_items
from agent.packs import registry
from agent.store import session_scope
from tests.caps.conftest import seed_fleet
from tests.cli.test_cli_error_naming import veuctl


def _block(url: str, items: str, on: date) -> str | None:
    packs = registry()
    lines = resolve_items(packs, items, on)
    with session_scope(url) as s:
        (falcon,) = [a for a in authorization_refs(s, packs, lines, "AE", on, "Falcon") if a.name == "falcon-ae"]
    return falcon.caps_block


def test_nveu_after_table_1_says_no_allocation_is_in_effect_and_cites_the_table(db_url: str) -> None:
    seed_fleet(db_url)
    block = _block(db_url, "H100 SXM x 8", date(2028, 1, 1))
    assert block is not None and "nveu.installed_base.AE" in block
    assert "None" not in block
    assert "no NVEU allocation is in effect on 2028-01-01" in block
    assert "748.15(a)(2)(iii)(B)" in block
    # Table 1's last row and the day it ended: why there is none on this date.
    assert "2027Q1-Q4" in block and "2027-12-31" in block


def test_a_breach_within_table_1_names_the_allocation_as_tpp_not_a_bare_number(db_url: str) -> None:
    seed_fleet(db_url)
    # 2027's allocation is 5,064,000,000 TPP; 400,000 H100s are far over it.
    block = _block(db_url, "H100 SXM x 400000", date(2027, 6, 1))
    assert block is not None and "nveu.installed_base.AE" in block
    assert "limit 5,064,000,000 TPP" in block and "None" not in block


def test_veuctl_paths_after_table_1_prints_the_reason(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    seed_fleet(db_url)
    rc, out, err = veuctl(monkeypatch, capsys, "paths", "--items", "H100 SXM x 8", "--consignee", "Falcon",
                          "--country", "AE", "--date", "2028-01-01", "--json")
    assert rc == 0, err
    assert "limit None" not in out and "no NVEU allocation is in effect on 2028-01-01" in out
