"""The dashboard in Chromium as each role: every page in the nav renders (no 500, no console error), no page
offers a post form the role cannot submit, and a planner's bad input comes back naming the form field with
the input kept. Tokens for the roles are made with the demo's admin token over the API."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.api.routes.auth import _dashboard_permission
from agent.auth import PERMISSIONS, ROLES

from .conftest import sign_in

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def _signed_in(browser, demo, role: str):  # type: ignore[no-untyped-def]
    return sign_in(browser, demo, role, f"browser-{role}")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_every_nav_page_and_only_forms_it_may_submit(browser, demo, role: str) -> None:  # type: ignore[no-untyped-def]
    ctx, pg, errors = _signed_in(browser, demo, role)
    perms = PERMISSIONS[role]
    try:
        links = pg.locator("header nav a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        hrefs = [h.split("?")[0] for h in links]
        assert "/" in hrefs and "/whatif" in hrefs
        assert ("/exports" in hrefs) is ("audit" in perms), role
        for href in hrefs:
            resp = pg.goto(demo["url"].rstrip("/") + href)
            assert resp is not None and resp.status == 200, (role, href, resp and resp.status)
            actions = pg.locator("form[method=post]").evaluate_all("els => els.map(e => e.getAttribute('action'))")
            for action in actions:
                assert _dashboard_permission("POST", action) in perms, (role, href, action)
        pg.goto(demo["url"] + "whatif")
        assert (pg.locator("#whatif-form").count() == 1) is ("plan" in perms), role
        pg.screenshot(path=str(OUT / f"whatif-{role}.png"), full_page=True)
    finally:
        ctx.close()
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def test_a_planners_bad_whatif_names_the_field_and_keeps_the_input(browser, demo) -> None:  # type: ignore[no-untyped-def]
    ctx, pg, errors = _signed_in(browser, demo, "planner")
    try:
        pg.goto(demo["url"] + "whatif")
        pg.select_option("select[name=authorization]", "aurora-uveu")
        pg.select_option("#op", "retire")
        pg.fill("#n", "9999999")
        pg.select_option("select[name=site]", "sin-dc1")
        pg.click("#run-whatif")
        pg.wait_for_selector("#error")
        text = pg.locator("#error").inner_text()
        assert text.startswith("How many:") and "--" not in text, text
        assert pg.locator("#n").input_value() == "9999999"
        assert pg.locator("#op").input_value() == "retire"
        assert pg.locator("select[name=site]").input_value() == "sin-dc1"
    finally:
        ctx.close()
    # The refused form answers 422 (Chromium logs that status for the page itself): nothing else may fail.
    errors = [e for e in errors if "status of 422" not in e]
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


def test_signing_out_from_the_header_ends_the_session(browser, demo) -> None:  # type: ignore[no-untyped-def]
    ctx, pg, errors = _signed_in(browser, demo, "viewer")
    try:
        assert "(viewer)" in pg.locator("header form.signout").inner_text()
        pg.click("header form.signout button")
        pg.wait_for_url(re.compile(r".*/login$"))
        pg.goto(demo["url"])
        assert re.search(r"/login", pg.url), pg.url  # the session is gone: back to the sign-in page
        assert not errors, errors
    finally:
        ctx.close()
