"""A reservation's note is text a reviewer reads: a control character is refused naming the note and the character,
whichever door the reservation comes in by (the service, hence the API, the CLI and the dashboard)."""

from __future__ import annotations

import pytest

from agent import caps as svc
from agent.packs import registry
from agent.store import session_scope
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet
from tests.caps.test_caps_qa_session12 import D


@pytest.mark.parametrize("url", ["db_url", "pg_url"])
@pytest.mark.parametrize("note", ["ring \x07", "nul \x00", "\x1b[31mred"])
def test_a_reservation_note_with_a_control_character_is_refused_naming_the_note_and_character(
    url: str, note: str, request: pytest.FixtureRequest,
) -> None:
    store = request.getfixturevalue(url)
    seed_fleet(store)
    with session_scope(store) as s, pytest.raises(PolicyError, match=r"^--note: contains U\+00(07|00|1B) "):
        svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", planned_for=D, note=note)
    with session_scope(store) as s:
        assert svc.list_reservations(s, status=None) == []


def test_a_reservation_note_may_span_lines_and_hold_tabs(db_url: str) -> None:
    seed_fleet(db_url)
    with session_scope(db_url) as s:
        row = svc.reserve(s, registry(), "aurora", n=1, chip_name="h100", site="dxb", planned_for=D,
                          note="line one\r\n\tline two")
        assert row.note == "line one\r\n\tline two"
