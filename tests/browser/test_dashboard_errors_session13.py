"""Refusals and bad input in headless Chromium: a page the role may not open is a 403 page in the dashboard's
layout saying what was refused and which role to ask for (not a JSON body), and a bad date in the header's
"as of" form comes back naming that form field, not the API's query parameter. Tokens come from the demo's
admin token over the API."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from .conftest import sign_in

pytestmark = pytest.mark.browser


def _signed_in_as(browser, demo, role: str) -> Iterator[tuple[object, list[str]]]:  # type: ignore[no-untyped-def]
    ctx, pg, errors = sign_in(browser, demo, role, f"qa13-{role}")
    yield pg, errors
    ctx.close()
    # The refused page's own status (Chromium logs it for the document itself); nothing else may fail.
    errors = [e for e in errors if not re.search(r"status of 4(0[34]|22)", e)]
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


@pytest.fixture()
def viewer(browser, demo) -> Iterator[tuple[object, list[str]]]:  # type: ignore[no-untyped-def]
    yield from _signed_in_as(browser, demo, "viewer")


def test_a_page_the_role_may_not_open_is_a_403_page_in_the_layout(viewer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = viewer
    resp = pg.goto(demo["url"] + "exports")
    assert resp is not None and resp.status == 403
    assert resp.headers["content-type"].startswith("text/html")
    # The layout: navigation, who is signed in and sign-out, then what was refused and what to do.
    assert pg.locator("header nav a").count() >= 5
    assert "viewer" in pg.locator("header .who").inner_text()
    assert pg.locator("h1").inner_text() == "Not allowed"
    message = pg.locator("#error-message").inner_text()
    assert "viewer" in message and "exports" in message, message
    advice = pg.locator("#error-advice").inner_text()
    assert "auditor or admin" in advice and "sign in" in advice, advice
    assert not pg.locator("body").inner_text().lstrip().startswith("{")
    # The way on: back to the overview, and signing out to sign in with another token.
    pg.click("text=Back to the caps overview")
    pg.wait_for_url(re.compile(r".*/$"))
    assert pg.locator("h1").count() >= 1


def test_a_date_before_the_rules_in_the_as_of_form_names_that_field(viewer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = viewer
    pg.goto(demo["url"])
    pg.fill("header form.asof input[name=as_of]", "1990-01-01")
    with pg.expect_navigation() as nav:
        pg.click("header form.asof button[type=submit]")
    resp = nav.value
    assert resp is not None and resp.status == 422
    message = pg.locator("#error-message").inner_text()
    assert message.startswith("as of (date):") and "not in effect on 1990-01-01" in message, message
    assert "as_of" not in message and "/api/" not in message, message
    assert pg.locator("header nav a").count() >= 5  # still the dashboard, with its way back


def test_a_stale_explanation_link_points_to_a_page_not_an_api_request(viewer, demo) -> None:  # type: ignore[no-untyped-def]
    pg, _errors = viewer
    resp = pg.goto(demo["url"] + "explain/no-such-authorization/uveu.outside_us.owned")
    assert resp is not None and resp.status == 404
    message = pg.locator("#error-message").inner_text()
    assert "no-such-authorization" in message and "ask an admin" in message, message
    assert not re.search(r"(GET|POST|PUT|PATCH|DELETE) /api/", message), message
