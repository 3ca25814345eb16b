"""Tiers and parties as users type them: ambiguous country names, EAR spellings, empty or padded parents."""

from __future__ import annotations

from datetime import date

import pytest

from policies.errors import UnknownCountry
from policies.jurisdictions import country, tier
from policies.packs import PackRegistry
from tests.caps.test_caps_store import veuctl  # veuctl ARGS in-process, its JSON parsed

D = date(2025, 6, 1)


@pytest.mark.parametrize("name", ["Korea", "korea", " KOREA "])
def test_korea_alone_is_refused_naming_tier1_south_korea_and_tier3_north_korea(name: str) -> None:
    # Supp. 5(a) lists the "Republic of Korea"; D:5 lists North Korea: "Korea" alone must not pick one.
    with pytest.raises(UnknownCountry, match=r"is ambiguous: South Korea \(KR\) or North Korea \(KP\)"):
        country(name)


@pytest.mark.parametrize("name", ["Congo", "The Congo"])
def test_congo_alone_is_refused_naming_the_d5_democratic_republic_and_the_tier2_republic(name: str) -> None:
    with pytest.raises(UnknownCountry, match=r"is ambiguous: .*\(CG\) .*\(CD\)"):
        country(name)


@pytest.mark.parametrize("name", ["Democratic Republic of Congo", "Congo, Democratic Republic of the",
                                  "Congo (Kinshasa)", "DR Congo", "COD"])
def test_the_democratic_republic_of_the_congo_as_written_by_the_sources_is_d5_and_tier3(
    packs: PackRegistry, name: str,
) -> None:
    # Seed 000 spells the D:5 member "Democratic Republic of Congo".
    t = tier(packs, name, D)
    assert (t.country, t.tier) == ("CD", 3) and "D:5" in t.groups


def test_the_republic_of_the_congo_is_tier2_and_named_in_full_in_its_basis(packs: PackRegistry) -> None:
    t = tier(packs, "Congo (Brazzaville)", D)
    assert (t.country, t.tier) == ("CG", 2)
    assert t.basis.startswith("Republic of the Congo is in neither Tier 1 nor Tier 3")


@pytest.mark.parametrize(("name", "code"), [("U.S.", "US"), ("U.S.A.", "US"), ("U.K.", "GB"),
                                            ("The Netherlands", "NL"), ("Hong Kong SAR", "HK"),
                                            ("Macau SAR", "MO")])
def test_dotted_abbreviations_articles_and_sar_names_resolve(name: str, code: str) -> None:
    assert country(name).code == code


@pytest.mark.parametrize("name", ["Kosovo", "XK", "XKX"])
def test_kosovo_which_iso_has_not_assigned_resolves_to_xk_in_tier2(packs: PackRegistry, name: str) -> None:
    t = tier(packs, name, D)
    assert (t.country, t.name, t.tier) == ("XK", "Kosovo", 2)


def test_a_party_headquartered_in_korea_is_refused_naming_hq_and_nothing_is_stored(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rc, _, err = veuctl(["parties", "add", "Hanbit AI", "--hq", "Korea", "--db", db_url], capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --hq: 'Korea' is ambiguous")
    rc, _, err = veuctl(["parties", "show", "Hanbit AI", "--db", db_url], capsys, monkeypatch)
    assert rc == 2 and "is not registered" in err


def _seed_pear(db_url: str) -> None:
    from agent import parties as svc
    from agent.store import session_scope

    with session_scope(db_url) as s:
        svc.add_party(s, "Pear Holdings", "CN")
        svc.add_party(s, "Pear Cloud SG", "SG", "Pear Holdings", ["pear-train"])


def test_an_empty_parent_on_an_update_is_refused_and_the_tier3_parent_stays(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `--parent "$PARENT"` with the variable unset: neither a silent "keep" nor a silent removal.
    _seed_pear(db_url)
    rc, _, err = veuctl(["parties", "add", "Pear Cloud SG", "--hq", "SG", "--parent", "", "--db", db_url],
                        capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --parent: empty")
    rc, data, _ = veuctl(["parties", "show", "Pear Cloud SG", "--json", "--db", db_url], capsys, monkeypatch)
    assert rc == 0 and data["parent"] == "Pear Holdings" and data["effective_tier"] == 3


def test_a_new_subsidiary_with_an_empty_parent_is_not_registered_as_its_own_ultimate_parent(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed_pear(db_url)
    rc, _, err = veuctl(["parties", "add", "Pear Cloud AE", "--hq", "AE", "--parent", "  ", "--db", db_url],
                        capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --parent: empty")
    rc, _, err = veuctl(["parties", "show", "Pear Cloud AE", "--db", db_url], capsys, monkeypatch)
    assert rc == 2 and "is not registered" in err


def test_a_parent_or_party_named_with_surrounding_blanks_is_the_registered_one(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Names are stored stripped; the old error told the operator to `parties add ' Pear Holdings' --hq CC`,
    # which would have re-registered (and re-headquartered) the existing parent.
    _seed_pear(db_url)
    rc, data, err = veuctl(["parties", "add", "Pear Cloud DE", "--hq", "DE", "--parent", " Pear Holdings ",
                            "--json", "--db", db_url], capsys, monkeypatch)
    assert rc == 0, err
    assert data["parent"] == "Pear Holdings" and data["effective_tier"] == 3
    rc, data, err = veuctl(["parties", "show", " Pear Cloud DE ", "--json", "--db", db_url], capsys, monkeypatch)
    assert rc == 0, err
    assert data["name"] == "Pear Cloud DE" and data["ultimate_parent"] == "Pear Holdings"


def test_an_ownership_cycle_is_refused_naming_parent_and_the_stored_parties_are_unchanged(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _seed_pear(db_url)
    rc, _, err = veuctl(["parties", "add", "Pear Holdings", "--hq", "US", "--parent", "Pear Cloud SG",
                         "--db", db_url], capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --parent: party 'Pear Holdings': ownership cycle Pear Holdings -> "
                                      "Pear Cloud SG -> Pear Holdings")
    rc, data, _ = veuctl(["parties", "show", "Pear Holdings", "--json", "--db", db_url], capsys, monkeypatch)
    assert rc == 0 and data["hq"] == "CN" and data["parent"] is None and data["effective_tier"] == 3


def test_an_update_without_hq_keeps_the_stored_headquarters_and_so_the_tier(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "Options left out keep their stored values": adding a namespace or an address needs no HQ retyped.
    _seed_pear(db_url)
    rc, data, err = veuctl(["parties", "add", "Pear Holdings", "--address", "1 Example Road", "--json",
                            "--db", db_url], capsys, monkeypatch)
    assert rc == 0, err
    assert (data["hq"], data["effective_tier"], data["address"]) == ("CN", 3, "1 Example Road")
    rc, data, err = veuctl(["parties", "add", "Pear Cloud SG", "--namespace", "pear-infer", "--json",
                            "--db", db_url], capsys, monkeypatch)
    assert rc == 0, err
    assert (data["hq"], data["parent"], data["effective_tier"]) == ("SG", "Pear Holdings", 3)
    assert set(data["namespaces"]) == {"pear-train", "pear-infer"}


def test_a_new_party_without_hq_is_refused_naming_hq(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    rc, _, err = veuctl(["parties", "add", "Nowhere Ltd", "--db", db_url], capsys, monkeypatch)
    assert rc == 2 and err.startswith("error: --hq: required to register 'Nowhere Ltd'")
