"""A what-if or reservation under an authorization is for chips one of its caps counts.

Supp. 10 ¶6 measures a UVEU on chips "owned by the entity and all its subsidiary and parent entities"; an
NVEU's installed base is the chips its holder owns or operates in its country. Chips owned and operated
outside those count toward no cap of the authorization, so a "fit" for them was a vacuous yes (and a
reservation for them held nothing): both are refused naming the owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient

from agent import caps as svc
from agent.api.app import create_app
from agent.packs import registry
from agent.store import session_scope
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet

D = date(2025, 6, 1)


@pytest.fixture()
def fleet(db_url: str) -> str:
    seed_fleet(db_url)  # Aurora (US) with Aurora EU (DE) its subsidiary; Falcon (AE) an NVEU holder; Lumen (SG)
    return db_url


def test_a_uveu_whatif_for_chips_owned_outside_the_holders_group_is_refused_naming_owner(fleet: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^--owner: ") as exc:
        svc.whatif(s, registry(), "aurora", n=1, chip_name="h100", site="iad", as_of=D, owner="Lumen")
    assert "Lumen" in str(exc.value) and "aurora" in str(exc.value)


def test_a_uveu_reservation_for_chips_owned_outside_the_group_is_refused_and_nothing_stored(fleet: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^--owner: "):
        svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="iad", planned_for=D, owner="Lumen")
    with session_scope(fleet) as s:
        assert svc.list_reservations(s, status=None) == []


def test_a_subsidiarys_chips_count_under_the_parents_uveu(fleet: str) -> None:
    with session_scope(fleet) as s:
        res = svc.whatif(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", as_of=D, owner="Aurora EU")
        assert res["ok"] and not res["max_fit_unbounded"]  # the UAE share binds: the chips count
        assert svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", planned_for=D,
                           owner="Aurora EU").id


def test_an_nveu_counts_chips_its_holder_operates_but_not_chips_it_neither_owns_nor_operates(fleet: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^--owner: "):
        svc.reserve(s, registry(), "falcon-ae", n=1, chip_name="h100", site="dxb", planned_for=D, owner="Lumen")
    with session_scope(fleet) as s:
        res = svc.whatif(s, registry(), "falcon-ae", n=1, chip_name="h100", site="dxb", as_of=D, owner="Lumen",
                         operator="Falcon")
        assert res["change"]["operator"] == "Falcon" and not res["max_fit_unbounded"]


def test_the_api_answers_a_reservation_for_another_groups_chips_with_a_422_naming_owner(
    fleet: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VEU_AUTH", "none")
    with TestClient(create_app(fleet)) as c:
        body = {"authorization": "aurora", "count": 1, "chip": "h100", "site": "iad", "owner": "Lumen",
                "planned_for": D.isoformat()}
        r = c.post("/api/v1/reservations", json=body)
        assert r.status_code == 422 and r.json()["detail"].startswith("owner: "), r.text
        r = c.post("/api/v1/whatif", json={"authorization": "aurora", "n": 1, "chip": "h100", "site": "iad",
                                           "owner": "Lumen", "as_of": D.isoformat()})
        assert r.status_code == 422 and r.json()["detail"].startswith("owner: "), r.text
        assert c.get("/api/v1/reservations").json()["total"] == 0


@pytest.fixture()
def aurora_plans(fleet: str) -> Iterator[str]:
    # Aurora EU's plans in the UAE, one now and one for a later date: Falcon's NVEU caps count none of them.
    with session_scope(fleet) as s:
        svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", planned_for=D, owner="Aurora EU")
        svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", planned_for=date(2025, 12, 1),
                    owner="Aurora EU")
    yield fleet


def test_an_nveu_whatif_is_checked_on_no_date_of_another_groups_plan(aurora_plans: str) -> None:
    with session_scope(aurora_plans) as s:
        res = svc.whatif(s, registry(), "falcon-ae", n=1, chip_name="h100", site="dxb", as_of=D)
    # Aurora's later plan is neither Falcon's nor counted by its caps: no later date to fit beside.
    assert res["later"] == []
    # Every open plan is placed in the fleet (a group's UVEUs share one owned base), and the result says which
    # of them this authorization's caps count.
    assert res["reservations_counted"] == 1 and res["reservations_in_caps"] == 0


def test_a_uveu_whatif_says_how_many_placed_plans_its_caps_count(aurora_plans: str) -> None:
    with session_scope(aurora_plans) as s:
        res = svc.whatif(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", as_of=D)
    assert res["reservations_counted"] == 2 and res["reservations_in_caps"] == 2
