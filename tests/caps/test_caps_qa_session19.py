"""QA session 19 on caps and planning: the path finder agrees with the planner on an NVEU's quarterly allocation,
a date before the rules names what an NVEU's caps need, an expired reservation is refused, the holder check at
registration gives the rule's own reason, a blank --by on a case answer is refused, and moving an authorization
holder's headquarters into D:5 is recorded with a warning naming each authorization it no longer qualifies for."""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select

from agent import caps as svc
from agent import cases
from agent import obligations as obl
from agent import parties as party_svc
from agent.audit import current_actor
from agent.cli import app as cli_app
from agent.cli._common import run_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.caps import Reservation
from agent.store.tables.cases import RedFlagCase
from agent.store.tables.core import utc_today
from policies.caps import holder_ineligible
from policies.errors import NotInEffect, PolicyError
from tests.caps.conftest import seed_fleet

TODAY = date(2026, 11, 2)  # in 2026 Q4 of Table 1
LATER = date(2027, 2, 1)  # in the 2027 allocation, larger than 2026 Q4's


def _veuctl(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            ) -> tuple[int, Any, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(cli_app)
    out = capsys.readouterr()
    data = json.loads(out.out) if rc == 0 and "--json" in args else out.out
    return rc, data, out.err


def _pin_today(monkeypatch: pytest.MonkeyPatch, day: date) -> None:
    monkeypatch.setattr(svc, "utcnow", lambda: datetime(day.year, day.month, day.day, 12, tzinfo=UTC))


def _nveu_path(url: str, items: str) -> dict[str, Any]:
    with session_scope(url) as s:
        rep = obl.paths(s, registry(), items, "Falcon", "AE", TODAY)
    return next(p for p in rep["paths"] if p["path"] == "NVEU")


# ------------------------------------------------------------------ 1. paths agrees with whatif on an NVEU


def test_paths_counts_an_nveu_plan_for_a_later_quarter_against_that_quarter_as_whatif_does(
    db_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Table 1 caps an NVEU's installed base quarter by quarter: a plan reserved for 2027, over 2026 Q4's allocation
    # but within 2027's, is not installed today. The path finder counted it against today's allocation and said
    # the NVEU was closed to one more chip, where the planner (and `caps show`) had room.
    _pin_today(monkeypatch, TODAY)
    seed_fleet(db_url)  # Falcon holds NVEU falcon-ae with 100 H100 in the UAE
    packs = registry()
    with session_scope(db_url) as s:
        cap = next(c for c in svc.caps_for(s, packs, "falcon-ae", TODAY) if c.id == "nveu.installed_base.AE")
        later = next(c for c in svc.caps_for(s, packs, "falcon-ae", LATER) if c.id == "nveu.installed_base.AE")
        tpp = svc.chip(packs, "h100-sxm", TODAY).tpp
        assert cap.limit is not None and later.limit is not None
        n = math.ceil((cap.limit - cap.numerator) / tpp) + 10
        assert cap.numerator + n * tpp <= later.limit
        svc.reserve(s, packs, "falcon-ae", n=n, chip_name="h100-sxm", site="dxb", planned_for=LATER)
    with session_scope(db_url) as s:
        plan = svc.whatif(s, packs, "falcon-ae", n=1, chip_name="h100-sxm", site="dxb", as_of=TODAY)
    assert plan["ok"] and plan["max_fit"] >= 1
    fits = _nveu_path(db_url, "H100 SXM x 1")
    assert not any("would breach cap" in r for r in fits["reasons"]), fits["reasons"]
    assert fits["open"], fits["reasons"]
    # And one chip more than the planner's most that fits is refused by both (the 2027 plan's date binds).
    most = int(plan["max_fit"])
    assert _nveu_path(db_url, f"H100 SXM x {most}")["open"]
    over = _nveu_path(db_url, f"H100 SXM x {most + 1}")
    assert not over["open"] and any("nveu.installed_base.AE" in r for r in over["reasons"]), over["reasons"]
    with session_scope(db_url) as s:
        assert not svc.whatif(s, packs, "falcon-ae", n=most + 1, chip_name="h100-sxm", site="dxb", as_of=TODAY)["ok"]


# ------------------------------------------------------------------ 2. before the rules: what an NVEU needs


def test_nveu_caps_before_the_rules_took_effect_say_data_center_veu_caps_are_not_in_effect_naming_the_date_option(
    db_url: str,
) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        with pytest.raises(NotInEffect) as shown:
            svc.caps_for(s, packs, "falcon-ae", date(2025, 1, 1))
        with pytest.raises(NotInEffect) as planned:
            svc.reserve(s, packs, "falcon-ae", n=5, chip_name="h100", site="dxb", planned_for=date(2025, 1, 1))
        with pytest.raises(NotInEffect) as asked:
            svc.whatif(s, packs, "falcon-ae", n=5, chip_name="h100", site="dxb", as_of=date(2025, 1, 1))
    for exc, option in ((shown, "--as-of"), (planned, "--planned-for"), (asked, "--as-of")):
        text = str(exc.value)
        assert text.startswith(f"{option}: Data Center VEU caps are not in effect on 2025-01-01"), text
        assert "2025-01-13" in text and "NVEU" in text and "choose a later date" in text
        assert not text.startswith(f"{option}: uveu-geographic-allocation: not in effect"), text
    with session_scope(db_url) as s:
        assert s.exec(select(Reservation)).all() == []


# ------------------------------------------------------------------ 3. an expiry already passed


def test_a_reservation_whose_expiry_has_already_passed_is_refused_naming_expires(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    today = utc_today()
    args = ["reservations", "add", "falcon-ae", "--count", "5", "--chip", "h100", "--site", "dxb",
            "--planned-for", (today - timedelta(days=30)).isoformat()]
    for expires in (today - timedelta(days=5), today):  # an expiry today holds no headroom today either
        rc, _out, err = _veuctl([*args, "--expires", expires.isoformat()], capsys, monkeypatch)
        assert rc == 2 and err.startswith(f"error: --expires: {expires.isoformat()} is not after today"), err
    with session_scope(db_url) as s:
        assert s.exec(select(Reservation)).all() == []
    rc, data, _err = _veuctl([*args, "--expires", (today + timedelta(days=1)).isoformat(), "--json"],
                             capsys, monkeypatch)
    assert rc == 0 and data["expired"] is False and data["status"] == "active"


# ------------------------------------------------------------------ 4. the holder check is the rule's own


def test_an_authorization_refused_for_its_holder_gives_the_reason_caps_show_would_give(db_url: str) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_party(s, "Dragon", "CN")
        party_svc.add_party(s, "Dragon SG", "SG", parent="Dragon")
    today = utc_today()
    with session_scope(db_url) as s:
        refs = party_svc.party_refs(s)
        for holder, kind, cc in (("Dragon SG", "nveu", "SG"), ("Dragon", "uveu", None), ("Lumen", "uveu", None)):
            why = holder_ineligible(packs, refs, holder, kind, today)
            assert why is not None
            with pytest.raises(PolicyError) as exc:
                svc.add_authorization(s, packs, f"x-{kind}-{holder}", kind, holder, cc)
            assert str(exc.value).startswith(f"--holder: {why}"), (str(exc.value), why)
        # A UVEU refused for headquarters outside Supp. 5(a) still points at the NVEU it may hold instead.
        with pytest.raises(PolicyError, match=r"use --kind nveu$"):
            svc.add_authorization(s, packs, "l-u", "uveu", "Lumen", None)


# ------------------------------------------------------------------ 6. a blank --by on a case answer


def test_a_case_answer_given_a_blank_by_is_refused_and_one_without_by_records_the_acting_user(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        s.add(RedFlagCase(customer_name="Lumen", model_key="m"))
        s.add(RedFlagCase(customer_name="Lumen", model_key="n"))
    with session_scope(db_url) as s:
        for blank in ("", "   "):
            with pytest.raises(PolicyError, match=r"^--by: "):
                cases.resolve_case(s, packs, 1, export_intent=False, by=blank)
        row = cases.resolve_case(s, packs, 1, export_intent=False, by=None)
        assert row.resolved_by == current_actor()
        amended = cases.resolve_case(s, packs, 1, export_intent=False, by=None, amend=True)
        assert amended.resolved_by == current_actor()
        with pytest.raises(PolicyError, match=r"^--by: "):
            cases.resolve_case(s, packs, 1, export_intent=False, by="", amend=True)


def test_veuctl_cases_resolve_with_a_blank_by_is_refused_naming_by(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        s.add(RedFlagCase(customer_name="Lumen", model_key="m"))
    rc, _out, err = _veuctl(["cases", "resolve", "1", "--export-intent", "no", "--by", ""], capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --by: "), err


# ------------------------------------------------------------------ 7. a holder moving into D:5


def test_moving_an_authorization_holders_headquarters_into_d5_is_recorded_with_a_warning_naming_the_authorization(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)  # Falcon (AE) holds NVEU falcon-ae
    rc, data, err = _veuctl(["parties", "add", "Falcon", "--address", "Hub71", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["warnings"] == [] and "warning" not in err
    rc, data, err = _veuctl(["parties", "add", "Falcon", "--hq", "CN", "--json"], capsys, monkeypatch)
    assert rc == 0 and data["hq"] == "CN"  # recorded: the registry holds the truth
    (warning,) = data["warnings"]
    assert "'falcon-ae'" in warning and "NVEU" in warning and "Macau or Country Group D:5" in warning
    assert err.startswith("warning: ") and "falcon-ae" in err and err.count("\n") == 1, err
    rc, _out, err = _veuctl(["parties", "add", "Falcon", "--hq", "CN"], capsys, monkeypatch)  # table output too
    assert rc == 0 and err.startswith("warning: ") and "falcon-ae" in err


def test_moving_the_ultimate_parent_of_an_authorization_holder_into_d5_warns_about_the_holders_authorization(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        party_svc.add_party(s, "Falcon Group", "AE")
        party_svc.add_party(s, "Falcon", None, parent="Falcon Group")
    rc, data, err = _veuctl(["parties", "add", "Falcon Group", "--hq", "CN", "--json"], capsys, monkeypatch)
    assert rc == 0
    (warning,) = data["warnings"]
    assert "'falcon-ae'" in warning and "Falcon Group" in warning and "falcon-ae" in err
    with session_scope(db_url) as s:
        assert party_svc.get_party(s, "Falcon Group").hq == "CN"
        # The parties not in the holder's chain are not warned about.
        assert svc.ineligible_authorizations(s, registry(), "Lumen", utc_today()) == []


def test_the_api_refuses_a_blank_by_and_records_the_caller_when_by_is_left_out(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    seed_fleet(db_url)
    with session_scope(db_url) as s:
        s.add(RedFlagCase(customer_name="Lumen", model_key="m"))
        s.add(RedFlagCase(customer_name="Lumen", model_key="n"))
    with TestClient(create_app(db_url)) as c:
        r = c.post("/api/v1/cases/1/resolve", json={"export_intent": "no", "by": " "})
        assert r.status_code == 422 and r.json()["detail"].startswith("by: "), r.text
        r = c.post("/api/v1/cases/2/resolve", json={"export_intent": "no"})
        assert r.status_code == 200 and r.json()["resolved_by"], r.text


def test_a_party_update_through_the_api_that_makes_a_holder_ineligible_says_so(db_url: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    seed_fleet(db_url)
    with TestClient(create_app(db_url)) as c:
        r = c.patch("/api/v1/parties/Falcon", json={"hq": "CN"})
        assert r.status_code == 200, r.text
        assert [w for w in r.json()["warnings"] if "falcon-ae" in w and "nveu.holder_eligibility" in w], r.json()
        r = c.patch("/api/v1/parties/Lumen", json={"hq": "JP"})
        assert r.status_code == 200 and r.json()["warnings"] == [], r.text


def test_veuctl_releasing_a_reservation_id_past_the_stores_integer_names_the_reservation(
    pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As the API answers it: PostgreSQL's ids are 32-bit, and 2147483648 was its "integer out of range".
    rc, _out, err = _veuctl(["reservations", "release", "2147483648", "--db", pg_url], capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: reservation: #2147483648 does not exist (too large"), err
