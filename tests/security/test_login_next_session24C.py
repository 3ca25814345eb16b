"""The sign-in form keeps where the user was going (``next``) when it is shown again after a refusal: a sign-in
posted from another page (403, login CSRF) and a throttled one (429) used to put ``next=/`` in the form shown, so
after retrying the user landed on the overview instead of the case or export page that sent them to sign in. Only a
same-site relative path is kept: anything a browser could read as another site becomes ``/``.

Against the real server (uvicorn on a local port), as a browser posts the form."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from agent.api.routes.auth import LOGIN_FAILURES, _safe_next
from agent.auth import create_token
from agent.server import build_config
from agent.store import session_scope
from tests.webhook.tlsutil import free_port

pytestmark = pytest.mark.auth

BAD = "veu_0123456789ab_" + "x" * 43
# What browsers read as another site, or as a path on one: never carried into the form or a redirect.
OFF_SITE = ["//evil.example/cases", "https://evil.example/", "/\\evil.example", "\\\\evil.example",
            "/\t/evil.example", "/\n/evil.example", "javascript:alert(1)", "", "cases"]


@pytest.fixture()
def base(db_url: str) -> Iterator[str]:
    port = free_port()
    config = build_config("127.0.0.1", port, None, None, db_url, log_level="critical")
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    t.join(10)


def _token(url: str) -> str:
    with session_scope(url) as s:
        _, secret = create_token(s, role="viewer", name="test-next")
    return secret


def _next_in_form(page: str) -> str:
    m = re.search(r'<input type="hidden" name="next" value="([^"]*)">', page)
    assert m is not None, page
    return m.group(1)


def test_a_sign_in_refused_for_its_origin_keeps_next_and_the_retry_lands_there(base: str, db_url: str) -> None:
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        r = c.post("/login", data={"token": _token(db_url), "next": "/cases?status=open"},
                   headers={"Origin": "https://elsewhere.example"})
        assert r.status_code == 403
        assert "set-cookie" not in r.headers
        kept = _next_in_form(r.text)
        assert kept == "/cases?status=open"
        # The user signs in again from the page shown (this site's own origin).
        r = c.post("/login", data={"token": _token(db_url), "next": kept}, headers={"Origin": base})
        assert r.status_code == 303
        assert r.headers["location"] == "/cases?status=open"


def test_a_throttled_sign_in_keeps_next(base: str) -> None:
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        for _ in range(LOGIN_FAILURES):
            r = c.post("/login", data={"token": BAD, "next": "/exports"}, headers={"Origin": base})
            assert r.status_code == 401
            assert _next_in_form(r.text) == "/exports"
        r = c.post("/login", data={"token": BAD, "next": "/exports"}, headers={"Origin": base})
        assert r.status_code == 429
        assert _next_in_form(r.text) == "/exports"


@pytest.mark.parametrize("nxt", OFF_SITE)
def test_a_next_naming_another_site_is_never_kept_in_a_refusal(base: str, nxt: str) -> None:
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        r = c.post("/login", data={"token": BAD, "next": nxt}, headers={"Origin": "https://elsewhere.example"})
        assert r.status_code == 403
        assert _next_in_form(r.text) == "/"
        r = c.get("/login", params={"next": nxt})
        assert _next_in_form(r.text) == "/"


@pytest.mark.parametrize("nxt", OFF_SITE)
def test_a_successful_sign_in_never_redirects_off_site(base: str, db_url: str, nxt: str) -> None:
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        r = c.post("/login", data={"token": _token(db_url), "next": nxt}, headers={"Origin": base})
        assert r.status_code == 303
        assert r.headers["location"] == "/"


@pytest.mark.parametrize("nxt", ["/", "/cases", "/cases/12?tab=notes", "/exports#latest", "/sites/sin-dc1"])
def test_a_same_site_path_is_kept_as_it_is(nxt: str) -> None:
    assert _safe_next(nxt) == nxt


def test_a_page_with_a_query_sends_to_sign_in_and_back_to_the_same_query(base: str, db_url: str) -> None:
    # The filters of a listing (?status=open) are part of where the user was going.
    with httpx.Client(base_url=base, follow_redirects=False) as c:
        r = c.get("/cases?status=open&site=sin-dc1")
        assert r.status_code == 303
        assert r.headers["location"] == "/login?next=/cases%3Fstatus%3Dopen%26site%3Dsin-dc1"
        r = c.get(r.headers["location"])
        assert _next_in_form(r.text) == "/cases?status=open&amp;site=sin-dc1"  # HTML-escaped in the attribute
        r = c.post("/login", data={"token": _token(db_url), "next": "/cases?status=open&site=sin-dc1"},
                   headers={"Origin": base})
        assert r.headers["location"] == "/cases?status=open&site=sin-dc1"
