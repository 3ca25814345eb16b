"""Session 20 QA in headless Chromium, keyboard only: the header's "as of" date before the rules comes back as a 422
page naming that field (as the API answers), and the what-if's answer says how many reservations it counted and
how many of them its caps count, as the API's answer (``reservations_counted``, ``reservations_in_caps``) does."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from .conftest import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture()
def planner(browser, demo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    ctx, pg, errors = sign_in(browser, demo, "planner", "qa20-planner")
    yield pg
    ctx.close()
    # The refused page's own status (Chromium logs it for the document itself); nothing else may fail.
    errors = [e for e in errors if not re.search(r"status of 422", e)]
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def test_a_date_before_the_rules_typed_in_the_header_is_a_422_page(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    pg.goto(demo["url"] + "countries")
    pg.fill("header form.asof input[name=as_of]", "1990-01-01")
    with pg.expect_navigation() as nav:
        pg.press("header form.asof input[name=as_of]", "Enter")
    assert nav.value is not None and nav.value.status == 422
    assert pg.locator("h1").inner_text() != "Not found"
    message = pg.locator("#error-message").inner_text()
    assert message.startswith("as of (date):") and "not in effect on 1990-01-01" in message, message
    api = httpx.get(demo["url"] + "api/v1/holdings/summary", params={"as_of": "1990-01-01"},
                    headers={"Authorization": f"Bearer {demo['token']}"})
    assert api.status_code == 422 and api.json()["detail"].startswith("as_of:"), api.text


def test_the_whatif_answer_shows_the_reservations_it_counts(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    pg.goto(demo["url"] + "whatif")
    pg.select_option("#whatif-authorization", "aurora-uveu")
    pg.select_option("#whatif-site", "dxb-dc1")
    pg.fill("#n", "1")
    with pg.expect_navigation():
        pg.press("#n", "Enter")  # the form is sent from the keyboard
    line = pg.locator("#whatif-reservations").inner_text()
    api = httpx.post(demo["url"] + "api/v1/whatif", headers={"Authorization": f"Bearer {demo['token']}"},
                     json={"authorization": "aurora-uveu", "n": 1, "chip": pg.locator("#whatif-chip").input_value(),
                           "site": "dxb-dc1"}).json()
    assert f"{api['reservations_counted']} counted as placed" in line, (line, api)
    assert pg.locator("#reservations-in-caps").inner_text() == str(api["reservations_in_caps"]), (line, api)
