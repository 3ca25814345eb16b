"""QA session 23 (m) on License Exception LPP in the shipments ledger: § 740.29(a) authorizes "up to 26,900,000
cumulative" TPP "per-calendar year directly to a single ultimate consignee" (the ultimate parent, § 740.29(h)(1)), so a
shipment recorded under LPP that takes a consignee's year past that is not an LPP shipment: it is refused, naming
--count and how many fit, and nothing is written. Exactly at the limit is within it; a new year starts again."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.caps import Shipment
from policies.errors import PolicyError
from tests.races import after_check_at_once

H100 = 15832
LIMIT = 26_900_000


def _seed(url: str) -> None:
    with session_scope(url) as s:
        party_svc.add_party(s, "Bharat AI", "IN")
        party_svc.add_party(s, "Bharat Cloud", "IN", parent="Bharat AI")


def _ship(url: str, day: str, consignee: str, chip: str, count: int) -> None:
    with session_scope(url) as s:
        svc.add_shipment(s, registry(), day=day, consignee=consignee, destination="IN", chip_name=chip,
                         count=count, via="lpp")


def _lpp(url: str, on: date) -> svc.CapResult:
    with session_scope(url) as s:
        return next(c for c in svc.allocation_caps(s, registry(), on) if c.id == "lpp.consignee.Bharat AI")


def test_an_lpp_shipment_past_the_consignees_calendar_year_limit_is_refused_and_nothing_is_written(
    db_url: str,
) -> None:
    _seed(db_url)
    _ship(db_url, "2026-03-01", "Bharat AI", "h100", 1000)  # 15,832,000 TPP
    # Bharat Cloud's ultimate parent is Bharat AI: one ultimate consignee, one limit.
    with pytest.raises(PolicyError, match=r"^--count: .*26,900,000.*Bharat AI.*at most 699 fit"):
        _ship(db_url, "2026-04-01", "Bharat Cloud", "h100", 700)  # 15,832,000 + 11,082,400 > 26,900,000
    with session_scope(db_url) as s:
        assert len(s.exec(select(Shipment)).all()) == 1
    assert _lpp(db_url, date(2026, 12, 31)).ok
    _ship(db_url, "2026-04-01", "Bharat Cloud", "h100", 699)
    assert _lpp(db_url, date(2026, 12, 31)).ok


def test_a_backdated_lpp_shipment_counts_the_later_shipments_of_its_year(db_url: str) -> None:
    _seed(db_url)
    _ship(db_url, "2026-09-01", "Bharat AI", "h100", 1699)  # 26,898,568 TPP: 1,432 TPP left in 2026
    # Recorded later but dated earlier: the year's total would still pass the limit (September's would be over).
    with pytest.raises(PolicyError, match=r"^--count: .*at most 0 fit"):
        _ship(db_url, "2026-02-01", "Bharat AI", "h100", 1)
    # The year before is another calendar year.
    _ship(db_url, "2025-12-31", "Bharat AI", "h100", 1699)
    assert _lpp(db_url, date(2025, 12, 31)).ok and _lpp(db_url, date(2026, 12, 31)).ok


def test_an_lpp_year_exactly_at_the_limit_is_within_it(db_url: str) -> None:
    # "up to 26,900,000": 746 B200 (26,856,000 TPP) and 10 TPU v4 (44,000) are exactly the limit.
    _seed(db_url)
    _ship(db_url, "2026-01-05", "Bharat AI", "b200", 746)
    _ship(db_url, "2026-01-06", "Bharat Cloud", "tpu-v4", 10)
    cap = _lpp(db_url, date(2026, 12, 31))
    assert cap.numerator == LIMIT and cap.ok and cap.headroom == 0
    with pytest.raises(PolicyError, match="at most 0 fit"):
        _ship(db_url, "2026-01-07", "Bharat AI", "tpu-v4", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def test_two_lpp_shipments_recorded_at_once_cannot_pass_the_year_limit(
        any_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of two shipments of 1,000 H100 (15,832,000 TPP) fits alone; recorded at once, each checked a year
    without the other and both were written: 31,664,000 TPP under LPP to one ultimate consignee."""
    from policies import caps as core

    _seed(any_url)
    errors = after_check_at_once(monkeypatch, core, "lpp_caps", [
        lambda: _ship(any_url, "2026-03-01", "Bharat AI", "h100", 1000),
        lambda: _ship(any_url, "2026-03-01", "Bharat Cloud", "h100", 1000)])
    assert len(errors) == 1 and str(errors[0]).startswith("--count:"), errors
    assert _lpp(any_url, date(2026, 12, 31)).ok
