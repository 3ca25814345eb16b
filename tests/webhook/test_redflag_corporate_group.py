"""Red flag 28's customer-wide sum over a corporate group: a run split across a group's subsidiaries is held.

The red flag follows an entity "headquartered, or whose ultimate parent is headquartered" outside Tier 1. A
group that splits one training run across the namespaces of its subsidiaries (each a customer of its own,
each under the threshold) escapes a per-customer sum. With ``admission-settings.customer_aggregate_scope``
``corporate-group`` (the default) the sum takes in every party under the customer's ultimate parent that is
itself outside Tier 1; ``customer`` keeps it to the customer's own jobs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

import agent.directory
from agent import cases, parties
from agent.cases import Outcome
from agent.packs import registry
from agent.store import session_scope
from policies import redflag
from policies.errors import PolicyError

from .conftest import M, job, review, seed

HALF = {M + "expected-hours": "8000"}  # 256 pods × 8 H100 × 8000 h = 5.8e25: under 1e26 alone, over it twice

GROUP = [
    # A Tier 2 group: the parent and both subsidiaries are outside Tier 1.
    ("Gulf Holdings", "AE", None, "tenant-gulf"),
    ("Gulf Labs", "AE", "Gulf Holdings", "tenant-gulf-labs"),
    ("Riyadh Labs", "SA", "Gulf Holdings", "tenant-gulf-sa"),
    # A Tier 1 parent with one subsidiary in Tier 1 and two outside it.
    ("Boston Group", "US", None, "tenant-boston"),
    ("Boston UK", "GB", "Boston Group", "tenant-boston-uk"),
    ("Boston Dubai", "AE", "Boston Group", "tenant-boston-ae"),
    ("Boston Mumbai", "IN", "Boston Group", "tenant-boston-in"),
]


@pytest.fixture(params=["sqlite", "postgresql"])
def group_store(request: pytest.FixtureRequest) -> Iterator[str]:
    url: str = request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url")
    agent.directory.clear()
    seed(url)
    with session_scope(url) as s:
        for name, hq, parent, ns in GROUP:
            parties.add_party(s, name, hq, parent, [ns])
    yield url
    agent.directory.clear()


@pytest.fixture()
def decide(group_store: str) -> Callable[..., Outcome]:
    def run(body: dict[str, Any]) -> Outcome:
        with session_scope(group_store) as s:
            return cases.evaluate_review(s, registry(), body)
    return run


def half(name: str, ns: str, model: str) -> dict[str, Any]:
    return review(job(name, ns, pods=256, annotations={**HALF, M + "model": model}))


def test_a_run_split_across_two_subsidiaries_of_a_tier2_group_is_held_for_inquiry(
    decide: Callable[..., Outcome], group_store: str,
) -> None:
    assert decide(half("part-1", "tenant-gulf-labs", "gulf-a")).code == redflag.ALLOW
    held = decide(half("part-2", "tenant-gulf-sa", "gulf-b"))
    assert held.code == redflag.HOLD_FOR_INQUIRY and held.case_id is not None, held.message
    assert "corporate group" in held.message
    with session_scope(group_store) as s:
        case = cases.case_view(cases.get_case(s, held.case_id))
    # The inquiry is asked of the customer whose job is held, under its own customer-aggregate case.
    assert case["customer"] == "Riyadh Labs"
    assert case["model"] == redflag.aggregate_key("Riyadh Labs")
    explanation = " ".join(held.decision.explanation) if held.decision else ""
    assert "Gulf Labs" in explanation and "customer_aggregate_scope corporate-group" in explanation


def test_the_parents_own_jobs_count_with_its_subsidiaries(decide: Callable[..., Outcome]) -> None:
    assert decide(half("p", "tenant-gulf", "gulf-parent")).code == redflag.ALLOW
    assert decide(half("s", "tenant-gulf-labs", "gulf-sub")).code == redflag.HOLD_FOR_INQUIRY


def test_with_customer_scope_each_subsidiary_is_summed_on_its_own(
    group_store: str, overlay_mode: Callable[..., None],
) -> None:
    overlay_mode("enforce", customer_aggregate_scope="customer")
    with session_scope(group_store) as s:
        first = cases.evaluate_review(s, registry(), half("part-1", "tenant-gulf-labs", "gulf-a"))
    with session_scope(group_store) as s:
        second = cases.evaluate_review(s, registry(), half("part-2", "tenant-gulf-sa", "gulf-b"))
    assert first.code == second.code == redflag.ALLOW, second.message


def test_two_tier2_subsidiaries_of_a_tier1_parent_are_summed_together(decide: Callable[..., Outcome]) -> None:
    assert decide(half("d", "tenant-boston-ae", "boston-d")).code == redflag.ALLOW
    held = decide(half("m", "tenant-boston-in", "boston-m"))
    assert held.code == redflag.HOLD_FOR_INQUIRY, held.message


def test_a_tier1_members_training_does_not_count_against_its_tier2_sibling(decide: Callable[..., Outcome]) -> None:
    # Boston UK (Tier 1 HQ, Tier 1 parent) is admitted freely; its training is not the red flag's concern.
    assert decide(half("uk-1", "tenant-boston-uk", "boston-uk-1")).code == redflag.ALLOW
    assert decide(half("uk-2", "tenant-boston-uk", "boston-uk-2")).code == redflag.ALLOW
    # Counted, the two would put Boston Dubai's job over the threshold.
    dubai = decide(half("d", "tenant-boston-ae", "boston-d"))
    assert dubai.code == redflag.ALLOW, dubai.message


def test_group_members_are_the_parties_under_the_ultimate_parent_outside_tier1(group_store: str) -> None:
    today = date.today()
    with session_scope(group_store) as s:
        def group_of(ns: str) -> tuple[str, ...]:
            party, _tier = agent.directory.customer_for(s, registry(), ns, "", today)
            assert party is not None
            return agent.directory.corporate_group(s, registry(), party, today).members

        assert group_of("tenant-gulf-sa") == ("Gulf Holdings", "Gulf Labs", "Riyadh Labs")
        assert group_of("tenant-boston-ae") == ("Boston Dubai", "Boston Mumbai")
        # The seeded Dublin Sub (Tier 1 HQ) has a Tier 2 ultimate parent: outside Tier 1, so in the group.
        assert group_of("tenant-ae") == ("Dublin Sub", "Emirates AI")


def test_group_members_read_without_the_directory_snapshot_match_the_snapshot(
    group_store: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = date.today()
    with session_scope(group_store) as s:
        party, _tier = agent.directory.customer_for(s, registry(), "tenant-boston-in", "", today)
        assert party is not None
        snap = agent.directory.corporate_group(s, registry(), party, today).members
    monkeypatch.setattr(agent.directory, "TTL", 0.0)  # no cache: the recursive statement
    with session_scope(group_store) as s:
        assert agent.directory.corporate_group(s, registry(), party, today).members == snap == (
            "Boston Dubai", "Boston Mumbai")


def test_siblings_in_one_batch_are_decided_one_after_the_other(group_store: str) -> None:
    with session_scope(group_store) as s:
        out = cases.evaluate_reviews(s, registry(), [half("b1", "tenant-gulf-labs", "gulf-a"),
                                                     half("b2", "tenant-gulf-sa", "gulf-b")])
    assert [o.code for o in out] == [redflag.ALLOW, redflag.HOLD_FOR_INQUIRY]


def test_siblings_decided_at_once_on_two_connections_are_serialised(pg_url: str) -> None:
    agent.directory.clear()
    seed(pg_url)
    with session_scope(pg_url) as s:
        for name, hq, parent, ns in GROUP:
            parties.add_party(s, name, hq, parent, [ns])
    start = threading.Barrier(2)
    codes: list[str] = []

    def submit(ns: str, model: str) -> None:
        start.wait()
        with session_scope(pg_url) as s:
            codes.append(cases.evaluate_review(s, registry(), half(model, ns, model)).code)

    threads = [threading.Thread(target=submit, args=a) for a in
               (("tenant-gulf-labs", "gulf-a"), ("tenant-gulf-sa", "gulf-b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    agent.directory.clear()
    assert sorted(codes) == sorted([redflag.ALLOW, redflag.HOLD_FOR_INQUIRY])


def test_an_unknown_aggregate_scope_is_refused_naming_the_setting(overlay_mode: Callable[..., None]) -> None:
    overlay_mode("enforce", customer_aggregate_scope="group")
    with pytest.raises(PolicyError, match="customer_aggregate_scope: 'group' is not one of customer, corporate-group"):
        redflag.AdmissionSettings.from_packs(registry(), date.today())


def test_an_operator_pack_that_leaves_the_scope_out_sums_the_corporate_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pack written before the setting existed: its admission-settings replace the defaults whole.
    values = dict(registry().provision("admission-settings", date.today()).values)
    del values["customer_aggregate_scope"]
    pack = {"id": "site-overrides", "version": "old", "title": "an older operator pack", "source": "test",
            "provisions": [{"id": "admission-settings", "title": "Admission webhook behaviour",
                            "citation": "operator override", "effective_from": "2020-01-01",
                            "status": [{"since": "2020-01-01", "codified": False, "enforced": True}],
                            "values": values}]}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(pack))
    monkeypatch.setenv("VEU_POLICY_DIRS", str(tmp_path))
    packs = registry()
    assert "customer_aggregate_scope" not in packs.provision("admission-settings", date.today()).values
    assert redflag.AdmissionSettings.from_packs(packs, date.today()).customer_aggregate_scope == "corporate-group"


def test_parties_show_names_the_parties_summed_with_a_tier2_customer(group_store: str, veuctl: Any) -> None:
    import json

    out = veuctl("parties", "show", "Riyadh Labs", "--json", "--db", group_store)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["summed_with"] == ["Gulf Holdings", "Gulf Labs"]
    # Tier 1 is admitted without the customer-wide sum: nobody is summed with it.
    uk = veuctl("parties", "show", "Boston UK", "--json", "--db", group_store)
    assert json.loads(uk.stdout)["summed_with"] == []


def test_the_api_shows_the_parties_summed_with_a_customer(group_store: str) -> None:
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    client = TestClient(create_app(group_store))
    r = client.get("/api/v1/parties/Boston Mumbai")
    assert r.status_code == 200, r.text
    assert r.json()["summed_with"] == ["Boston Dubai"]


def test_a_sibling_with_an_hq_no_jurisdiction_knows_is_counted_not_an_error(
    decide: Callable[..., Outcome], group_store: str,
) -> None:
    from sqlalchemy import text

    # Only SQL written around the API and CLI stores such an HQ; the group's other reviews still decide.
    with session_scope(group_store) as s:
        s.connection().execute(text("UPDATE party SET hq = 'ZZ' WHERE name = 'Gulf Labs'"))
    agent.directory.clear()
    today = date.today()
    with session_scope(group_store) as s:
        party, _tier = agent.directory.customer_for(s, registry(), "tenant-gulf-sa", "", today)
        assert party is not None
        assert "Gulf Labs" in agent.directory.corporate_group(s, registry(), party, today).members
    assert decide(half("part-1", "tenant-gulf-sa", "gulf-b")).code == redflag.ALLOW


MOVED = date(2026, 3, 1)  # the day of the ownership changes below (before today, after the packs' start)
BEFORE_MOVE = date(2026, 2, 1)
BEFORE_MOVE_NOON = datetime(2026, 2, 1, 12, tzinfo=UTC)


def _group_on(url: str, ns: str, day: date) -> tuple[str, ...]:
    with session_scope(url) as s:
        party, _tier = agent.directory.customer_for(s, registry(), ns, "", day)
        assert party is not None
        return agent.directory.corporate_group(s, registry(), party, day).members


@pytest.mark.parametrize("snapshot", [True, False], ids=["snapshot", "statement"])
def test_a_past_date_sums_the_group_as_it_was_owned_on_that_date(
    group_store: str, monkeypatch: pytest.MonkeyPatch, snapshot: bool,
) -> None:
    # Riyadh Labs was sold out of the Gulf group, and Boston Mumbai bought into it, on MOVED.
    with session_scope(group_store) as s:
        parties.add_party(s, "Riyadh Labs", None, no_parent=True, effective=MOVED)
        parties.add_party(s, "Boston Mumbai", None, "Gulf Holdings", effective=MOVED)
    monkeypatch.setattr(agent.directory, "TTL", 60.0 if snapshot else 0.0)
    agent.directory.clear()
    gulf_then = ("Gulf Holdings", "Gulf Labs", "Riyadh Labs")
    gulf_now = ("Boston Mumbai", "Gulf Holdings", "Gulf Labs")
    assert _group_on(group_store, "tenant-gulf-labs", BEFORE_MOVE) == gulf_then
    assert _group_on(group_store, "tenant-gulf-labs", MOVED) == gulf_now
    assert _group_on(group_store, "tenant-gulf-labs", date.today()) == gulf_now
    assert _group_on(group_store, "tenant-boston-in", BEFORE_MOVE) == ("Boston Dubai", "Boston Mumbai")
    assert _group_on(group_store, "tenant-boston-in", date.today()) == gulf_now
    # A party that has left is a group of its own; asked before it left, the earlier date again.
    assert _group_on(group_store, "tenant-gulf-sa", date.today()) == ("Riyadh Labs",)
    assert _group_on(group_store, "tenant-gulf-sa", BEFORE_MOVE) == gulf_then


def test_a_review_dated_before_a_subsidiary_was_sold_sums_it_with_its_group_of_that_date(
    decide: Callable[..., Outcome], group_store: str,
) -> None:
    with session_scope(group_store) as s:
        parties.add_party(s, "Riyadh Labs", None, no_parent=True, effective=MOVED)
    agent.directory.clear()
    with session_scope(group_store) as s:
        # Decided that day: a review as of a past day counts the jobs decided by its end, not those decided since.
        first = cases.evaluate_review(s, registry(), half("part-1", "tenant-gulf-labs", "gulf-a"), BEFORE_MOVE,
                                      now=BEFORE_MOVE_NOON)
    assert first.code == redflag.ALLOW, first.message
    with session_scope(group_store) as s:
        then = cases.evaluate_review(s, registry(), half("part-2", "tenant-gulf-sa", "gulf-b"), BEFORE_MOVE)
    assert then.code == redflag.HOLD_FOR_INQUIRY, then.message
    # Today Riyadh Labs stands alone: its own job is summed with no one else's.
    assert decide(half("part-3", "tenant-gulf-sa", "gulf-c")).code == redflag.ALLOW
