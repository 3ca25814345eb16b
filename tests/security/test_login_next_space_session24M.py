"""Sign-in keeps a page whose path holds a space (session 24M, review R3).

An LPP cap's id ends in the party's name (``/explain/uae-veu/lpp:Emirates%20AI``). The sign-in redirect carries the
decoded path, so ``next`` held a space, and ``_safe_next`` (which refused any whitespace) replaced it with ``/``:
after signing in the user landed on the overview. A browser percent-encodes a space inside a URL (it only drops
tabs and newlines, and reads a backslash as a slash), so only backslash, C0 controls and DEL are refused; every
open-redirect refusal stays.
"""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from agent.api.app import create_app
from agent.api.routes.auth import _safe_next
from agent.auth import create_token
from agent.store import session_scope

pytestmark = pytest.mark.auth

PAGE = "/explain/uae-veu/lpp:Emirates%20AI"


def _next_in_form(page: str) -> str:
    m = re.search(r'<input type="hidden" name="next" value="([^"]*)">', page)
    assert m is not None, page
    return html.unescape(m.group(1))


def test_a_page_whose_path_holds_a_space_is_where_sign_in_lands(db_url: str) -> None:
    with session_scope(db_url) as s:
        _, token = create_token(s, role="viewer", name="test-space")
    c = TestClient(create_app(db_url), base_url="https://testserver", follow_redirects=False)
    r = c.get(PAGE)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), r.headers
    nxt = _next_in_form(c.get(r.headers["location"]).text)
    assert nxt == "/explain/uae-veu/lpp:Emirates AI"
    r = c.post("/login", data={"token": token, "next": nxt}, headers={"Origin": "https://testserver"})
    assert r.status_code == 303 and r.headers["location"] == PAGE


@pytest.mark.parametrize("nxt", ["/explain/uae-veu/lpp:Emirates AI", "/cases?q=emirates ai", "/parties/Aurora Labs"])
def test_a_same_site_path_with_an_inner_space_is_kept(nxt: str) -> None:
    assert _safe_next(nxt) == nxt


@pytest.mark.parametrize("nxt", ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example",
                                 "/\r/evil.example", "/\x00/evil.example", "/\x7f/evil.example", "/x\x0by",
                                 " /evil.example", "https://evil.example/"])
def test_what_a_browser_could_read_as_another_site_is_still_refused(nxt: str) -> None:
    assert _safe_next(nxt) == "/"
