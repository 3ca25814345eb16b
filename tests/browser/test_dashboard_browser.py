"""The dashboard in Debian's headless Chromium against a real `veuctl demo` server on 127.0.0.1.

Signs in with the demo's admin token, loads the caps overview, follows a number to its explanation, runs a
what-if and reserves headroom, resolves a red-flag case; saves screenshots under test-output/ and fails on
any error in the browser console. The server and the signed-in page are fixtures in conftest.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

OUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def test_overview_shows_every_cap_with_gauges_and_links_to_its_explanation(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"])
    assert page.locator("#auth-aurora-uveu .gauge").count() >= 4
    assert page.locator("#auth-falcon-nveu-ae").count() == 1
    assert page.get_by_text("UNCONFIRMED").first.is_visible()
    assert "not enforced" in page.locator(".rulebar").inner_text()
    page.screenshot(path=str(OUT / "overview.png"), full_page=True)
    page.locator("#auth-aurora-uveu figcaption a.num").first.click()
    page.wait_for_url(re.compile(r".*/explain/aurora-uveu/.*"))
    assert page.locator("#value").is_visible() and page.get_by_text("Formula").is_visible()
    assert page.locator("table.holdings tbody tr").count() > 0
    page.screenshot(path=str(OUT / "explain.png"), full_page=True)


def test_whatif_shows_max_fit_and_binding_cap_then_reserves_headroom(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"] + "whatif")
    page.select_option("select[name=authorization]", "aurora-uveu")
    page.select_option("#op", "move")
    assert page.locator("#to-site-field").is_visible()  # the small script shows the destination for a move
    page.select_option("#op", "add")
    assert not page.locator("#to-site-field").is_visible()
    page.fill("#n", "5000")
    page.select_option("select[name=chip]", "h100-sxm")
    page.select_option("select[name=site]", "sin-dc1")
    page.click("#run-whatif")
    page.wait_for_selector("#whatif-result")
    max_fit = int(page.locator("#max-fit").inner_text())
    assert 0 < max_fit < 5000
    assert page.locator("#binding").inner_text() == "uveu.single_country.SG.owned"
    assert "OVER" in page.locator("#fits").inner_text()
    page.screenshot(path=str(OUT / "whatif.png"), full_page=True)
    page.fill("#reserve-form input[name=n]", str(max_fit))
    page.fill("#reserve-form input[name=expires_on]", "2099-01-01")  # held until then unless released
    page.click("#reserve-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/whatif\?reserved=\d+"))
    assert page.locator("td", has_text="sin-dc1").count() >= 1
    assert page.locator("td", has_text="2099-01-01").count() == 1
    # The headroom is spent: the same what-if now fits nothing more.
    page.select_option("select[name=authorization]", "aurora-uveu")
    page.fill("#n", "1")
    page.select_option("select[name=chip]", "h100-sxm")
    page.select_option("select[name=site]", "sin-dc1")
    page.click("#run-whatif")
    page.wait_for_selector("#whatif-result")
    assert page.locator("#max-fit").inner_text() == "0"
    page.screenshot(path=str(OUT / "reserved.png"), full_page=True)


def test_a_red_flag_case_is_resolved_from_its_form(page, demo) -> None:  # type: ignore[no-untyped-def]
    page.goto(demo["url"] + "cases")
    forms = page.locator("form.resolve")
    open_before = forms.count()
    assert open_before >= 1
    form = forms.first
    case_id = form.get_attribute("action").split("/")[2]  # type: ignore[union-attr]
    form.locator("select[name=export_intent]").select_option("no")
    form.locator("input[name=notes]").fill("Customer certified no export of weights; inference only.")
    page.screenshot(path=str(OUT / "cases-open.png"), full_page=True)
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*/cases\?status=resolved.*"))
    assert page.locator(f"#case-{case_id} [data-status=resolved]").count() == 1
    page.screenshot(path=str(OUT / "cases-resolved.png"), full_page=True)
    page.goto(demo["url"] + "cases")
    assert page.locator("form.resolve").count() == open_before - 1


def test_countries_sites_models_and_shipments_pages_load_cleanly(page, demo) -> None:  # type: ignore[no-untyped-def]
    for path, marker in (("countries", "United Arab Emirates"), ("sites", "dxb-dc1"), ("sites/dxb-dc1", "Holdings"),
                         ("models", "lumen-frontier-1"), ("shipments", "prior notice")):
        page.goto(demo["url"] + path)
        assert page.get_by_text(marker).first.is_visible(), path
    page.goto(demo["url"] + "countries")
    page.locator("table.sortable th", has_text="TPP").click()  # the sort script runs without console errors
    page.screenshot(path=str(OUT / "countries.png"), full_page=True)
