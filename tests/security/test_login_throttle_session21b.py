"""A valid sign-in no longer resets the sign-in throttle: it cleared every failure recorded for the address, so
anyone holding a token (a viewer's) could sign in between guesses at other tokens and guess without limit. Now a
sign-in forgives only its own attempt (counted as a failure before its token was checked)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agent.api.app import create_app
from agent.api.routes.auth import LOGIN_FAILURES, LoginThrottle
from agent.auth import create_token
from agent.store import session_scope

pytestmark = pytest.mark.auth

BAD = "veu_0123456789ab_" + "x" * 43


async def _one_by_one(app: object, tokens: list[str]) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        return [(await c.post("/login", data={"token": t, "next": "/"})).status_code for t in tokens]


def test_signing_in_between_guesses_does_not_reset_the_limit(db_url: str) -> None:
    with session_scope(db_url) as s:
        _, good = create_token(s, role="viewer", name="v")
    app = create_app(db_url)
    # 9 wrong, the viewer's own token, 1 wrong: 10 failures in the window, the limit. The sign-in in between
    # used to clear the 9, so the guesser had 10 more before a 429.
    codes = asyncio.run(_one_by_one(app, [BAD] * (LOGIN_FAILURES - 1) + [good, BAD]))
    assert codes == [401] * (LOGIN_FAILURES - 1) + [303, 401], codes
    codes = asyncio.run(_one_by_one(app, [BAD, good]))
    assert codes == [429, 429], codes  # the next guess waits, and so does a sign-in to reset it


def test_a_sign_in_forgives_only_its_own_attempt() -> None:
    now = [1000.0]
    t = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    t.failed("10.0.0.1")
    t.failed("10.0.0.1")
    attempt = t.failed("10.0.0.1")
    t.succeeded("10.0.0.1", attempt)
    assert len(t._failures["10.0.0.1"]) == 2 and t.wait("10.0.0.1") == 0
    t.failed("10.0.0.1")
    assert t.wait("10.0.0.1") > 0  # the two earlier failures still count
    now[0] += 61
    assert t.wait("10.0.0.1") == 0 and t._failures == {}


def test_an_attempt_forgiven_after_its_window_leaves_nothing_behind() -> None:
    """A sign-in whose check outlasted the window: its entry is gone already, and nobody else's is removed."""
    now = [1000.0]
    t = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    slow = t.failed("10.0.0.1")
    now[0] += 61
    other = t.failed("10.0.0.1")
    t.wait("10.0.0.1")  # the slow attempt's entry leaves the window
    t.succeeded("10.0.0.1", slow)
    assert t._failures == {"10.0.0.1": [other]}
    t.succeeded("10.0.0.1", other)
    assert t._failures == {}


def test_a_user_who_mistypes_then_signs_in_all_day_is_never_locked_out() -> None:
    now = [1000.0]
    t = LoginThrottle(limit=LOGIN_FAILURES, window=300, clock=lambda: now[0])
    for _ in range(LOGIN_FAILURES - 1):  # nine typos in a row
        assert t.wait("10.0.0.1") == 0
        t.failed("10.0.0.1")
    for _ in range(200):  # then sign-ins (several browsers, every few seconds), each counted then forgiven
        assert t.wait("10.0.0.1") == 0
        t.succeeded("10.0.0.1", t.failed("10.0.0.1"))
        now[0] += 5
    assert t.wait("10.0.0.1") == 0 and t._failures == {}
