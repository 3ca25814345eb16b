"""A refused register counts its bad rows as rows: a row with two bad fields is one bad row with two problems (the
count said "2 bad row(s)" for it, and an operator looked for a second row that was fine). Every problem is still
listed, and nothing is imported."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.collectors.csv_import import RegisterError, parse_register
from agent.parties import add_site
from agent.store import session_scope

HEADER = "site,accelerator,count,owner,operator\n"


@pytest.fixture()
def dc(store: str) -> str:
    with session_scope(store) as s:
        add_site(s, "Dublin DC1", "IE")
    return store


def _refused(dc: str, tmp_path: Path, body: str) -> RegisterError:
    path = tmp_path / "assets.csv"
    path.write_text(HEADER + body, encoding="utf-8")
    with session_scope(dc) as s, pytest.raises(RegisterError) as caught:
        parse_register(path, s)
    return caught.value


def test_a_row_with_two_bad_fields_is_one_bad_row_with_two_problems(dc: str, tmp_path: Path) -> None:
    err = _refused(dc, tmp_path, "Dublin DC1,H100 SXM,4,Acme Cloud,Acme Ops\nNowhere,H100 SXM,-3,Acme Cloud,Acme Ops\n")
    assert str(err).startswith("1 bad row(s) (2 problems), nothing imported: row 3, field site: 'Nowhere'"), err
    assert "row 3, field count:" in str(err)
    assert len(err.problems) == 2


def test_two_bad_rows_with_three_problems_are_counted_as_two_rows(dc: str, tmp_path: Path) -> None:
    err = _refused(dc, tmp_path, "Nowhere,H100 SXM,-3,Acme Cloud,Acme Ops\nDublin DC1,nochip,4,Acme Cloud,Acme Ops\n"
                                 "Dublin DC1,H100 SXM,4,Acme Cloud,Acme Ops\n")
    assert str(err).startswith("2 bad row(s) (3 problems), nothing imported: row 2, field site:"), err


def test_one_problem_per_row_says_only_the_rows(dc: str, tmp_path: Path) -> None:
    err = _refused(dc, tmp_path, "Nowhere,H100 SXM,4,Acme Cloud,Acme Ops\nDublin DC1,nochip,4,Acme Cloud,Acme Ops\n")
    assert str(err).startswith("2 bad row(s), nothing imported: row 2, field site:"), err
