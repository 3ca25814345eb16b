"""Session 21b, the dashboard's forms in headless Chromium, keyboard only.

The what-if is a question, not a change: its answer has an address (a GET), so the back button returns to it
instead of Chromium's "Confirm Form Resubmission" page (net::ERR_CACHE_MISS), after following one of its links or
after reserving its headroom (303 to the planner). A viewer given such an address gets no answer. A refused form
puts the keyboard focus on the field its message is about, so the user fixes it without tabbing through the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from .conftest import sign_in

pytestmark = pytest.mark.browser


def _filter(errors: list[str]) -> list[str]:
    # A refused form's own status (Chromium logs it for the document itself); nothing else may fail.
    return [e for e in errors if not re.search(r"status of 4(22|03)", e)]


@pytest.fixture()
def planner(browser, demo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    ctx, pg, errors = sign_in(browser, demo, "planner", "qa21b-planner")
    yield pg
    ctx.close()
    assert not _filter(errors), "errors in the browser console:\n" + "\n".join(errors)


@pytest.fixture()
def officer(browser, demo) -> Iterator[object]:  # type: ignore[no-untyped-def]
    ctx, pg, errors = sign_in(browser, demo, "compliance", "qa21b-compliance")
    yield pg
    ctx.close()
    assert not _filter(errors), "errors in the browser console:\n" + "\n".join(errors)


def _run_whatif(pg, demo, n: str) -> None:  # type: ignore[no-untyped-def]
    pg.goto(demo["url"] + "whatif")
    pg.select_option("#whatif-authorization", "aurora-uveu")
    pg.select_option("#whatif-site", "dxb-dc1")
    pg.fill("#n", n)
    with pg.expect_navigation():
        pg.press("#n", "Enter")


def test_back_after_a_whatif_link_shows_the_answer_again(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    _run_whatif(pg, demo, "3")
    heading = pg.locator("#whatif-result h2").inner_text()
    assert heading.startswith("add 3 ×"), heading
    pg.locator("#whatif-result table a").first.click()
    pg.wait_for_url(re.compile(r".*/explain/"))
    pg.go_back()  # was net::ERR_CACHE_MISS: the answer was a POST's
    assert pg.locator("#whatif-result h2").inner_text() == heading
    assert pg.input_value("#n") == "3"


def test_back_after_reserving_shows_the_whatif_answer(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    _run_whatif(pg, demo, "2")
    pg.fill("#reserve-note", "PO 21b — ü 漢字")
    with pg.expect_navigation():
        pg.press("#reserve-note", "Enter")
    assert pg.locator("#reserved").count() == 1
    reserved = re.search(r"reserved=(\d+)", pg.url)
    assert reserved is not None
    pg.go_back()
    assert pg.locator("#whatif-result h2").inner_text().startswith("add 2 ×")
    # Going back did not reserve again: the reservation is listed once.
    pg.goto(demo["url"] + "whatif")
    assert pg.locator("td", has_text="PO 21b — ü 漢字").count() == 1


def test_a_bad_whatif_by_address_names_the_field_keeps_the_input_and_focuses_it(planner, demo) -> None:  # type: ignore[no-untyped-def]
    pg = planner
    pg.goto(demo["url"] + "whatif")
    pg.select_option("#whatif-authorization", "aurora-uveu")
    pg.fill("#whatif-as_of", "1990-01-01")  # before the rules
    with pg.expect_navigation() as nav:
        pg.press("#n", "Enter")
    assert nav.value is not None and nav.value.status == 422
    assert pg.locator("#error").inner_text().startswith("Date:"), pg.locator("#error").inner_text()
    assert pg.input_value("#whatif-as_of") == "1990-01-01"
    assert pg.evaluate("document.activeElement.id") == "whatif-as_of"


def test_a_viewer_given_a_whatif_address_gets_no_answer(browser, demo) -> None:  # type: ignore[no-untyped-def]
    ctx, pg, errors = sign_in(browser, demo, "viewer", "qa21b-viewer")
    try:
        q = urlencode({"authorization": "aurora-uveu", "op": "add", "n": "1", "chip": "h100-sxm", "site": "dxb-dc1"})
        resp = pg.goto(demo["url"] + "whatif?" + q)
        assert resp is not None and resp.status == 200
        assert pg.locator("#read-only").count() == 1
        assert pg.locator("#whatif-result").count() == 0 and pg.locator("#whatif-form").count() == 0
    finally:
        ctx.close()
    assert not _filter(errors), "errors in the browser console:\n" + "\n".join(errors)


def test_a_refused_filing_focuses_the_field_it_names(officer, demo) -> None:  # type: ignore[no-untyped-def]
    pg = officer
    pg.goto(demo["url"] + "deadlines")
    key = pg.locator("form.file-deadline input[name=key]").first.get_attribute("value")
    assert key
    form = "deadline-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)
    pg.fill(f"#{form}-filed_on", "2099-01-01")  # after today
    pg.fill(f"#{form}-reference", "R-21b")
    with pg.expect_navigation() as nav:
        pg.press(f"#{form}-reference", "Enter")
    assert nav.value is not None and nav.value.status == 422
    assert "Filed on:" in pg.locator("#error").inner_text()
    assert pg.evaluate("document.activeElement.id") == f"{form}-filed_on"
    assert pg.input_value(f"#{form}-reference") == "R-21b"


def test_a_filing_sent_with_a_date_before_the_rules_is_the_deadlines_page(demo) -> None:  # type: ignore[no-untyped-def]
    """A filing whose page date (its hidden as_of) is before the rules was a bare JSON body: the deadlines list
    could not be shown at that date to carry the message. Now today's list, the message naming the date."""
    import httpx

    url = demo["url"].rstrip("/")
    with httpx.Client(base_url=url, headers={"Origin": url, "Accept": "text/html"}, timeout=60) as c:
        assert c.post("/login", data={"token": demo["token"]}).status_code in (200, 303)
        page = c.get("/deadlines").text
        key = re.search(r'name="key" value="([^"]+)"', page)
        assert key is not None
        r = c.post("/deadlines/filings", data={"key": key.group(1), "as_of": "1990-01-01",
                                               "filed_on": "2026-01-10", "reference": "R-21b"})
        # With a bad filed_on too, the page date's error is the one given, not the filing's under its name.
        bad = c.post("/deadlines/filings", data={"key": key.group(1), "as_of": "1990-01-01", "filed_on": "x"})
    assert r.status_code == 422 and r.headers["content-type"].startswith("text/html"), r.text[:300]
    error = re.search(r'id="error">(.*?)</p>', r.text, re.S)
    assert error is not None and "as of (date):" in error.group(1) and "1990-01-01" in error.group(1), error
    assert 'value="R-21b"' in r.text  # the row's form as it was sent
    error = re.search(r'id="error">(.*?)</p>', bad.text, re.S)
    assert bad.status_code == 422 and error is not None, bad.text[:300]
    assert "1990-01-01" in error.group(1) and "is not a date" not in error.group(1), error.group(1)
