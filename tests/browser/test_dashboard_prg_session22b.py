"""Post/Redirect/Get on the dashboard: Back after a form's answer never asks to resubmit a form.

- Every successful form post is a 303 to a GET page (the what-if form itself is a GET of ``/whatif``).
- A refused form's answer is the POST's result (a 422 page with the form as sent). Correcting it and submitting
  again succeeded with a 303 to a GET page, but Back then returned to the refused POST result: Chromium's
  ``net::ERR_CACHE_MISS`` ("Confirm Form Resubmission"; every page is ``no-store``). A refused form's page names
  its page's GET address (``<meta name="veu-page">``), which ``agent/api/static/app.js`` puts in place of the POST
  entry with ``history.replaceState``, so Back and reload lead to that page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
WHATIF = {"authorization": "aurora-uveu", "op": "add", "n": "1", "chip": "h100-sxm", "site": "sin-dc1", "owner": "",
          "as_of": "2026-06-01"}
META = re.compile(r'<meta name="veu-page" content="([^"]*)">')

@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from agent.api.app import create_app
    from agent.demo import seed

    url = f"sqlite:///{Path(tmp_path_factory.mktemp('s22b')) / 'demo.db'}"
    with pytest.MonkeyPatch.context() as mp:  # behaviour, not access control (tests/security covers the roles)
        mp.setenv("VEU_AUTH", "none")
        seed(url)
        with TestClient(create_app(url), raise_server_exceptions=False, follow_redirects=False) as c:
            yield c


def test_every_successful_form_post_is_a_303_to_a_get_page(client: TestClient) -> None:
    posts = [("/reservations", {**WHATIF, "note": "prg"}), ("/audit/checkpoint", {}),
             ("/cases/1/resolve", {"export_intent": "no", "as_of": "2026-06-01"})]
    for path, form in posts:
        r = client.post(path, data=form)
        assert r.status_code == 303, (path, r.text[:300])
        shown = client.get(r.headers["location"])
        assert shown.status_code == 200 and not META.search(shown.text), path
    rid = parse_qs(urlsplit(client.post("/reservations", data=WHATIF).headers["location"]).query)["reserved"][0]
    r = client.post(f"/reservations/{rid}/release", data={"as_of": "2026-06-01"})
    assert r.status_code == 303 and client.get(r.headers["location"]).status_code == 200


def test_a_refused_whatif_post_is_still_the_page_with_its_error(client: TestClient) -> None:
    r = client.post("/whatif", data={**WHATIF, "n": "abc"})
    assert r.status_code == 422 and "How many" in r.text


@pytest.mark.parametrize("path, form, page", [
    ("/whatif", {**WHATIF, "n": "abc"}, "/whatif"),
    ("/reservations", {**WHATIF, "n": "abc"}, "/whatif"),
    ("/cases/1/resolve", {"export_intent": "", "as_of": "2026-06-01"}, "/cases"),
    ("/deadlines/filings", {"key": "nope", "filed_on": "2026-06-01", "as_of": "2026-06-01"}, "/deadlines"),
])
def test_a_refused_form_names_its_pages_get_address(client: TestClient, path: str, form: dict[str, str],
                                                    page: str) -> None:
    r = client.post(path, data=form)
    assert 400 <= r.status_code < 500, r.text[:300]
    m = META.search(r.text)
    assert m, "the refused form's page names the address Back should show"
    where = urlsplit(m.group(1).replace("&amp;", "&"))
    assert where.path == page and parse_qs(where.query)["as_of"] == ["2026-06-01"]
    assert client.get(m.group(1).replace("&amp;", "&")).status_code == 200


def test_a_page_shown_by_a_get_names_no_other_address(client: TestClient) -> None:
    for path in ("/", "/whatif", "/cases", "/deadlines"):
        assert not META.search(client.get(path).text), path


# ------------------------------------------------------------------------------------------ in Chromium


def _back_after_refused_then_corrected(demo: dict[str, str], without_app_js: bool = False) -> str:
    from playwright.sync_api import Error, Route, sync_playwright

    from tests.browser.conftest import ARGS, CHROMIUM

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            pg = b.new_page()
            if without_app_js:
                def serve(route: Route) -> None:
                    route.fulfill(status=200, content_type="text/javascript", body="")

                pg.route("**/static/app.js", serve)
            pg.goto(demo["login"])
            pg.fill("input[name=token]", demo["token"])
            pg.click("button[type=submit]")
            pg.wait_for_url(re.compile(r".*/$"))
            pg.goto(demo["url"] + "cases")
            form = pg.locator("form.resolve").first
            form.locator("select[name=export_intent]").select_option("yes")
            with pg.expect_navigation():
                form.locator("button[type=submit]").click()  # refused: a licence or "informed" is needed
            assert pg.locator("#error").count() or "refused" in pg.content() or "requires" in pg.content()
            form = pg.locator("form.resolve").first
            form.locator("input[name=informed]").check()
            with pg.expect_navigation():
                form.locator("button[type=submit]").click()
            assert "status=resolved" in pg.url
            try:
                pg.go_back(timeout=10_000)
            except Error as exc:
                return f"error: {exc}"
            return pg.url
        finally:
            b.close()


@pytest.fixture(scope="module")
def own_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A demo of this module's own: each test resolves an open case, which other modules' tests need."""
    from tests.browser.conftest import run_demo

    with run_demo(tmp_path_factory.mktemp("s22b-demo")) as info:
        yield info


def test_back_after_a_corrected_form_shows_its_page_not_a_resubmission(own_demo: dict[str, str]) -> None:
    url = _back_after_refused_then_corrected(own_demo)
    assert "ERR_CACHE_MISS" not in url and urlsplit(url).path == "/cases", url


def test_without_app_js_back_asks_to_resubmit_the_refused_form(own_demo: dict[str, str]) -> None:
    """Why app.js replaces the entry: without it Back returns to the refused POST (every page is no-store)."""
    url = _back_after_refused_then_corrected(own_demo, without_app_js=True)
    assert "ERR_CACHE_MISS" in url or urlsplit(url).path.endswith("/resolve"), url


def test_a_refused_forms_address_keeps_a_percent_in_a_site_name() -> None:
    """The address is a URL: a site named ``x%41`` is ``/controls/site/x%2541``, not site ``xA``'s register.
    (The request as uvicorn gives it, its path decoded once; TestClient decodes a path twice.)"""
    from starlette.requests import Request

    from agent.api.routes.dashboard import page_address

    req = Request({"type": "http", "method": "POST", "path": "/controls/site/x%41/3",
                   "raw_path": b"/controls/site/x%2541/3", "query_string": b"", "headers": [], "scheme": "https",
                   "server": ("testserver", 443), "root_path": ""})
    assert page_address(req, "as_of=2026-01-05") == "/controls/site/x%2541?as_of=2026-01-05"
    req = Request({**req.scope, "path": "/controls/site/fra 1/3", "raw_path": b"/controls/site/fra%201/3"})
    assert page_address(req, "as_of=2026-01-05") == "/controls/site/fra%201?as_of=2026-01-05"
