"""Supp. No. 10 checklist, ¶7 and ¶8 checks, 4E091 weight exports and dated deadlines (pure core)."""

from __future__ import annotations

from datetime import date

import pytest

from policies import obligations as ob
from policies.jurisdictions import tier
from policies.packs import PackRegistry
from policies.parties import PartyRef, effective_tier

PARTIES = {
    "Acme": PartyRef("Acme", "DE"),
    "Gulf": PartyRef("Gulf", "AE"),
    "GulfUS": PartyRef("GulfUS", "US", "Gulf"),
}


def test_supp10_has_19_paragraphs_and_14_15_18_comply_from_2026_01_15(packs: PackRegistry) -> None:
    paras = ob.paragraphs(packs, date(2025, 6, 1))
    assert [p.number for p in paras] == list(range(1, 20))
    delayed = {p.number for p in paras if p.compliance_from == date(2026, 1, 15)}
    assert delayed == {14, 15, 18}
    assert paras[6].heading == "Advanced AI Training" and "25 percent" in paras[6].requirement
    assert paras[7].heading == "Model Weight Storage" and paras[7].quoted
    assert not paras[8].provision.confirmed  # ¶9's text is not in the reference: visible as UNCONFIRMED


def test_para8_storage_rule_applies_from_2025_05_15_and_only_its_facility_condition_waits_for_2026(
    packs: PackRegistry,
) -> None:
    # ¶8 is not one of the delayed paragraphs: both packs that describe it give the rule's compliance date.
    on = date(2025, 6, 1)
    storage, para = packs.provision("supp10-model-weight-storage", on), packs.provision("supp10-p08", on)
    assert storage.compliance_from == para.compliance_from == date(2025, 5, 15)
    assert storage.in_compliance_period and not packs.provision("supp10-delayed-compliance", on).in_compliance_period


def test_checklist_for_an_nveu_marks_uveu_only_paragraphs_not_applicable(packs: PackRegistry) -> None:
    rows = ob.checklist(packs, date(2025, 9, 1), {}, "nveu")
    by = {r["number"]: r for r in rows}
    assert by[5]["status"] == by[6]["status"] == "not-applicable"
    assert by[7]["status"] == "open"
    assert "delayed compliance date 2026-01-15" in by[14]["flags"]
    later = {r["number"]: r for r in ob.checklist(packs, date(2026, 1, 15), {}, "nveu")}
    assert later[14]["flags"] == [] and later[14]["in_compliance_period"]


def test_checklist_flags_overdue_review_and_compliance_without_evidence(packs: PackRegistry) -> None:
    entries = {14: ob.EntryView("ciso", "compliant", date(2026, 3, 1)),
               15: ob.EntryView("ciso", "compliant", date(2027, 1, 1), ({"kind": "link", "uri": "https://x"},))}
    by = {r["number"]: r for r in ob.checklist(packs, date(2026, 6, 1), entries)}
    assert "review overdue since 2026-03-01" in by[14]["flags"]
    assert "marked compliant without evidence" in by[14]["flags"]
    assert by[15]["flags"] == []
    assert ob.checklist_summary(list(by.values()))["compliant"] == 2


def _run(packs: PackRegistry, customer: str, country: str, **kw: object) -> ob.TrainingRun:
    on = date(2025, 9, 1)
    return ob.TrainingRun(
        run=str(kw.pop("run", "r1")), site="dc-" + country.lower(), location=tier(packs, country, on),
        customer=effective_tier(packs, PARTIES, customer, on), model=str(kw.pop("model", "m")),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("customer", "country", "kw", "verdict"), [
    ("Gulf", "DE", {"model_status": "4E091", "operations": 2e26}, "violation"),
    ("Acme", "AE", {"model_status": "4E091", "operations": 2e26}, "violation"),
    ("GulfUS", "US", {"model_status": "below-threshold", "operations": 1e24}, "ok"),
    ("Gulf", "DE", {"model_status": "4E091", "operations": 0.2e26, "fine_tune_of": "base", "base_status": "4E091",
                    "base_operations": 1e26}, "ok"),
    ("Gulf", "DE", {"model_status": "4E091", "operations": 0.3e26, "fine_tune_of": "base", "base_status": "4E091",
                    "base_operations": 1e26}, "violation"),
    ("Gulf", "DE", {"model_status": "4E091", "operations": 0.2e26, "fine_tune_of": "base", "base_status": "4E091"},
     "unknown"),
])
def test_para7_training_for_parties_outside_tier1(
    packs: PackRegistry, customer: str, country: str, kw: dict[str, object], verdict: str,
) -> None:
    rows = ob.para7(packs, date(2025, 9, 1), [_run(packs, customer, country, **kw)])
    assert len(rows) == 1 and rows[0]["verdict"] == verdict, rows[0]["reason"]


def test_para7_fine_tuning_split_into_runs_summing_to_exactly_25_percent_is_within_the_allowance(
    packs: PackRegistry,
) -> None:
    # "no more than 25 percent": runs of 6e23, 2.02e25 and 4.2e24 are 2.5e25 operations, 25% of 1e26, though
    # their doubles sum to 2.5000000000000005e25.
    ops = 6e23 + 2.02e25 + 4.2e24
    assert ops > 0.25 * 1e26
    rows = ob.para7(packs, date(2025, 9, 1), [_run(packs, "Gulf", "DE", model_status="4E091", operations=ops,
                                                   fine_tune_of="base", base_status="4E091", base_operations=1e26)])
    assert rows[0]["verdict"] == "ok", rows[0]["reason"]
    over = ob.para7(packs, date(2025, 9, 1), [_run(packs, "Gulf", "DE", model_status="4E091", operations=2.5001e25,
                                                   fine_tune_of="base", base_status="4E091", base_operations=1e26)])
    assert over[0]["verdict"] == "violation"


def test_para7_lists_only_runs_outside_tier1(packs: PackRegistry) -> None:
    assert ob.para7(packs, date(2025, 9, 1), [_run(packs, "Acme", "DE", model_status="4E091", operations=2e26)]) == []


def _loc(packs: PackRegistry, country: str, parties: tuple[str, ...], on: date, **kw: object) -> ob.WeightLocation:
    return ob.WeightLocation(
        model="frontier", model_status=str(kw.get("status", "4E091")), site="dc", location=tier(packs, country, on),
        facility_parties=tuple(effective_tier(packs, PARTIES, p, on) for p in parties), devices=("nvme-1",),
        dedicated=bool(kw.get("dedicated", True)), security_compliant=bool(kw.get("secure", True)))


@pytest.mark.parametrize(("country", "parties", "on", "kw", "verdict", "fragment"), [
    ("DE", ("Gulf",), date(2025, 9, 1), {}, "ok", "listed in Supp. 5(a)"),
    ("AE", ("Acme",), date(2025, 9, 1), {"secure": False}, "ok", "Supp. 5(a)-headquartered"),
    ("AE", ("Acme",), date(2026, 1, 15), {"secure": False}, "violation", "¶¶14, 15 and 18"),
    ("AE", ("Gulf",), date(2025, 9, 1), {}, "violation", "no owner or operator"),
    ("CN", ("Acme",), date(2025, 9, 1), {}, "violation", "Macau or D:5"),
    ("DE", ("Acme",), date(2026, 2, 1), {"dedicated": False}, "violation", "dedicated devices"),
    ("AE", ("Gulf",), date(2025, 9, 1), {"status": "below-threshold"}, "not-controlled", "below-threshold"),
    # A model the ledger does not know is stored as if it were 4E091, as an export of it is judged.
    ("AE", ("Gulf",), date(2025, 9, 1), {"status": "unknown"}, "violation", "treated as 4E091"),
    ("DE", ("Gulf",), date(2025, 9, 1), {"status": "unknown"}, "ok", "treated as 4E091"),
])
def test_para8_model_weight_storage(
    packs: PackRegistry, country: str, parties: tuple[str, ...], on: date, kw: dict[str, object], verdict: str,
    fragment: str,
) -> None:
    row = ob.para8(packs, on, [_loc(packs, country, parties, on, **kw)])[0]
    assert row["verdict"] == verdict, row
    assert fragment in row["basis"] + " ".join(row["problems"])


def test_export_of_4e091_weights_to_a_party_without_a_path_is_flagged(packs: PackRegistry) -> None:
    on = date(2025, 9, 1)
    gulf = effective_tier(packs, PARTIES, "Gulf", on)
    acme = effective_tier(packs, PARTIES, "Acme", on)
    bad = ob.weight_export_paths(packs, on, "4E091", gulf, tier(packs, "AE", on))
    assert bad["flagged"] and "presumption of denial" in bad["reason"]
    assert ob.weight_export_paths(packs, on, "4E091", acme, tier(packs, "DE", on))["paths"] == ["AIA"]
    assert not ob.weight_export_paths(packs, on, "4E091", gulf, tier(packs, "AE", on), licence="D123")["flagged"]
    assert not ob.weight_export_paths(packs, on, "below-threshold", gulf, tier(packs, "AE", on))["flagged"]
    assert not ob.weight_export_paths(packs, on, "4E091", gulf, tier(packs, "AE", on), published=True)["flagged"]


AUTH = ob.VeuAuthorization("ACME-UVEU", "uveu", "Acme", date(2025, 3, 1))


def _by_kind(ds: list[ob.Deadline], kind: str) -> list[ob.Deadline]:
    return [d for d in ds if d.kind == kind]


def test_semiannual_veu_reports_due_jan_15_and_jul_15(packs: PackRegistry) -> None:
    ds = _by_kind(ob.deadlines(packs, date(2025, 6, 20), [AUTH]), "veu-semiannual-report")
    assert [d.due for d in ds[:3]] == [date(2025, 7, 15), date(2026, 1, 15), date(2026, 7, 15)]
    assert ds[0].status == "due" and ds[1].status == "upcoming"  # 30-day lead from operator-defaults
    assert ds[0].key == "veu-report:ACME-UVEU:2025H1" and "748.15(f)" in ds[0].citation


def test_chip_accounting_reports_due_feb_1_and_aug_1(packs: PackRegistry) -> None:
    ds = _by_kind(ob.deadlines(packs, date(2025, 8, 5), [AUTH]), "chip-accounting-report")
    assert [d.due for d in ds[:3]] == [date(2025, 8, 1), date(2026, 2, 1), date(2026, 8, 1)]
    assert ds[0].status == "overdue"
    done = ob.deadlines(packs, date(2025, 8, 5), [AUTH], filings={ds[0].key: date(2025, 8, 3)})
    first = _by_kind(done, "chip-accounting-report")[0]
    assert first.status == "done" and first.late


def test_180_day_notice_before_exports_to_a_new_uveu_data_center(packs: PackRegistry) -> None:
    loc = ob.NewLocation("ACME-UVEU", "IN", "dc-mumbai", date(2026, 6, 30))
    ds = ob.deadlines(packs, date(2025, 12, 5), [AUTH], new_locations=[loc])
    d = _by_kind(ds, "uveu-new-datacenter-notice")[0]
    assert d.due == date(2026, 1, 1) and d.status == "due"
    d60 = _by_kind(ds, "uveu-new-country-notice")[0]  # Supp. 10 ¶5, separately
    assert d60.due == date(2026, 5, 1) and d60.status == "upcoming"


def test_60_day_notice_before_transfers_between_countries_only_for_uveu(packs: PackRegistry) -> None:
    nveu = ob.VeuAuthorization("GULF-NVEU", "nveu", "Gulf", date(2025, 3, 1), country="AE")
    ts = [ob.Transfer("ACME-UVEU", "DE", "MY", date(2025, 10, 1)),
          ob.Transfer("GULF-NVEU", "AE", "SA", date(2025, 10, 1))]
    ds = _by_kind(ob.deadlines(packs, date(2025, 8, 15), [AUTH, nveu], transfers=ts), "inter-country-transfer-notice")
    assert [(d.subject, d.due, d.status) for d in ds] == [("ACME-UVEU", date(2025, 8, 2), "overdue")]


def test_30_day_report_of_theft_or_loss(packs: PackRegistry) -> None:
    inc = ob.Incident("INC-7", date(2025, 9, 10), "pallet lost in transit")
    ds = _by_kind(ob.deadlines(packs, date(2025, 9, 11), [], incidents=[inc]), "theft-loss-report")
    assert ds[0].due == date(2025, 10, 10) and ds[0].status == "due" and "¶16" in ds[0].basis


def test_events_before_the_rule_took_effect_create_no_deadline(packs: PackRegistry) -> None:
    inc = ob.Incident("OLD-1", date(2024, 12, 1))
    assert ob.deadlines(packs, date(2025, 1, 2), [], incidents=[inc]) == []


def test_a_filing_made_after_the_as_of_date_leaves_the_deadline_open_on_that_date(packs: PackRegistry) -> None:
    key = _by_kind(ob.deadlines(packs, date(2025, 8, 5), [AUTH]), "chip-accounting-report")[0].key
    filings = {key: date(2025, 9, 1)}
    before = _by_kind(ob.deadlines(packs, date(2025, 8, 5), [AUTH], filings=filings), "chip-accounting-report")[0]
    assert before.status == "overdue" and before.done_on is None
    after = _by_kind(ob.deadlines(packs, date(2025, 9, 2), [AUTH], filings=filings), "chip-accounting-report")[0]
    assert after.status == "done" and after.late


def test_no_chip_accounting_is_owed_before_the_may_15_2025_compliance_date(packs: PackRegistry) -> None:
    # The IFR took effect 2025-01-13 but Supp. 10 ¶10 binds from 2025-05-15: the first report is August 1.
    early = ob.VeuAuthorization("EARLY-UVEU", "uveu", "Acme", date(2024, 12, 1))
    ds = _by_kind(ob.deadlines(packs, date(2025, 3, 1), [early]), "chip-accounting-report")
    assert ds[0].due == date(2025, 8, 1)
    # § 748.15(f) semi-annual reports predate the IFR (Oct 2024 Data Center VEU rule) and stay due.
    assert _by_kind(ob.deadlines(packs, date(2025, 3, 1), [early]), "veu-semiannual-report")[0].due == date(2025, 1, 15)


def test_transfers_new_locations_and_incidents_before_the_compliance_date_owe_no_notice(packs: PackRegistry) -> None:
    early = ob.VeuAuthorization("EARLY-UVEU", "uveu", "Acme", date(2024, 12, 1))
    on = date(2025, 3, 1)  # after the 2025-01-13 effective date, before the 2025-05-15 compliance date
    ds = ob.deadlines(packs, on, [early], new_locations=[ob.NewLocation("EARLY-UVEU", "IN", "dc-1", on)],
                      transfers=[ob.Transfer("EARLY-UVEU", "DE", "MY", on)], incidents=[ob.Incident("INC-1", on)])
    assert [d.kind for d in ds if d.kind not in ("veu-semiannual-report", "chip-accounting-report")] == []
    # From the compliance date on, the same events owe their notices.
    on = date(2025, 5, 15)
    ds = ob.deadlines(packs, on, [early], transfers=[ob.Transfer("EARLY-UVEU", "DE", "MY", on)],
                      incidents=[ob.Incident("INC-2", on)])
    assert {d.kind for d in ds} >= {"inter-country-transfer-notice", "theft-loss-report"}
