"""Session 21c: numbers typed into the dashboard's forms (over HTTP against the app, no browser).

- A 400-digit "How many" (what-if) or "Chips to reserve" was echoed in full, with thousands separators, in the
  form's error: 533 characters of "9,999,...". A long number is now its first digits and its length.
- The forms' counts took Unicode digits ("１２", "٣") because Python's ``int()`` does: a reservation of 3 chips
  was made from "٣", where the API (pydantic) refuses the same text. The dashboard now refuses them too, naming
  the field. The planner's ``reserved=`` address took them as well.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

BIG = "9" * 400
WHATIF = {"authorization": "aurora-uveu", "site": "dxb-dc1", "chip": "h100-sxm", "op": "add", "as_of": "2026-06-01"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    work = Path(tmp_path_factory.mktemp("s21c-numbers"))
    url = f"sqlite:///{work / 'demo.db'}"
    seed(url)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VEU_AUTH", "none")
        mp.setenv("VEU_SIGNING_KEY_FILE", str(work / "signing.key"))
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


def _error(text: str) -> str:
    m = re.search(r'<p class="error" role="alert" id="error">(.*?)</p>', text, re.S)
    assert m, "no error on the page"
    return html.unescape(m.group(1))


def _marked(text: str, control_id: str) -> bool:
    m = re.search(r'<input [^>]*id="' + re.escape(control_id) + r'"[^>]*>', text)
    assert m, f"no control #{control_id}"
    return 'aria-invalid="true"' in m.group(0)


def _reservations(client: TestClient) -> int:
    r = client.get("/api/v1/reservations", params={"status": ""})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_a_400_digit_whatif_count_is_clipped_in_its_error(client: TestClient) -> None:
    r = client.get("/whatif", params={**WHATIF, "n": BIG})
    assert r.status_code == 422, r.text
    msg = _error(r.text)
    assert msg.startswith("How many: 999999999999… (400 digits) is more chips than any fleet holds"), msg
    assert len(msg) < 200, msg
    assert _marked(r.text, "n")


def test_a_400_digit_reservation_count_is_clipped_in_its_error(client: TestClient) -> None:
    before = _reservations(client)
    r = client.post("/reservations", data={**WHATIF, "n": BIG})
    assert r.status_code == 422, r.text
    msg = _error(r.text)
    assert msg.startswith("Reservation refused: Chips to reserve: 999999999999… (400 digits) is more chips"), msg
    assert len(msg) < 200, msg
    assert _marked(r.text, "reserve-n")
    assert _reservations(client) == before


@pytest.mark.parametrize("typed", ["１２", "٣", "१०", "1２"])
def test_a_whatif_count_in_other_digits_is_refused_naming_the_field(client: TestClient, typed: str) -> None:
    # The API refuses the same text (pydantic: "unable to parse string as an integer").
    api = client.post("/api/v1/whatif", json={**WHATIF, "n": typed})
    assert api.status_code == 422, api.text
    r = client.get("/whatif", params={**WHATIF, "n": typed})
    assert r.status_code == 422, r.text
    msg = _error(r.text)
    assert msg.startswith("How many: ") and "0-9" in msg, msg
    assert _marked(r.text, "n")
    assert 'id="whatif-result"' not in r.text


@pytest.mark.parametrize("typed", ["٣", "３"])
def test_a_reservation_count_in_other_digits_is_refused_and_nothing_is_reserved(client: TestClient,
                                                                                typed: str) -> None:
    before = _reservations(client)
    r = client.post("/reservations", data={**WHATIF, "n": typed}, follow_redirects=False)
    assert r.status_code == 422, (r.status_code, r.headers.get("location"))  # was a 303: 3 chips reserved
    msg = _error(r.text)
    assert msg.startswith("Reservation refused: Chips to reserve: ") and "0-9" in msg, msg
    assert _marked(r.text, "reserve-n")
    assert _reservations(client) == before


def test_ascii_counts_are_still_taken(client: TestClient) -> None:
    r = client.get("/whatif", params={**WHATIF, "n": " 12 "})
    assert r.status_code == 200, _error(r.text)
    assert "add 12 ×" in html.unescape(r.text)
    r = client.get("/whatif", params={**WHATIF, "n": "-3"})
    assert r.status_code == 422 and _error(r.text).startswith("How many: must be zero or more"), r.text


def test_the_planners_reserved_address_takes_ascii_digits_only(client: TestClient) -> None:
    r = client.post("/reservations", data={**WHATIF, "n": "1"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    rid = re.search(r"reserved=(\d+)", r.headers["location"])
    assert rid is not None
    page = client.get(r.headers["location"])
    assert f"Reserved as #{rid.group(1)}:" in page.text
    arabic = "".join(chr(0x0660 + int(d)) for d in rid.group(1))  # the same id in Arabic-Indic digits
    page = client.get("/whatif", params={"reserved": arabic})
    assert page.status_code == 200 and 'id="reserved"' not in page.text, page.text


@pytest.mark.parametrize("typed", ["9" * 5000, "+" + "9" * 5000])
def test_a_count_past_pythons_digit_limit_is_too_many_chips_not_not_a_whole_number(client: TestClient,
                                                                                   typed: str) -> None:
    r = client.get("/whatif", params={**WHATIF, "n": typed})
    assert r.status_code == 422, r.text
    msg = _error(r.text)
    assert msg.startswith("How many: ") and "(5,000 digits) is more chips than any fleet holds" in msg, msg
    assert len(msg) < 200, msg
    r = client.get("/whatif", params={**WHATIF, "n": "-" + "9" * 5000})
    assert r.status_code == 422 and _error(r.text) == "How many: must be zero or more", _error(r.text)
