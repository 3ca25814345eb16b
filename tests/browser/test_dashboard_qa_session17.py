"""The dashboard's "as of" date as an operator moves through it, over HTTP against the app (no browser).

A form the dashboard refused (a reservation, a case's answers, a filing, a register entry, an export) comes back as
a page whose header still offers the "as of" date picker: choosing a date there must open the page the form was on
at that date, not send a GET to the form's POST address (a bare JSON "Method Not Allowed"). A reservation keeps
the date it was planned for: the planner comes back at that date, not today's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

WHATIF = {"authorization": "aurora-uveu", "op": "add", "n": "8", "chip": "h100-sxm", "site": "sin-dc1", "owner": ""}
ASOF_FORM = re.compile(r'<form class="asof" method="get" action="([^"]*)"')
ASOF_VALUE = re.compile(r'<form class="asof".*?name="as_of" value="([^"]*)"', re.S)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('qa17')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:  # behaviour, not access control (tests/security covers the roles)
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False) as c:
            yield c


def _open_case(client: TestClient) -> int:
    found = re.search(r'action="/cases/(\d+)/resolve" class="resolve', client.get("/cases?status=open").text)
    assert found, "the demo has an open red-flag case"
    return int(found.group(1))


def _deadline_key(client: TestClient) -> str:
    found = re.search(r'<input type="hidden" name="key" value="([^"]+)"', client.get("/deadlines").text)
    assert found, "the demo has an open deadline"
    return found.group(1)


def _refused_then_as_of(client: TestClient, r, page: str) -> None:  # type: ignore[no-untyped-def]
    """``r`` is a refused form's page; its header's date picker opens ``page`` at another date."""
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    action = ASOF_FORM.search(r.text)
    assert action, "the refused form's page has the header's as-of date picker"
    assert action.group(1) == page, (action.group(1), page)
    again = client.get(action.group(1), params={"as_of": "2026-06-01"})
    assert again.status_code == 200 and again.headers["content-type"].startswith("text/html"), again.text[:300]
    assert ASOF_VALUE.search(again.text).group(1) == "2026-06-01"  # type: ignore[union-attr]


def test_after_a_refused_reservation_the_as_of_picker_opens_the_planner(client: TestClient) -> None:
    r = client.post("/reservations", data={**WHATIF, "n": "abc", "as_of": "", "expires_on": ""})
    _refused_then_as_of(client, r, "/whatif")


def test_after_releasing_a_reservation_that_is_gone_the_as_of_picker_opens_the_planner(client: TestClient) -> None:
    r = client.post("/reservations/99999/release")
    _refused_then_as_of(client, r, "/whatif")


def test_after_a_refused_case_answer_the_as_of_picker_opens_the_case_queue(client: TestClient) -> None:
    r = client.post(f"/cases/{_open_case(client)}/resolve", data={"export_intent": ""})
    _refused_then_as_of(client, r, "/cases")


def test_after_a_refused_filing_the_as_of_picker_opens_the_deadlines(client: TestClient) -> None:
    r = client.post("/deadlines/filings", data={"key": _deadline_key(client), "as_of": "", "filed_on": "not a date"})
    _refused_then_as_of(client, r, "/deadlines")


def test_after_a_refused_register_entry_the_as_of_picker_opens_that_register(client: TestClient) -> None:
    r = client.post("/controls/site/sin-dc1/3", data={"as_of": "", "owner": "J. Rivera", "status": "compliant",
                                                      "review_date": "someday"})
    _refused_then_as_of(client, r, "/controls/site/sin-dc1")
    r = client.post("/controls/site/sin-dc1/3/evidence", data={"as_of": "", "kind": "attestation", "statement": ""})
    _refused_then_as_of(client, r, "/controls/site/sin-dc1")


def test_after_a_refused_export_the_as_of_picker_opens_the_exports_not_a_download(client: TestClient) -> None:
    r = client.get("/exports/installed-base/download", params={"from": "2026-13-01", "to": "2026-06-30"})
    _refused_then_as_of(client, r, "/exports")


def test_a_reservation_for_a_later_date_brings_the_planner_back_at_that_date(client: TestClient) -> None:
    r = client.post("/reservations", data={**WHATIF, "n": "1", "as_of": "2027-02-01", "expires_on": ""},
                    follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    where = urlsplit(r.headers["location"])
    assert where.path == "/whatif"
    rid = parse_qs(where.query)["reserved"][0]
    page = client.get(r.headers["location"]).text
    assert f"Reserved as #{rid}" in page
    # The planner's Date and the header's "as of" are the plan's (they were today's: the next change was planned
    # on another date than the reservation beside it).
    assert re.search(r'name="as_of" id="whatif-as_of" value="2027-02-01"', page), "the planner's Date is the plan's"
    assert ASOF_VALUE.search(page).group(1) == "2027-02-01"  # type: ignore[union-attr]
    # A date chosen in the header afterwards is the one shown.
    chosen = client.get(r.headers["location"], params={"as_of": "2027-03-01"}).text
    assert ASOF_VALUE.search(chosen).group(1) == "2027-03-01"  # type: ignore[union-attr]
    # Releasing it from the planner at that date stays at that date.
    released = client.post(f"/reservations/{rid}/release", data={"as_of": "2027-02-01"}, follow_redirects=False)
    assert released.status_code == 303
    assert parse_qs(urlsplit(released.headers["location"]).query).get("as_of") == ["2027-02-01"]


def test_a_refused_reservation_shows_the_caps_at_the_date_it_was_planned_for(client: TestClient) -> None:
    r = client.post("/reservations", data={**WHATIF, "n": "1", "as_of": "2027-02-01", "expires_on": "2027-01-01"})
    assert r.status_code == 422, r.text[:300]
    # The header (and its rule bar) speak of the plan's date, as the what-if's own answer does.
    assert ASOF_VALUE.search(r.text).group(1) == "2027-02-01"  # type: ignore[union-attr]
    assert 'id="reserve-expires_on"' in r.text and 'aria-invalid="true"' in r.text


def test_the_release_buttons_carry_the_planners_date(client: TestClient) -> None:
    page = client.get("/whatif", params={"as_of": "2027-03-01"}).text
    forms = re.findall(r'<form method="post" action="/reservations/\d+/release".*?</form>', page, re.S)
    assert forms, "the demo has an active reservation"
    assert all('name="as_of" value="2027-03-01"' in f for f in forms), forms[0]


def test_a_what_if_with_how_many_left_empty_names_how_many_and_plans_nothing(client: TestClient) -> None:
    # The API requires the count; the dashboard ran an empty field as a change of 0 chips ("add 0 x ...": OK).
    r = client.post("/whatif", data={**WHATIF, "n": "  "})
    assert r.status_code == 422, r.text[:300]
    assert 'id="whatif-result"' not in r.text
    assert re.search(r'name="n"[^>]*aria-invalid="true" aria-describedby="whatif-n-error"', r.text)
    note = re.search(r'<span class="field-error" id="whatif-n-error">([^<]*)</span>', r.text)
    assert note and note.group(1).startswith("How many: empty"), note and note.group(1)


@pytest.mark.browser
def test_in_the_browser_a_refused_reservation_then_another_date_opens_the_planner(browser, demo) -> None:  # type: ignore[no-untyped-def]
    """The operator's path: a reservation refused (its expiry before the planned date), then another date chosen
    in the header: the planner at that date, not a JSON "Method Not Allowed"."""
    from .conftest import sign_in

    ctx, page, errors = sign_in(browser, demo, "planner", "qa17-planner")
    try:
        _refused_reservation_then_another_date(page, demo)
    finally:
        ctx.close()
    errors = [e for e in errors if not re.search(r"status of 422", e)]  # the refused form's own answer
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def _refused_reservation_then_another_date(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"] + "whatif")
    page.fill("#n", "1")
    page.click("#run-whatif")
    page.wait_for_selector("#reserve-form")
    page.fill("#reserve-expires_on", "2020-01-01")
    page.click("#reserve-form button[type=submit]")
    page.wait_for_selector("#error")
    assert page.locator("#reserve-expires_on").get_attribute("aria-invalid") == "true"
    page.fill("form.asof input[name=as_of]", "2026-06-01")
    page.click("form.asof button[type=submit]")
    page.wait_for_load_state()
    assert urlsplit(page.url).path == "/whatif", page.url
    assert page.locator("#whatif-as_of").input_value() == "2026-06-01"
    assert "Method Not Allowed" not in page.content()
