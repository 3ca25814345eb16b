"""Three dashboard defects a review noted, over HTTP against the app (no browser).

- The sites page gave every site row the id of its country: two sites in one country made two elements with
  one id, and a link to ``#c-XX`` (the countries page's TPP figures) could only ever reach the first.
- Answering a red-flag case while the queue was shown at an "as of" date brought the user back at today's date.
- A reservation note holding a control character was refused as "at most 500 characters" (NUL) or stored (BEL).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from agent.store.tables.core import utc_today

WHATIF = {"authorization": "aurora-uveu", "op": "add", "n": "1", "chip": "h100-sxm", "site": "sin-dc1", "owner": "",
          "as_of": "", "expires_on": ""}
ASOF_VALUE = re.compile(r'<form class="asof".*?name="as_of" value="([^"]*)"', re.S)
# Two days back: a queue shown as of a day lists the cases open then (session 24), and the demo's two cases were
# opened 129 and 3 days before the seed; these tests answer both.
DAY = (utc_today() - timedelta(days=2)).isoformat()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('s18')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:  # behaviour, not access control (tests/security covers the roles)
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


def _ids(html: str) -> list[str]:
    return re.findall(r'\sid="([^"]+)"', html)


# ------------------------------------------------------------------------------------------- sites


def test_a_sites_page_with_two_sites_in_one_country_has_no_duplicate_ids(client: TestClient) -> None:
    sites = client.get("/api/v1/sites").json()["items"]
    per_country = Counter(s["country"] for s in sites)
    assert any(n > 1 for n in per_country.values()), "the demo has two sites in one country"
    page = client.get("/sites")
    assert page.status_code == 200
    repeated = [i for i, n in Counter(_ids(page.text)).items() if n > 1]
    assert not repeated, f"ids used more than once on /sites: {repeated}"


def test_every_country_link_to_the_sites_page_lands_on_a_site_of_that_country(client: TestClient) -> None:
    links = re.findall(r'href="/sites\?[^"#]*#(c-([A-Z]{2}))"', client.get("/countries").text)
    assert links, "the countries page links its TPP figures to the sites of each country"
    rows = {m.group(1): m.group(2) for m in re.finditer(r'<tr id="([^"]+)"(.*?)</tr>', client.get("/sites").text,
                                                        re.S)}
    for anchor, country in links:
        assert anchor in rows, f"#{anchor} is on no row of /sites"
        assert f"({country})</td>" in rows[anchor], f"#{anchor} is on a row of another country"


# ------------------------------------------------------------------------------------------- cases


def _open_case_at(client: TestClient, day: str) -> tuple[int, str]:
    page = client.get("/cases", params={"status": "open", "as_of": day}).text
    found = re.search(r'<form method="post" action="/cases/(\d+)/resolve" class="resolve.*?</form>', page, re.S)
    assert found, "the demo has an open red-flag case"
    return int(found.group(1)), found.group(0)


def test_a_case_answered_at_an_as_of_date_brings_the_queue_back_at_that_date(client: TestClient) -> None:
    case_id, form = _open_case_at(client, DAY)
    sent = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))
    assert sent.get("as_of") == DAY, "the resolve form carries the page's date"
    r = client.post(f"/cases/{case_id}/resolve", data={**sent, "export_intent": "no"}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    assert parse_qs(urlsplit(r.headers["location"]).query).get("as_of") == [DAY], r.headers["location"]
    page = client.get(r.headers["location"]).text
    assert f"Recorded the answers to case #{case_id}" in page
    assert ASOF_VALUE.search(page).group(1) == DAY  # type: ignore[union-attr]


def test_a_refused_case_answer_comes_back_at_the_date_the_queue_was_shown_at(client: TestClient) -> None:
    case_id, _ = _open_case_at(client, DAY)
    r = client.post(f"/cases/{case_id}/resolve", data={"export_intent": "", "as_of": DAY})
    assert r.status_code == 422, r.text[:300]
    assert ASOF_VALUE.search(r.text).group(1) == DAY  # type: ignore[union-attr]


def test_the_amend_forms_and_the_status_tabs_keep_the_queue_date(client: TestClient) -> None:
    if 'data-status="resolved"' not in client.get("/cases", params={"status": "resolved"}).text:
        case_id, _ = _open_case_at(client, DAY)
        client.post(f"/cases/{case_id}/resolve", data={"export_intent": "no"})
    page = client.get("/cases", params={"status": "", "as_of": DAY}).text
    amend = re.findall(r'<form method="post" action="/cases/\d+/resolve" class="amend.*?</form>', page, re.S)
    assert amend, "the demo has a resolved case"
    assert all(f'name="as_of" value="{DAY}"' in f for f in amend)
    tabs = re.findall(r'<nav class="tabs">(.*?)</nav>', page, re.S)[0]
    assert all(f"as_of={DAY}" in href for href in re.findall(r'href="([^"]+)"', tabs)), tabs


# ------------------------------------------------------------------------------------ reservation note


def _reservations(client: TestClient) -> int:
    return len(client.get("/api/v1/reservations", params={"status": ""}).json())


@pytest.mark.parametrize("bad", ["\x07", "\x00", "\x1b[31m"])
def test_a_reservation_note_with_a_control_character_is_refused_naming_the_note_and_the_character(
    client: TestClient, bad: str,
) -> None:
    before = _reservations(client)
    r = client.post("/reservations", data={**WHATIF, "note": f"for the Q3 order {bad}"}, follow_redirects=False)
    assert r.status_code == 422, r.text[:300]
    message = re.search(r'id="error">([^<]*)<', r.text).group(1)  # type: ignore[union-attr]
    assert message.startswith("Reservation refused: Note: "), message
    assert f"U+{ord(bad[0]):04X}" in message and "control character" in message, message
    assert "500 characters" not in message, message
    assert _reservations(client) == before, "nothing is reserved"


def test_a_reservation_note_too_long_is_still_refused_for_its_length(client: TestClient) -> None:
    r = client.post("/reservations", data={**WHATIF, "note": "x" * 501}, follow_redirects=False)
    assert r.status_code == 422, r.text[:300]
    assert "Note: at most 500 characters" in r.text


def test_the_reservation_form_takes_a_note_and_the_active_reservations_show_it(client: TestClient) -> None:
    page = client.post("/whatif", data=WHATIF).text  # the planner's answer, with its reservation form
    assert re.search(r'<input[^>]*name="note"[^>]*id="reserve-note"', page), "the form has a note field"
    r = client.post("/reservations", data={**WHATIF, "note": "Q3 order <PO-7>"}, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    listing = client.get(r.headers["location"]).text
    assert "Q3 order &lt;PO-7&gt;" in listing  # shown, escaped
