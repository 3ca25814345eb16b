"""Stored free text refuses bidirectional formatting characters, as parties and model names already do.

docs/security.md: an API body carrying a bidi control gets a 4xx and stores nothing. The check is one
(:func:`agent.text.unprintable`), applied in the services, so the API, the CLI and the dashboard refuse alike;
the error names the field and the code point.
"""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from agent import caps as caps_svc
from agent import ledger
from agent import obligations as obl
from agent.api.app import create_app
from agent.packs import registry
from agent.store import session_scope
from agent.store.tables.caps import VeuAuthorization
from agent.store.tables.obligations import ControlEvidence
from agent.text import unprintable
from policies.compute import EstimationDefaults, declared_operations
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet

# U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069: every bidirectional formatting character.
BIDI = ["\u061c", "\u200e", "\u200f", *(chr(c) for c in range(0x202A, 0x202F)),
        *(chr(c) for c in range(0x2066, 0x206A))]


@pytest.mark.parametrize("lines", [False, True])
@pytest.mark.parametrize("bidi", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
def test_every_bidi_formatting_character_is_refused_naming_the_field_and_code_point(bidi: str, lines: bool) -> None:
    why = unprintable("--notes", f"qa{bidi}u", lines=lines)
    assert why is not None and why.startswith(f"--notes: contains U+{ord(bidi):04X} "), why


def test_ordinary_text_in_any_script_and_multi_line_notes_are_kept() -> None:
    assert unprintable("--note", "Zürich – 東京 – دبي, ¶7 ≤ 25%") is None
    assert unprintable("--notes", "line one\r\n\tline two", lines=True) is None
    assert unprintable("--owner", "a\nb") is not None


def test_notes_keep_the_zero_width_joiners_persian_words_and_emoji_need_but_names_do_not() -> None:
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "I want", with a zero-width non-joiner
    assert unprintable("--notes", persian, lines=True) is None
    assert unprintable("--notes", "\U0001F469\u200d\U0001F4BB", lines=True) is None  # one emoji, joined
    assert unprintable("name", persian) is not None and "U+200C" in str(unprintable("name", persian))
    assert unprintable("--notes", "a\u202eb", lines=True) is not None


@pytest.fixture()
def fleet(db_url: str) -> str:
    seed_fleet(db_url)
    return db_url


def test_an_authorization_named_with_a_bidi_override_is_refused_and_nothing_stored(fleet: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^name: contains U\+202E "):
        caps_svc.add_authorization(s, registry(), "qa\u202eu", "uveu", "Aurora", None)
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^--reference: contains U\+2067 "):
        caps_svc.add_authorization(s, registry(), "qa-u", "uveu", "Aurora", None, reference="BIS \u2067123")
    with session_scope(fleet) as s:
        assert {a.name for a in s.exec(select(VeuAuthorization)).all()} == {"aurora", "falcon-ae"}


def test_the_api_answers_a_bidi_authorization_name_with_a_422_naming_name(
    fleet: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VEU_AUTH", "none")
    with TestClient(create_app(fleet)) as c:
        r = c.post("/api/v1/authorizations", json={"name": "qa\u202eu", "kind": "uveu", "holder": "Aurora"})
        assert r.status_code == 422 and r.json()["detail"].startswith("name: contains U+202E"), r.text
        r = c.post("/api/v1/reservations", json={"authorization": "aurora", "count": 1, "chip": "h100",
                                                 "site": "iad", "planned_for": "2025-06-01", "note": "a\u202eb"})
        assert r.status_code == 422 and r.json()["detail"].startswith("note: contains U+202E"), r.text
        assert [a["name"] for a in c.get("/api/v1/authorizations").json()["items"]] == ["aurora", "falcon-ae"]
        assert c.get("/api/v1/reservations").json()["total"] == 0


def test_a_reservation_note_with_an_isolate_is_refused(fleet: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^--note: contains U\+2066 "):
        caps_svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="iad", planned_for=date(2025, 6, 1),
                         note="\u2066x\u2069")


def test_a_shipment_reference_with_a_bidi_mark_is_refused(fleet: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError, match=r"^--reference: contains U\+200F "):
        caps_svc.add_shipment(s, registry(), day=date(2025, 6, 1), consignee="Falcon", destination="AE",
                              chip_name="h100", count=1, via="nveu", authorization="falcon-ae",
                              reference="D\u200f123")


@pytest.mark.parametrize(("kw", "needle"), [
    ({"owner": "ops\u202eteam"}, "--owner: contains U+202E"),
    ({"notes": "ok\nthen \u202a"}, "--notes: contains U+202A"),
])
def test_a_controls_register_owner_or_notes_with_bidi_is_refused(fleet: str, kw: dict[str, str], needle: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError) as exc:
        obl.set_entry(s, "site", "iad", 1, **kw)
    assert str(exc.value).startswith(needle), exc.value


def test_controls_register_notes_keep_their_lines(fleet: str) -> None:
    with session_scope(fleet) as s:
        e = obl.set_entry(s, "site", "iad", 1, owner="Compliance", notes="first\n\tsecond")
        assert (e.owner, e.notes) == ("Compliance", "first\n\tsecond")


@pytest.mark.parametrize(("kw", "needle"), [
    ({"kind": "attestation", "statement": "we comply \u202e", "attested_by": "alice"}, "--statement: contains U+202E"),
    ({"kind": "attestation", "statement": "we comply", "attested_by": "al\u200eice"}, "--by: contains U+200E"),
    ({"kind": "link", "uri": "https://docs.example/\u202egpj.exe"}, "--uri: contains U+202E"),
])
def test_evidence_with_bidi_is_refused_and_nothing_stored(fleet: str, kw: dict[str, str], needle: str) -> None:
    with session_scope(fleet) as s, pytest.raises(PolicyError) as exc:
        obl.add_evidence(s, "site", "iad", 1, **kw)  # type: ignore[arg-type]
    assert str(exc.value).startswith(needle), exc.value
    with session_scope(fleet) as s:
        assert s.exec(select(ControlEvidence)).all() == []


@pytest.fixture()
def model(fleet: str) -> str:
    with session_scope(fleet) as s:
        ledger.add_model(s, "qa-x", "Aurora")
    return fleet


def _est(ops: float = 1e20) -> object:
    return declared_operations(EstimationDefaults.from_packs(registry(), date(2025, 6, 1)), ops)


@pytest.mark.parametrize(("kw", "needle"), [
    ({"job": "team-a/PyTorchJob/\u202etrain"}, "job: contains U+202E"),
    ({"site": "iad\u2068"}, "site: contains U+2068"),
])
def test_a_run_job_or_site_with_bidi_is_refused_and_no_run_stored(model: str, kw: dict[str, str], needle: str) -> None:
    with session_scope(model) as s, pytest.raises(PolicyError) as exc:
        ledger.add_run(s, "qa-x", _est(), **kw)  # type: ignore[arg-type]
    assert str(exc.value).startswith(needle), exc.value
    with session_scope(model) as s:
        assert ledger.model_view(s, registry(), "qa-x", date(2026, 1, 1))["runs"] == []


def test_a_run_site_is_free_text_so_training_elsewhere_can_be_recorded(model: str) -> None:
    # The lineage counts runs wherever they ran (a base trained at another cloud): the site is not a fleet site.
    with session_scope(model) as s:
        run = ledger.add_run(s, "qa-x", _est(), site="another cloud, us-east-1")
        assert run.site == "another cloud, us-east-1"


@pytest.mark.parametrize(("by", "basis", "needle"), [
    ("BIS \u202eG123", "guidance", "by: contains U+202E"),
    ("BIS G123", "see\n\u2067letter", "basis: contains U+2067"),
])
def test_a_determination_with_bidi_is_refused(model: str, by: str, basis: str, needle: str) -> None:
    with session_scope(model) as s, pytest.raises(PolicyError) as exc:
        ledger.add_determination(s, "qa-x", True, by, basis)
    assert str(exc.value).startswith(needle), exc.value
