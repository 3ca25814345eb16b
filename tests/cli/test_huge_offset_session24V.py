"""A page offset too large for the store is refused naming --offset (session 24, review R9).

`veuctl cases list --offset 100000000000000000000` on PostgreSQL answered "database URL (--db / VEU_DATABASE_URL):
not a usable database: bigint out of range": the wrong field, and no hint. `veuctl inventory show` already refused
an offset of 2**63 or more as one line naming --offset; cases list and the caps commands now do the same.
"""

from __future__ import annotations

import sys

import pytest

from tests.caps.conftest import seed_fleet
from tests.webhook.conftest import Result
from tests.webhook.test_cases_paging_session24S import seed_history

STORES = ["db_url", pytest.param("pg_url", marks=pytest.mark.postgres)]
HUGE = "100000000000000000000"  # 1e20, past a 64-bit integer


def veuctl(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    from agent.cli import app
    from agent.cli._common import run_app

    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(app)
    out = capsys.readouterr()
    return Result(rc, out.out, out.err)


def refused_naming_offset(r: Result) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--offset" in r.stderr and "too large" in r.stderr, r.stderr
    assert "database" not in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("offset", [HUGE, str(2**63)])
def test_cases_list_refuses_an_offset_past_64_bits_naming_offset_not_the_database(
    store: str, offset: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_history(request.getfixturevalue(store))
    refused_naming_offset(veuctl(capsys, monkeypatch, "cases", "list", "--offset", offset))
    refused_naming_offset(veuctl(capsys, monkeypatch, "cases", "list", "--offset", offset, "--json"))


@pytest.mark.parametrize("store", STORES)
def test_cases_list_still_pages_past_the_end_with_the_largest_64_bit_offset(
    store: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_history(request.getfixturevalue(store))
    r = veuctl(capsys, monkeypatch, "cases", "list", "--offset", str(2**63 - 1))
    assert r.returncode == 0, r.stderr
    assert "is past the last case (5 in all)" in r.stderr


@pytest.mark.parametrize("store", STORES)
def test_caps_explain_refuses_an_offset_past_64_bits_naming_offset_not_the_database(
    store: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(request.getfixturevalue(store))
    refused_naming_offset(veuctl(capsys, monkeypatch, "caps", "explain", "aurora", "uveu.outside_tier1.owned",
                                 "--offset", HUGE))


@pytest.mark.parametrize("store", STORES)
def test_shipments_list_refuses_an_offset_past_64_bits_naming_offset_not_the_database(
    store: str, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(request.getfixturevalue(store))
    refused_naming_offset(veuctl(capsys, monkeypatch, "shipments", "list", "--offset", HUGE))
