"""Browser-test fixtures: one `veuctl demo` server on 127.0.0.1 for the session, and a signed-in Chromium page.

The page fixture fails the test on any error in the browser console or any uncaught page error.
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
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

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


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`veuctl demo` on a free local port; yields its URL, admin token and signing-key file; stops it afterwards."""
    with run_demo(tmp_path_factory.mktemp("demo")) as info:
        yield info


@contextmanager
def run_demo(work: Path) -> Iterator[dict[str, str]]:
    """A `veuctl demo` of its own in ``work`` (for tests that use up the shared demo's open cases)."""
    port = _free_port()
    db, key = work / "demo.db", work / "signing.key"
    # Its own export/audit signing key, so the test can verify manifests without touching the user's key.
    env = {**os.environ, "VEU_DATABASE_URL": "", "PYTHONUNBUFFERED": "1", "VEU_SIGNING_KEY_FILE": str(key)}
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
        info["signing_key"] = str(key)
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


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Chromium for a module's tests, each opening its own contexts (roles, sign-ins)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture()
def page(demo: dict[str, str]) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    OUT.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        ctx = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
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


def sign_in(browser, demo: dict[str, str], role: str, name: str):  # type: ignore[no-untyped-def]
    """A new browser context signed in to the demo with a fresh token of ``role`` (made with the demo's admin
    token over the API): (context, page, the console and page errors it collects)."""
    import re

    import httpx

    made = httpx.post(demo["url"] + "api/v1/tokens", json={"role": role, "name": name},
                      headers={"Authorization": f"Bearer {demo['token']}"})
    assert made.status_code == 201, made.text
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    pg.goto(demo["login"])
    pg.fill("input[name=token]", made.json()["token"])
    pg.click("button[type=submit]")
    pg.wait_for_url(re.compile(r".*/$"))
    return ctx, pg, errors
