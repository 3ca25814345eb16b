"""The dashboard in Debian's headless Chromium against a real `veuctl demo` server on 127.0.0.1.

Signs in with the demo's admin token, loads the caps overview, follows a number to its explanation, runs a
what-if and reserves headroom, resolves a red-flag case; saves screenshots under test-output/ and fails on
any error in the browser console.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "test-output" / "browser"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`veuctl demo` on a free local port; yields its URL and admin token; stops it afterwards."""
    port = _free_port()
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    env = {**os.environ, "VEU_DATABASE_URL": "", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo", "--port", str(port), "--db", str(db), "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read() if proc.stderr else ""
                pytest.fail(f"veuctl demo exited before printing its summary: {err[-2000:]}")
            lines.append(line)
            if line.rstrip() == "}":
                break
        info = json.loads("".join(lines))
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(info["url"] + "healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the demo server did not become healthy within 60 s")
            time.sleep(0.3)
        yield info
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture()
def page(demo: dict[str, str]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = browser.new_context(viewport={"width": 1366, "height": 900})
        pg = ctx.new_page()
        pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        pg.goto(demo["login"])
        pg.fill("input[name=token]", demo["token"])
        pg.click("button[type=submit], input[type=submit]")
        pg.wait_for_url(re.compile(r".*/$"))
        yield pg
        ctx.close()
        browser.close()
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)


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
    page.click("#reserve-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/whatif\?reserved=\d+"))
    assert page.locator("td", has_text="sin-dc1").count() >= 1
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
