"""QA pass on export paths, the Due Diligence foundry presumption and BIS deadlines: each test holds a fixed defect."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import date, timedelta

import pytest
from sqlmodel import select

from agent import obligations as svc
from agent.parties import add_party
from agent.store import session_scope
from agent.store.tables.core import utcnow
from agent.store.tables.obligations import ObligationEvent
from policies import obligations as ob
from policies.duediligence import LogicIC, check
from policies.errors import NotInEffect, PolicyError
from policies.packs import PackRegistry

# A 5 nm IC the fabricator itself packages in Taiwan, with a count under every threshold.
FAB = LogicIC(node_nm=5, non_planar=True, transistors=1e9, has_hbm=True, packaging="fabricator",
              packaging_country="TW", count_attested_by="fabricator")


# ------------------------------------------------------------------ Due Diligence IFR, Note 1 to 3A090.a


def test_20nm_ic_of_unknown_architecture_is_still_presumed_3a090a(packs: PackRegistry) -> None:
    # The trigger is "at or below a 16/14 nanometer node OR using a non-planar transistor architecture":
    # above 16 nm the presumption is off only if the transistors are known to be planar.
    r = check(packs, LogicIC(node_nm=20), date(2026, 6, 1))
    assert r.applies and r.presumed_3a090a
    assert "architecture not given" in r.reason and "planar transistors;" not in r.reason


def test_planar_ic_of_unknown_node_is_still_presumed_3a090a(packs: PackRegistry) -> None:
    r = check(packs, LogicIC(non_planar=False), date(2026, 6, 1))
    assert r.applies and r.presumed_3a090a and "node not given" in r.reason


def test_20nm_planar_ic_is_not_an_applicable_advanced_logic_ic(packs: PackRegistry) -> None:
    r = check(packs, LogicIC(node_nm=20, non_planar=False), date(2026, 6, 1))
    assert not r.applies and "planar transistors" in r.reason


def test_fabricator_packaging_path_needs_the_fabricators_own_count_attestation(packs: PackRegistry) -> None:
    # Path (b): "packaged by the front-end fabricator ... and the front-end fabricator attests" the count.
    r = check(packs, replace(FAB, count_attested_by="osat"), date(2026, 6, 1))
    assert r.presumed_3a090a and r.overcome_by is None
    b = next(p for p in r.paths if p.path == "b-fabricator-packaging")
    assert "front-end fabricator's attestation" in b.why
    assert check(packs, FAB, date(2026, 6, 1)).overcome_by == "b-fabricator-packaging"


def test_approved_osat_path_needs_the_osats_own_count_attestation(packs: PackRegistry) -> None:
    # Path (c): "packaged by an approved OSAT ... and the OSAT company makes the same attestation".
    ic = replace(FAB, packaging="approved-osat", osat="ACME Packaging", packaging_country=None)
    r = check(packs, replace(ic, count_attested_by="fabricator"), date(2026, 6, 1))
    assert r.presumed_3a090a and "OSAT's attestation" in str(r.paths)
    assert check(packs, replace(ic, count_attested_by="osat"), date(2026, 6, 1)).overcome_by == "c-approved-osat"


# ------------------------------------------------------------------------------------------- deadlines


def test_nveu_new_data_center_owes_no_uveu_180_day_notice(packs: PackRegistry) -> None:
    # § 748.15(a)(2)(ii)(A): "A UVEU will need to file a notification with BIS when building a datacenter in a new
    # location 180 days before any exports"; Supp. 10 ¶5 is "[Only for VEUs accredited via a UVEU]".
    auths = [ob.VeuAuthorization("gulf-nveu", "nveu", "Gulf", date(2025, 7, 1), country="AE"),
             ob.VeuAuthorization("acme-uveu", "uveu", "Acme", date(2025, 7, 1))]
    locs = [ob.NewLocation("gulf-nveu", "AE", "abu2", date(2026, 9, 1)),
            ob.NewLocation("acme-uveu", "MY", "kul1", date(2026, 9, 1))]
    keys = {d.key for d in ob.deadlines(packs, date(2026, 3, 1), auths, locs)}
    assert not any("gulf-nveu" in k for k in keys if k.startswith("uveu-"))
    assert {"uveu-new-location:acme-uveu:MY:kul1", "uveu-new-country:acme-uveu:MY"} <= keys


def _seed(url: str) -> None:
    with session_scope(url) as s:
        add_party(s, "Acme", "DE")
        svc.add_authorization(s, _packs(), "acme-uveu", date(2025, 6, 1), "uveu", "Acme", locations=["DE"])


def _packs() -> PackRegistry:
    from agent.packs import registry

    return registry()


def test_incident_discovered_in_the_future_is_refused_naming_on(db_url: str) -> None:
    _seed(db_url)
    later = utcnow().date() + timedelta(days=30)
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"--on: .* after today"):
        svc.add_event(s, "incident", "inc-typo", later, description="2 GPUs missing")
    with session_scope(db_url) as s:
        assert s.exec(select(ObligationEvent)).all() == []
        # A planned transfer is dated ahead, as ¶5's 60-day advance notice requires.
        svc.add_event(s, "transfer", "tr1", later, "acme-uveu", from_country="DE", to_country="FR")


# ----------------------------------------------------------------------------------------------- paths


def test_paths_with_a_count_too_large_for_a_number_names_items(db_url: str) -> None:
    with session_scope(db_url) as s:
        add_party(s, "Acme", "DE")
    for count in ("9" * 400, "9" * 5000):
        with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"^--items: "):
            svc.paths(s, _packs(), f"H100 SXM x {count}", "Acme", "DE", date(2026, 6, 1))


def test_paths_before_the_ai_diffusion_rule_took_effect_names_date(db_url: str) -> None:
    _seed(db_url)
    with session_scope(db_url) as s, pytest.raises(NotInEffect, match=r"^--date: .*not in effect on 2025-01-01"):
        svc.paths(s, _packs(), "H100 SXM x 8", "Acme", "DE", date(2025, 1, 1))


# ------------------------------------------------------------------------------------------- CLI tables


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    from agent.cli import app
    from agent.cli._common import console, run_app

    monkeypatch.setenv("VEU_DATABASE_URL", url)
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    monkeypatch.setattr(console, "width", 2000)  # one line per row, so a row can be read whole
    capsys.readouterr()
    assert run_app(app) == 0
    return capsys.readouterr().out


def test_paths_table_gives_each_reason_whole_with_the_ultimate_parents_country(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # § 742.6(b)(10)(iii)(A)(1) turns on where the ultimate parent is headquartered: the table cut the reason
    # at 160 characters, just before "headquartered in China".
    with session_scope(db_url) as s:
        add_party(s, "Pear Holdings", "CN")
        add_party(s, "Pear Cloud SG", "SG", parent="Pear Holdings")
        add_party(s, "Gulf AI", "AE")
    out = _cli(monkeypatch, capsys, db_url, "paths", "--items", "H100 SXM x 100", "--consignee", "Pear Cloud SG",
               "--country", "SG", "--date", "2026-06-01")
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 2}
    for path in ("AIA", "ACM", "LPP"):
        assert "Pear Holdings is headquartered in China (Tier 3)" in rows[path], path
    out = _cli(monkeypatch, capsys, db_url, "paths", "--items", "H100 SXM x 100", "--consignee", "Gulf AI",
               "--country", "AE", "--date", "2026-06-01")
    assert "BIS counts licences, the ledger counts shipments" in out


def test_deadlines_table_marks_a_report_filed_after_its_due_date_as_late(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # § 748.15(f)(1)(iii)(A): the H1 report is due July 15; filed on August 1 it is done, but late.
    _seed(db_url)
    with session_scope(db_url) as s:
        svc.file_deadline(s, _packs(), "veu-report:acme-uveu:2025H1", date(2025, 8, 1), as_of=date(2025, 9, 1))
    out = _cli(monkeypatch, capsys, db_url, "deadlines", "list", "--as-of", "2025-09-01")
    row = next(line for line in out.splitlines() if "veu-report:acme-uveu:2025H1" in line)
    assert "done (filed 2025-08-01, late)" in row


def test_no_semiannual_report_is_due_before_the_reporting_provision_took_effect(packs: PackRegistry) -> None:
    # § 748.15(f)(1)(iii) as the AI Diffusion IFR left it (veu-reporting, effective 2025-01-13): a grant date of
    # 2022 (a typo, or the date of an older authorization) must not conjure UVEU reports due in 2022-2024.
    auths = [ob.VeuAuthorization("old-uveu", "uveu", "Acme", date(2022, 3, 1))]
    reports = [d for d in ob.deadlines(packs, date(2025, 9, 1), auths) if d.kind == "veu-semiannual-report"]
    first = packs.provision("veu-reporting", date(2025, 9, 1)).effective_from
    assert reports and all(d.due >= first for d in reports)
    assert [d.key for d in reports][:2] == ["veu-report:old-uveu:2024H2", "veu-report:old-uveu:2025H1"]


def test_4e091_weights_to_a_tier1_headquartered_recipient_in_a_tier2_country_have_the_aia_path(
    packs: PackRegistry,
) -> None:
    # Seed 000: AIA covers 4E091 "to entities headquartered in, or whose ultimate parent company is headquartered
    # in, Tier 1 destinations that are located outside of Tier 3 destinations"; the export was flagged as needing a
    # licence because Singapore is not in Supp. 5(a).
    from policies.jurisdictions import tier
    from policies.parties import PartyRef, effective_tier

    on = date(2025, 9, 1)
    parties = {"Acme": PartyRef("Acme", "DE"), "Gulf": PartyRef("Gulf", "AE")}
    acme, gulf = effective_tier(packs, parties, "Acme", on), effective_tier(packs, parties, "Gulf", on)
    sg = ob.weight_export_paths(packs, on, "4E091", acme, tier(packs, "SG", on))
    assert sg["paths"] == ["AIA"] and not sg["flagged"] and "¶¶14, 15 and 18" in sg["reason"]
    cn = ob.weight_export_paths(packs, on, "4E091", acme, tier(packs, "CN", on))
    assert cn["flagged"] and cn["paths"] == []
    assert ob.weight_export_paths(packs, on, "4E091", gulf, tier(packs, "SG", on))["flagged"]


def test_uveu_data_center_in_d5_is_refused_as_an_application_location_or_a_new_location(db_url: str) -> None:
    # § 748.15(b)(2)(i): "UVEU data centers may be located anywhere, except in Macau or destinations specified in
    # Country Group D:5": CN was recorded as an application location and raised a 180-day notice to file.
    _seed(db_url)
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"^--location: CN is a Tier 3 destination"):
        svc.add_authorization(s, _packs(), "acme-uveu", date(2025, 6, 1), locations=["DE", "CN"])
    with session_scope(db_url) as s, pytest.raises(PolicyError, match=r"^--to: MO is a Tier 3 destination"):
        svc.add_event(s, "new-location", "nl-mo", date(2026, 9, 1), "acme-uveu", site="mfm1", to_country="Macau")
    with session_scope(db_url) as s:
        assert s.exec(select(ObligationEvent)).all() == []
        # Cambodia left D:5 on 2026-02-03: a data center there is a Tier 2 location from then on.
        svc.add_event(s, "new-location", "nl-kh", date(2026, 9, 1), "acme-uveu", site="pnh1", to_country="KH")
