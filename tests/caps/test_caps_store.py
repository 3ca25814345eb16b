"""Caps over the store: CLI and service, installed base as of a date, what-if, shipments, reservations
(including many planners racing for the last headroom on the real PostgreSQL server)."""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlmodel import select

from agent import caps as svc
from agent.cli import app as cli_app
from agent.cli._common import run_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from agent.store.tables.caps import Reservation
from agent.store.tables.core import Holding, Site
from agent.store.tables.inventory import HoldingPeriod
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet

D = date(2025, 6, 1)
H100 = 15832


def veuctl(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, Any, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(cli_app)
    out = capsys.readouterr()
    data = json.loads(out.out) if rc == 0 and "--json" in args else out.out
    return rc, data, out.err


def test_caps_show_json_lists_every_cap_with_limit_value_headroom_ok_and_explanation(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    rc, data, _ = veuctl(["caps", "show", "aurora", "--as-of", "2025-06-01", "--json"], capsys, monkeypatch)
    assert rc == 0
    caps = {c["id"]: c for c in data["caps"]}
    ae = caps["uveu.single_country.AE.owned"]
    assert {"id", "limit", "value", "headroom", "ok", "explanation"} <= set(ae)
    assert ae["value"] == pytest.approx(0.03) and ae["limit"] == 0.07 and ae["ok"]
    assert caps["uveu.outside_us.owned"]["value"] == pytest.approx(0.10)
    holdings = [h for p in ae["explanation"]["contributors"] if p["in_numerator"] for h in p["holdings"]]
    assert len(holdings) == 1  # the explanation reaches the holding behind the figure


def test_whatif_cli_gives_every_cap_before_and_after_the_binding_cap_and_max_fit(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    rc, data, _ = veuctl(["whatif", "aurora", "--add", "100", "--chip", "H100 SXM5 80GB", "--site", "dxb",
                          "--as-of", "2025-06-01", "--json"], capsys, monkeypatch)
    assert rc == 0
    # 30 + N <= 7% (1000 + N)  <=>  N <= 40/0.93 = 43.0...
    assert data["max_fit"] == 43 and data["binding"] == "uveu.single_country.AE.owned" and not data["ok"]
    row = next(c for c in data["caps"] if c["id"] == "uveu.single_country.AE.owned")
    assert row["before"]["ok"] and not row["after"]["ok"]
    rc, data, _ = veuctl(["whatif", "aurora", "--add", "43", "--chip", "h100", "--site", "dxb",
                          "--as-of", "2025-06-01", "--json"], capsys, monkeypatch)
    assert data["ok"]


def test_nveu_needs_exactly_one_destination_and_bad_input_exits_2_without_writing(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    rc, _, err = veuctl(["authorizations", "add", "x", "--kind", "nveu", "--holder", "Falcon", "--json"],
                        capsys, monkeypatch)
    assert rc == 2 and "--country" in err and err.count("\n") == 1
    rc, _, err = veuctl(["authorizations", "add", "x", "--kind", "uveu", "--holder", "Nobody"], capsys, monkeypatch)
    assert rc == 2 and "Nobody" in err
    # Names that would share one licence-cap provision id (nveu-licence-<name>), or have none, are refused.
    rc, _, err = veuctl(["authorizations", "add", "Falcon AE", "--kind", "nveu", "--holder", "Falcon", "--country",
                         "AE"], capsys, monkeypatch)
    assert rc == 2 and "'falcon-ae'" in err and "nveu-licence-falcon-ae" in err
    rc, _, err = veuctl(["authorizations", "add", "株式会社", "--kind", "nveu", "--holder", "Falcon", "--country",
                         "AE"], capsys, monkeypatch)
    assert rc == 2 and "letters or digits" in err
    rc, data, _ = veuctl(["authorizations", "list", "--json"], capsys, monkeypatch)
    assert [a["name"] for a in data] == ["aurora", "falcon-ae"]


def test_installed_base_as_of_a_date_follows_the_holding_history(db_url: str) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        sites = {x.name: x.id for x in s.exec(select(Site)).all()}
        h = s.exec(select(Holding).where(Holding.external_id == "h1")).one()  # 30 in the UAE
        # The collector saw it move to Frankfurt on 2025-05-01: two periods.
        s.add(HoldingPeriod(holding_id=h.id, site_id=sites["dxb"], accelerator=h.accelerator, count=30,  # type: ignore[arg-type]
                            owner_id=h.owner_id, operator_id=h.operator_id,
                            valid_from=datetime(2025, 3, 1, tzinfo=UTC), valid_to=datetime(2025, 5, 1, 10, tzinfo=UTC)))
        s.add(HoldingPeriod(holding_id=h.id, site_id=sites["fra"], accelerator=h.accelerator, count=30,  # type: ignore[arg-type]
                            owner_id=h.owner_id, operator_id=h.operator_id,
                            valid_from=datetime(2025, 5, 1, 10, tzinfo=UTC)))
    with session_scope(db_url) as s:
        before = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2025, 4, 30))}
        after = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2025, 5, 1))}
        early = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2025, 2, 27))}
    assert before["uveu.single_country.AE.owned"].numerator == 30 * H100
    assert "uveu.single_country.AE.owned" not in after and after["uveu.outside_tier1.owned"].numerator == 0
    assert early["uveu.outside_tier1.owned"].denominator == 0


def test_uveu_measured_on_reporting_dates_reads_the_installed_base_of_the_measurement_date(
    db_url: str, tmp_path: Any,
) -> None:
    from fractions import Fraction

    from agent.packs import load_registry

    (tmp_path / "measure.yaml").write_text("""
id: measure-on-reporting-dates
version: "1"
title: Measure UVEU shares on the reporting dates
source: test
provisions:
  - id: uveu-measurement-dates
    title: Reporting dates only
    citation: "15 CFR 748 Supp. 10 para 6 and 10"
    effective_from: 2025-01-13
    status: [{since: 2025-01-13, codified: true, enforced: true}]
    values: {continuous: false, reporting_dates: ["02-01", "08-01"]}
""")
    packs = load_registry([tmp_path])
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        dxb = s.exec(select(Site).where(Site.name == "dxb")).one()
        eu = s.exec(select(Holding).where(Holding.external_id == "h1")).one()
        s.add(Holding(source="test", external_id="late", site_id=dxb.id, accelerator="h100-sxm", count=40,
                      owner_id=eu.owner_id, operator_id=eu.owner_id, first_seen=datetime(2025, 9, 10, tzinfo=UTC)))
    with session_scope(db_url) as s:
        caps = {c.id: c for c in svc.caps_for(s, packs, "aurora", date(2025, 9, 15))}
    # Measured on 1 August: the 40 chips installed on 10 September are not in that day's installed base.
    assert caps["uveu.single_country.AE.owned"].value == Fraction(30, 1000)
    with session_scope(db_url) as s:  # the overview (API, dashboard, metrics) and the export agree
        ov = svc.overview(s, packs, date(2025, 9, 15))
    aurora = next(a for a in ov["authorizations"] if a["name"] == "aurora")
    assert next(c for c in aurora["caps"] if c["id"] == "uveu.single_country.AE.owned")["value"] == 0.03


def test_a_retired_holding_leaves_the_nveu_installed_base(db_url: str) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        h = s.exec(select(Holding).where(Holding.external_id == "h3")).one()
        h.retired_at = datetime(2025, 6, 1, 10, tzinfo=UTC)
        s.add(h)
    with session_scope(db_url) as s:
        assert svc.caps_for(s, packs, "falcon-ae", date(2025, 5, 31))[0].numerator == 100 * H100
        assert svc.caps_for(s, packs, "falcon-ae", date(2025, 6, 1))[0].numerator == 0


def test_shipments_ledger_feeds_country_allocation_and_lpp(db_url: str) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        svc.add_shipment(s, packs, day="2025-03-01", consignee="Lumen", destination="SG", chip_name="h100",
                         count=40_000, via="licence", reference="D123")
        row = svc.add_shipment(s, packs, day="2025-04-01", consignee="Lumen", destination="SG", chip_name="h100",
                               count=1000, via="lpp")
        assert svc.shipment_dict(s, packs, row)["lpp_notice_required"]
        with pytest.raises(PolicyError, match="LPP is not available"):
            svc.add_shipment(s, packs, day="2025-04-01", consignee="Lumen", destination="CN", chip_name="h100",
                             count=1, via="lpp")
        with pytest.raises(PolicyError, match="covers AE only"):
            svc.add_shipment(s, packs, day="2025-04-01", consignee="Falcon", destination="SG", chip_name="h100",
                             count=1, via="nveu", authorization="falcon-ae")
    with session_scope(db_url) as s:
        caps = {c.id: c for c in svc.allocation_caps(s, packs, D)}
        assert caps["tier2.country_allocation.SG"].numerator == 40_000 * H100
        assert caps["tier2.country_allocation.SG"].ok  # 633,280,000 <= 790,000,000
        assert caps["lpp.consignee.Lumen"].numerator == 1000 * H100
        assert len(s.exec(select(AuditEntry).where(AuditEntry.action == "shipment.create")).all()) == 2


def test_a_reservation_spends_headroom_and_releasing_it_gives_it_back(db_url: str) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        r = svc.reserve(s, packs, "aurora", n=40, chip_name="h100", site="dxb", planned_for=D)
    with session_scope(db_url) as s:
        assert svc.whatif(s, packs, "aurora", n=4, chip_name="h100", site="dxb", as_of=D)["max_fit"] == 3
        with pytest.raises(svc.CapExceeded, match=r"uveu\.single_country\.AE\.owned"):
            svc.reserve(s, packs, "aurora", n=4, chip_name="h100", site="dxb", planned_for=D)
    with session_scope(db_url) as s:
        svc.close_reservation(s, r.id, "released")  # type: ignore[arg-type]
    with session_scope(db_url) as s:
        assert svc.whatif(s, packs, "aurora", n=4, chip_name="h100", site="dxb", as_of=D)["max_fit"] == 43
        actions = [e.action for e in s.exec(select(AuditEntry)).all()]
        assert "reservation.create" in actions and "reservation.released" in actions


def test_a_reservation_that_expires_holds_headroom_until_its_expiry_date_and_not_on_or_after_it(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    packs = registry()
    until = date(2025, 9, 1)
    # Reserved before it expires (an expiry already passed is refused), then read from today, after it.
    with session_scope(db_url) as s, monkeypatch.context() as then:
        then.setattr(svc, "utcnow", lambda: datetime(2025, 5, 1, 12, tzinfo=UTC))
        svc.reserve(s, packs, "aurora", n=40, chip_name="h100", site="dxb", planned_for=D, expires_on=until)
    with session_scope(db_url) as s:
        def fits(on: date) -> int:
            return int(svc.whatif(s, packs, "aurora", n=4, chip_name="h100", site="dxb", as_of=on)["max_fit"])

        assert fits(D) == 3 and fits(date(2025, 8, 31)) == 3  # held through the day before it expires
        assert fits(until) == 43 and fits(date(2026, 1, 1)) == 43  # evaluated on or after: given back
        # Still "active" (nobody closed it): the listing says it has expired.
        (row,) = svc.list_reservations(s, "aurora")
        view = svc.reservation_dict(s, row)
        assert view["status"] == "active" and view["expires_on"] == "2025-09-01" and view["expired"] is True
        audit = [e for e in s.exec(select(AuditEntry)).all() if e.action == "reservation.create"]
        assert json.loads(audit[-1].payload)["expires_on"] == "2025-09-01"
    # An expiry on or before the planned installation is refused, naming the option; nothing is written.
    rc, _out, err = veuctl(["reservations", "add", "aurora", "--count", "1", "--chip", "h100", "--site", "dxb",
                            "--planned-for", "2025-06-01", "--expires", "2025-06-01", "--db", db_url],
                           capsys, monkeypatch)
    assert rc == 2 and "--expires" in err and "planned installation date" in err
    rc, _out, err = veuctl(["reservations", "add", "aurora", "--count", "1", "--chip", "h100", "--site", "dxb",
                            "--expires", "2025-02-30", "--db", db_url], capsys, monkeypatch)
    assert rc == 2 and "--expires" in err
    with session_scope(db_url) as s:
        assert len(s.exec(select(Reservation)).all()) == 1


def _race(url: str, planners: int, each: int) -> tuple[list[int], list[str]]:
    packs = registry()
    barrier = threading.Barrier(planners)
    won: list[int] = []
    lost: list[str] = []
    lock = threading.Lock()

    def planner(i: int) -> None:
        barrier.wait()
        try:
            with session_scope(url) as s:
                r = svc.reserve(s, packs, "aurora", n=each, chip_name="h100", site="dxb", planned_for=D,
                                actor=f"planner-{i}")
                rid = r.id
            with lock:
                won.append(rid)  # type: ignore[arg-type]
        except svc.CapExceeded as exc:
            with lock:
                lost.append(str(exc))

    threads = [threading.Thread(target=planner, args=(i,)) for i in range(planners)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return won, lost


def _assert_no_overcommit(url: str, planners: int, won: list[int], lost: list[str]) -> None:
    # 43 chips of UAE headroom: 5 planners of 8 fit (40), the 6th would need 48.
    assert len(won) == 5 and len(lost) == planners - 5
    packs = registry()
    with session_scope(url) as s:
        assert len(s.exec(select(Reservation).where(Reservation.status == "active")).all()) == 5
        caps = {c.id: c for c in svc.caps_for(s, packs, "aurora", D)}
        assert caps["uveu.single_country.AE.owned"].ok


@pytest.mark.postgres
def test_concurrent_reservations_racing_for_the_last_headroom_never_overcommit_on_postgres(pg_url: str) -> None:
    seed_fleet(pg_url)
    won, lost = _race(pg_url, 16, 8)
    _assert_no_overcommit(pg_url, 16, won, lost)


def test_concurrent_reservations_racing_for_the_last_headroom_never_overcommit_on_sqlite(db_url: str) -> None:
    seed_fleet(db_url)
    won, lost = _race(db_url, 8, 8)
    _assert_no_overcommit(db_url, 8, won, lost)


def test_caps_as_of_a_past_date_count_the_reservations_open_then_not_the_ones_open_now(db_url: str) -> None:
    # Created on 1 July 2025 and released on 1 September 2025: caps shown as of a day in between count it,
    # as of a day before or after do not; a what-if (headroom spent now) never does, it is released now.
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        rid = svc.reserve(s, packs, "aurora", n=40, chip_name="h100", site="dxb", planned_for=D).id
        s.flush()
        row = s.get(Reservation, rid)
        assert row is not None
        row.created_at = datetime(2025, 7, 1, 9, tzinfo=UTC)
        s.add(row)

    def ae(on: date) -> float:
        with session_scope(db_url) as s:
            caps = {c.id: c for c in svc.caps_for(s, packs, "aurora", on)}
            return float(caps["uveu.single_country.AE.owned"].numerator)

    before, during = ae(date(2025, 6, 30)), ae(date(2025, 8, 15))
    assert during - before == 40 * H100  # open on 15 August, not yet created on 30 June
    assert ae(date(2030, 1, 1)) == during  # still active: counted for a future date too
    with session_scope(db_url) as s:
        row = svc.close_reservation(s, rid, "released")  # type: ignore[arg-type]
        row.closed_at = datetime(2025, 9, 1, 12, tzinfo=UTC)
        s.add(row)
    assert ae(date(2025, 8, 15)) == during  # the past does not change when the reservation is released later
    assert ae(date(2025, 8, 31)) == during and ae(date(2025, 9, 1)) == before  # closed during 1 September
    assert ae(date(2030, 1, 1)) == before
    with session_scope(db_url) as s:
        # Planning is about headroom now: the released reservation holds nothing, whatever the date.
        assert svc.whatif(s, packs, "aurora", n=4, chip_name="h100", site="dxb", as_of=date(2025, 8, 15)
                          )["max_fit"] == 43
