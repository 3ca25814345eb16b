"""In Chromium: signing in lands where the user was going. A page opened signed out (with its filters) comes back
after signing in, and a sign-in refused because it was posted from another site's page shows the form again with
the destination kept, so signing in from it lands there rather than on the overview."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

ELSEWHERE = "http://elsewhere.example/"


def _new_token(demo: dict[str, str]) -> str:
    import httpx

    made = httpx.post(demo["url"] + "api/v1/tokens", json={"role": "viewer", "name": "browser-next-24c"},
                      headers={"Authorization": f"Bearer {demo['token']}"})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def _context(browser):  # type: ignore[no-untyped-def]
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    return ctx, pg, errors


def test_a_page_opened_signed_out_is_shown_with_its_filters_after_signing_in(browser, demo) -> None:  # type: ignore[no-untyped-def]
    ctx, pg, errors = _context(browser)
    try:
        pg.goto(demo["url"] + "cases?status=resolved")
        assert "/login?next=" in pg.url
        pg.fill("input[name=token]", _new_token(demo))
        pg.click("button[type=submit]")
        pg.wait_for_load_state()
        assert pg.url == demo["url"] + "cases?status=resolved"
    finally:
        ctx.close()
    assert not errors, errors


def test_a_sign_in_posted_from_another_site_is_refused_and_the_retry_lands_on_the_page_asked_for(  # type: ignore[no-untyped-def]
        browser, demo) -> None:
    ctx, pg, errors = _context(browser)
    # Another site's page with a sign-in form aimed at the dashboard (what login CSRF looks like).
    form = (f'<form method="post" action="{demo["url"]}login"><input name="token" value="veu_x">'
            '<input type="hidden" name="next" value="/deadlines"><button id="go">go</button></form>')
    ctx.route(ELSEWHERE + "**", lambda route: route.fulfill(status=200, content_type="text/html", body=form))
    try:
        pg.goto(ELSEWHERE)
        with pg.expect_navigation():
            pg.click("#go")
        assert "own page" in pg.content()
        assert pg.locator("input[name=next]").get_attribute("value") == "/deadlines"
        pg.fill("input[name=token]", _new_token(demo))
        pg.click("button[type=submit]")
        pg.wait_for_load_state()
        assert pg.url == demo["url"] + "deadlines"
        assert pg.locator("h1, h2").first.is_visible()
    finally:
        ctx.close()
    assert not errors, errors
