"""Caps to the letter of the rule (QA session 12): reservations, the what-if planner, NVEU and allocation edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlmodel import select

from agent import caps as svc
from agent import parties as party_svc
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import Holding, Party, Site, utc_today
from agent.store.tables.inventory import HoldingPeriod
from policies.caps import Authorization, nveu_caps
from policies.errors import PolicyError
from tests.caps.conftest import T0, seed_fleet

D = date(2025, 6, 1)
H100 = 15832
RESIZED = datetime(2025, 5, 1, 10, tzinfo=UTC)


def test_a_reservation_that_lapses_before_a_later_plan_still_holds_its_headroom_today(db_url: str) -> None:
    # Aurora has 43 chips of headroom in the UAE (7% single-country cap). A reservation of 40 planned in ten days
    # and expiring in twenty holds them now; it may yet be installed, and installed chips stay. A second plan
    # dated after that expiry must not take the same 40 again.
    seed_fleet(db_url)
    packs = registry()
    today = utc_today()
    with session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora", n=40, chip_name="h100", site="dxb", planned_for=today + timedelta(days=10),
                    expires_on=today + timedelta(days=20))
    later = today + timedelta(days=40)
    with session_scope(db_url) as s:
        assert svc.whatif(s, packs, "aurora", n=4, chip_name="h100", site="dxb", as_of=later)["max_fit"] == 3
        with pytest.raises(svc.CapExceeded, match=r"uveu\.single_country\.AE\.owned"):
            svc.reserve(s, packs, "aurora", n=40, chip_name="h100", site="dxb", planned_for=later)
    with session_scope(db_url) as s:
        caps = {c.id: c for c in svc.caps_for(s, packs, "aurora", today)}
        assert caps["uveu.single_country.AE.owned"].ok


def test_explanation_of_the_us_hq_50_percent_cap_leaves_us_territories_out_of_the_numerator(db_url: str) -> None:
    # § 772.1: Puerto Rico is the United States, so chips there are not "outside the United States" (Supp. 10 ¶6).
    # The explanation must list the same holdings the figure counts: Germany and the UAE, not Puerto Rico.
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_site(s, "sju", "PR")
        s.flush()
        sju = s.exec(select(Site).where(Site.name == "sju")).one()
        aurora = s.exec(select(Party).where(Party.name == "Aurora")).one()
        s.add(Holding(source="test", external_id="pr", site_id=sju.id, accelerator="h100-sxm", count=50,
                      owner_id=aurora.id, operator_id=aurora.id, first_seen=T0))
    with session_scope(db_url) as s:
        d = svc.explain(s, packs, "aurora", "uveu.outside_us.owned", D, 100, 0)
    assert d["numerator_tpp"] == 100 * H100  # 30 in the UAE and 70 in Germany; the 50 in Puerto Rico are the US
    assert sorted(h["country"] for h in d["holdings"]["items"]) == ["AE", "DE"]
    assert sum(h["tpp"] for h in d["holdings"]["items"]) == d["numerator_tpp"]
    marked = {p["country"] for p in d["explanation"]["contributors"] if p["in_numerator"]}
    assert marked == {"AE", "DE"}


def test_a_reservation_under_another_authorization_of_the_same_group_spends_the_group_headroom(
    db_url: str,
) -> None:
    # Supp. 10 ¶6 measures chips "owned by the entity and all its subsidiary and parent entities": Aurora's UVEU
    # and the UVEU of its subsidiary Aurora EU (an operator different from the owner holds its own, § 748.15
    # (a)(2)(ii)(A)) share one owned base. The group has 43 chips of headroom in the UAE; a plan of 40 reserved
    # under one authorization leaves 3 for the other, not 43 again.
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        svc.add_authorization(s, packs, "aurora-eu", "uveu", "Aurora EU", None)
    with session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora-eu", n=40, chip_name="h100", site="dxb", planned_for=D, owner="Aurora EU")
    with session_scope(db_url) as s:
        assert svc.whatif(s, packs, "aurora", n=4, chip_name="h100", site="dxb", as_of=D)["max_fit"] == 3
        with pytest.raises(svc.CapExceeded, match=r"uveu\.single_country\.AE\.owned"):
            svc.reserve(s, packs, "aurora", n=40, chip_name="h100", site="dxb", planned_for=D)
    with session_scope(db_url) as s:
        ae = {c.id: c for c in svc.caps_for(s, packs, "aurora", utc_today())}["uveu.single_country.AE.owned"]
        assert ae.numerator == 70 * H100  # 30 installed and 40 reserved, both owned by Aurora EU


def test_the_path_finder_counts_headroom_reserved_under_a_sister_authorization_of_the_group(db_url: str) -> None:
    # The same shared owned base as above, seen by `veuctl paths`: with 40 of the group's 43 UAE chips reserved
    # under Aurora EU's UVEU, exporting 40 more to the UAE under Aurora's own UVEU breaches the 7% cap.
    from agent.obligations import authorization_refs, resolve_items

    seed_fleet(db_url)
    packs = registry()
    lines = resolve_items(packs, "H100 SXM x 40", D)
    with session_scope(db_url) as s:
        (aurora,) = [a for a in authorization_refs(s, packs, lines, "AE", D, "Aurora") if a.name == "aurora"]
        assert aurora.caps_block is None
        svc.add_authorization(s, packs, "aurora-eu", "uveu", "Aurora EU", None)
    with session_scope(db_url) as s:
        svc.reserve(s, packs, "aurora-eu", n=40, chip_name="h100", site="dxb", planned_for=D, owner="Aurora EU")
    with session_scope(db_url) as s:
        (aurora,) = [a for a in authorization_refs(s, packs, lines, "AE", D, "Aurora") if a.name == "aurora"]
        assert aurora.caps_block is not None and "uveu.single_country.AE.owned" in aurora.caps_block


def test_nveu_past_the_end_of_table_1_says_the_table_sets_no_allocation_not_that_bis_reviews_it_annually() -> None:
    # § 748.15(a)(2)(iii)(B) Table 1 ends with "2027 Q1-4"; the annual review ("BIS will review allocations for
    # subsequent years on an annual basis") is § 742.6(b)(10)(iii)(B)(2), about country allocations only.
    packs = registry()
    auth = Authorization("gulf-nveu", "nveu", "Gulf AI", "AE")
    (cap,) = nveu_caps(packs, auth, [], date(2028, 1, 1))
    assert cap.limit is None and not cap.ok
    assert "annual" not in cap.note
    assert "Table 1" in cap.note and "nveu-licence-gulf-nveu" in cap.note


def test_a_reservation_refused_because_a_cap_is_already_over_says_so_rather_than_that_it_exceeds_it(
    db_url: str,
) -> None:
    # § 748.15(b)(2)(i): no UVEU data center in Macau. One Aurora chip there puts the cap over; a plan for the US
    # does not touch it, so the refusal must say the cap is over already, not that the plan "would exceed" it.
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        party_svc.add_site(s, "mfm", "MO")
        s.flush()
        mfm = s.exec(select(Site).where(Site.name == "mfm")).one()
        aurora = s.exec(select(Party).where(Party.name == "Aurora")).one()
        s.add(Holding(source="test", external_id="mo", site_id=mfm.id, accelerator="h100-sxm", count=1,
                      owner_id=aurora.id, operator_id=aurora.id, first_seen=T0))
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded) as exc:
        svc.reserve(s, packs, "aurora", n=10, chip_name="h100", site="iad", planned_for=D)
    text = str(exc.value)
    assert "uveu.excluded_locations.owned over its limit" in text and "over already" in text
    assert "would exceed" not in text and "at most 0 fit" not in text
    # An NVEU past the end of Table 1 has no allocation at all: the refusal says that, not "at most 0 fit".
    with session_scope(db_url) as s, pytest.raises(svc.CapExceeded) as exc:
        svc.reserve(s, packs, "falcon-ae", n=1, chip_name="h100", site="dxb", planned_for=date(2028, 3, 1))
    assert "no limit in effect on 2028-03-01" in str(exc.value) and "at most 0 fit" not in str(exc.value)


def test_explanation_as_of_a_past_date_lists_a_holding_under_the_chip_it_held_then(db_url: str) -> None:
    # A cloud instance resized from A100 to H100 keeps its holding id: before the resize the cap counts its
    # A100s (the holding's history), and the explanation must list the same holding, not drop it because no
    # holding holds an A100 today.
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        h = s.exec(select(Holding).where(Holding.external_id == "h1")).one()  # 30 H100 in the UAE (Aurora EU)
        for acc, start, end in (("a100-sxm4-40gb", T0, RESIZED), ("h100-sxm", RESIZED, None)):
            s.add(HoldingPeriod(holding_id=h.id, site_id=h.site_id, accelerator=acc, count=30,  # type: ignore[arg-type]
                                owner_id=h.owner_id, operator_id=h.operator_id, valid_from=start, valid_to=end))
    with session_scope(db_url) as s:
        d = svc.explain(s, packs, "aurora", "uveu.single_country.AE.owned", date(2025, 4, 30), 100, 0)
    assert d["numerator_tpp"] == 30 * 4992
    assert [(x["accelerator"], x["count"]) for x in d["holdings"]["items"]] == [("a100-sxm4-40gb", 30)]
    assert d["holdings"]["items"][0]["tpp"] == d["numerator_tpp"]


@pytest.mark.parametrize("url", ["db_url", "pg_url"])
def test_a_reservation_note_longer_than_its_column_is_refused_naming_note(url: str, request: pytest.FixtureRequest
                                                                          ) -> None:
    # reservation.note holds 500 characters: PostgreSQL refused a longer one as a store error, SQLite kept it.
    store = request.getfixturevalue(url)
    seed_fleet(store)
    packs = registry()
    with session_scope(store) as s, pytest.raises(PolicyError, match=r"--note: at most 500 characters"):
        svc.reserve(s, packs, "aurora", n=1, chip_name="h100", site="dxb", planned_for=D, note="x" * 5000)
    with session_scope(store) as s:
        assert svc.list_reservations(s, status=None) == []
