"""`veuctl cases list` at scale: --limit/--offset pages, the count, and --as-of (session 24).

The command listed the newest 500 cases and no more (no way to the next page, no count), and always as of now:
on 2026-11-01 it listed a case opened on 2026-12-04.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import pytest

from tests.webhook.conftest import Result
from tests.webhook.test_cases_paging_session24S import seed_history


@pytest.fixture()
def veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`veuctl ARGS` in-process, as tests/webhook's fixture runs it."""
    from agent.cli import app
    from agent.cli._common import run_app

    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["veuctl", *args])
        rc = run_app(app)
        out = capsys.readouterr()
        return Result(rc, out.out, out.err)
    return run


@pytest.fixture()
def history(db_url: str) -> str:
    seed_history(db_url)
    return db_url


def _ids(r: Result) -> list[int]:
    assert r.returncode == 0, r.stderr
    return [c["id"] for c in json.loads(r.stdout)]


def test_cases_list_pages_with_limit_and_offset(history: str, veuctl: Callable[..., Result]) -> None:
    assert _ids(veuctl("cases", "list", "--json")) == [5, 4, 3, 2, 1]
    assert _ids(veuctl("cases", "list", "--limit", "2", "--offset", "1", "--json")) == [4, 3]
    assert _ids(veuctl("cases", "list", "--customer", "Lumen", "--limit", "1", "--offset", "1", "--json")) == [2]


def test_cases_list_says_how_many_match_and_how_to_page_on(history: str, veuctl: Callable[..., Result]) -> None:
    r = veuctl("cases", "list", "--limit", "2")
    assert r.returncode == 0, r.stderr
    assert "cases 1-2 of 5" in r.stdout
    assert "--offset 2 for the next" in r.stderr
    past = veuctl("cases", "list", "--offset", "9")
    assert past.returncode == 0 and "--offset 9 is past the last case (5 in all)" in past.stderr


def test_cases_list_as_of_a_date_leaves_out_later_cases_and_reads_the_status_then(
    history: str, veuctl: Callable[..., Result],
) -> None:
    r = veuctl("cases", "list", "--as-of", "2026-11-01", "--json")
    rows = {c["id"]: c for c in json.loads(r.stdout)}
    assert sorted(rows) == [1, 2, 3, 5]  # #4 was opened on 2026-12-04
    assert rows[2]["status"] == "open" and rows[2]["status_now"] == "resolved"
    assert _ids(veuctl("cases", "list", "--as-of", "2026-11-01", "--status", "expired", "--json")) == [1]


@pytest.mark.parametrize(("args", "says"), [
    (["--limit", "0"], "--limit: 0 is not 1-5000"),
    (["--limit", "5001"], "--limit: 5001 is not 1-5000"),
    (["--offset", "-1"], "--offset: -1 is below 0"),
    (["--as-of", "yesterday"], "--as-of"),
])
def test_a_bad_page_option_is_refused_naming_it(history: str, veuctl: Callable[..., Result], args: list[str],
                                                says: str) -> None:
    r = veuctl("cases", "list", *args)
    assert r.returncode == 2 and says in r.stderr and r.stderr.count("\n") == 1, r.stderr
