"""`veuctl parties show|list --as-of DATE` and GET /api/v1/parties/NAME?as_of=: the namespaces a party held on that
date (the mapping periods of migration 0026), not today's; `list` prints them as `show` does (JSON, not Python)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from agent import parties
from agent.cli import app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.core import utc_today

TODAY = utc_today()
BEFORE = TODAY - timedelta(days=30)


def veuctl(*args: str) -> str:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.stdout


def moved(db_url: str) -> None:
    """team-x was Emirates AI's since always and moved to Kappa Cloud today; fra-1/team-y is Kappa's from today."""
    with session_scope(db_url) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["team-x", "team-y"])
        parties.add_party(s, "Kappa Cloud", "AE")
        parties.add_party(s, "Kappa Cloud", None, namespaces=["team-x"], reassign=True)
        parties.add_party(s, "Kappa Cloud", None, namespaces=["team-y"], cluster="fra-1")


def test_parties_show_as_of_an_earlier_date_lists_the_namespaces_mapped_on_that_date(db_url: str) -> None:
    moved(db_url)
    then = json.loads(veuctl("parties", "show", "Emirates AI", "--as-of", BEFORE.isoformat(), "--json"))
    assert then["namespaces"] == ["team-x", "team-y"]
    kappa_then = json.loads(veuctl("parties", "show", "Kappa Cloud", "--as-of", BEFORE.isoformat(), "--json"))
    assert kappa_then["namespaces"] == []
    now = json.loads(veuctl("parties", "show", "Emirates AI", "--json"))
    assert now["namespaces"] == ["team-y"]
    kappa_now = json.loads(veuctl("parties", "show", "Kappa Cloud", "--json"))
    assert kappa_now["namespaces"] == ["team-x", "fra-1/team-y"]


def test_parties_list_as_of_an_earlier_date_lists_the_namespaces_mapped_on_that_date(db_url: str) -> None:
    moved(db_url)
    rows = json.loads(veuctl("parties", "list", "--as-of", BEFORE.isoformat(), "--json"))
    assert {r["name"]: r["namespaces"] for r in rows} == {"Emirates AI": ["team-x", "team-y"], "Kappa Cloud": []}
    rows = json.loads(veuctl("parties", "list", "--json"))
    assert {r["name"]: r["namespaces"] for r in rows} == {"Emirates AI": ["team-y"],
                                                          "Kappa Cloud": ["team-x", "fra-1/team-y"]}


@pytest.mark.parametrize("store", ["db_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def test_the_party_summary_behind_the_api_reads_the_namespaces_of_its_date(
        store: str, request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue(store))
    moved(url)
    with session_scope(url) as s:
        assert parties.party_summary(s, registry(), "Emirates AI", BEFORE)["namespaces"] == ["team-x", "team-y"]
        assert parties.party_summary(s, registry(), "Emirates AI", TODAY)["namespaces"] == ["team-y"]


def test_a_label_mapping_keeps_its_label_mark_on_an_earlier_date(db_url: str) -> None:
    with session_scope(db_url) as s:
        parties.add_party(s, "Emirates AI", "AE")
        parties.sync_label_mappings(s, "fra-1", "veu/customer", {"team-z": "Emirates AI"})
    then = json.loads(veuctl("parties", "show", "Emirates AI", "--as-of", BEFORE.isoformat(), "--json"))
    assert then["namespaces"] == ["fra-1/team-z (label)"]


def test_parties_list_prints_namespaces_as_json_as_parties_show_does(db_url: str) -> None:
    with session_scope(db_url) as s:
        parties.add_party(s, "Emirates AI", "AE", None, ["team-x", "team-y"])
    listed = veuctl("parties", "list")
    shown = veuctl("parties", "show", "Emirates AI")
    assert '["team-x", "team-y"]' in shown
    assert '["team-x", "team-y"]' in listed, listed
    assert "['team-x'" not in listed


def test_a_label_mapping_the_operator_then_registers_for_the_same_customer_reads_as_registered(db_url: str) -> None:
    """Review R10: the period (opened by the label) still said label, and parties show marked it "(label)"."""
    from agent import parties as psvc
    from agent.packs import registry
    from agent.store import session_scope
    from agent.store.tables.core import utc_today

    with session_scope(db_url) as s:
        psvc.add_party(s, "Zeta", "DE")
        psvc.sync_label_mappings(s, "fra-1", "veu-governor.io/customer", {"team-z": "Zeta"})
    with session_scope(db_url) as s:
        assert psvc.party_summary(s, registry(), "Zeta", utc_today())["namespaces"] == ["fra-1/team-z (label)"]
        psvc.add_party(s, "Zeta", None, namespaces=["team-z"], cluster="fra-1")
    with session_scope(db_url) as s:
        assert psvc.party_summary(s, registry(), "Zeta", utc_today())["namespaces"] == ["fra-1/team-z"]
