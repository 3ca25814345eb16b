"""Session 21c: a count echoed in an error message is clipped, with the field still named.

``veuctl whatif aurora --add <400 digits>`` (and the dashboard's "How many" / "Chips to reserve", whose messages
come from :mod:`agent.caps`) echoed the whole number with thousands separators: 533 characters of "9,999,..."
in one line, the field's name lost at its start on a narrow page. ``veuctl reservations release <400 digits>``
did the same with the reservation id. A long number is now its first digits and its length.
"""

from __future__ import annotations

from datetime import date

import pytest

from agent import caps as svc
from agent.packs import registry
from agent.store import session_scope
from policies.errors import PolicyError
from tests.caps.conftest import seed_fleet
from tests.caps.test_caps_bad_input import WHATIF, refused, written

BIG = 10**400 - 1  # 400 nines


def test_shown_count_clips_a_long_number_to_its_first_digits_and_length() -> None:
    assert svc.shown_count(20_000_000) == "20,000,000"  # an ordinary count: as before, with separators
    assert svc.shown_count(-5) == "-5"
    assert svc.shown_count(BIG) == "999999999999… (400 digits)"
    assert svc.shown_count(-BIG) == "-999999999999… (400 digits)"
    # Past Python's 4300-digit str() limit: still a message, not a ValueError.
    assert svc.shown_count(10**5000) == "a number of more than 4,300 digits"


def test_whatif_and_reserve_clip_a_400_digit_count(db_url: str) -> None:
    seed_fleet(db_url)
    packs = registry()
    with session_scope(db_url) as s:
        with pytest.raises(PolicyError) as exc:
            svc.whatif(s, packs, "aurora", op="add", n=BIG, chip_name="h100", site="dxb", as_of=date(2025, 6, 1))
        msg = str(exc.value)
        assert msg == (f"--add: 999999999999… (400 digits) is more chips than any fleet holds; "
                       f"give at most {svc.MAX_CHIPS:,}"), msg
        with pytest.raises(PolicyError) as exc:
            svc.reserve(s, packs, "aurora", n=BIG, chip_name="h100", site="dxb", planned_for=date(2025, 6, 1))
        assert str(exc.value).startswith("--count: 999999999999… (400 digits) is more chips"), str(exc.value)
        with pytest.raises(PolicyError) as exc:
            svc.whatif(s, packs, "aurora", op="retire", n=10**5000, chip_name="h100", site="dxb",
                       as_of=date(2025, 6, 1))
        assert str(exc.value).startswith("--retire: a number of more than 4,300 digits is more chips"), str(exc.value)
        # An ordinary count past the limit is written in full, as before.
        with pytest.raises(PolicyError) as exc:
            svc.whatif(s, packs, "aurora", op="add", n=20_000_000, chip_name="h100", site="dxb",
                       as_of=date(2025, 6, 1))
        assert str(exc.value).startswith("--add: 20,000,000 is more chips"), str(exc.value)


def test_releasing_a_400_digit_reservation_id_clips_it(db_url: str) -> None:
    seed_fleet(db_url)
    with session_scope(db_url) as s, pytest.raises(svc.NotFound) as exc:
        svc.close_reservation(s, BIG)
    msg = str(exc.value)
    assert msg.startswith("reservation: #999999999999… (400 digits) does not exist (too large"), msg
    assert len(msg) < 200, msg


def test_veuctl_whatif_with_a_400_digit_count_names_the_option_in_a_short_line(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    before = written(db_url)
    err = refused([*WHATIF, "--add", str(BIG), "--site", "dxb"], "--add", capsys, monkeypatch)
    assert "999999999999… (400 digits) is more chips than any fleet holds" in err and len(err) < 200, err
    assert written(db_url) == before


def test_veuctl_reservations_release_with_a_400_digit_id_names_the_reservation_in_a_short_line(
    db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed_fleet(db_url)
    err = refused(["reservations", "release", str(BIG)], "reservation", capsys, monkeypatch)
    assert "#999999999999… (400 digits) does not exist" in err and len(err) < 200, err
