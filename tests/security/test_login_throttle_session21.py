"""Sign-in throttling holds under concurrent attempts: the failure count was checked before the token was and
recorded only after, so every attempt sent while the first ones were being checked passed the limit (15 of 60
simultaneous wrong tokens got a 401 instead of a 429 against a limit of 10; more against a slow store)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from agent.api.app import create_app
from agent.api.routes.auth import LOGIN_FAILURES
from agent.auth import create_token
from agent.store import session_scope

pytestmark = pytest.mark.auth

BAD = "veu_0123456789ab_" + "x" * 43


async def _attempts(app: object, tokens: list[str]) -> list[int]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        rs = await asyncio.gather(*(c.post("/login", data={"token": t, "next": "/"}) for t in tokens))
    return [r.status_code for r in rs]


def test_simultaneous_wrong_tokens_are_held_to_the_limit(db_url: str) -> None:
    app = create_app(db_url)
    codes = asyncio.run(_attempts(app, [BAD] * 60))
    assert codes.count(401) <= LOGIN_FAILURES, codes
    assert codes.count(429) == 60 - codes.count(401)


def test_a_right_token_still_signs_in_and_clears_the_count(db_url: str) -> None:
    with session_scope(db_url) as s:
        _, good = create_token(s, role="viewer", name="v")
    app = create_app(db_url)
    codes = asyncio.run(_attempts(app, [BAD] * (LOGIN_FAILURES - 1) + [good]))
    assert codes.count(303) == 1 and codes.count(401) == LOGIN_FAILURES - 1, codes
    # The sign-in cleared only its own attempt, not the address's failures (session 21b: a valid token signed in
    # between guesses reset the limit): one more wrong token reaches the limit, the next waits.
    codes = asyncio.run(_attempts(app, [BAD]))
    assert codes == [401]
    codes = asyncio.run(_attempts(app, [BAD]))
    assert codes == [429]


def test_sequential_wrong_tokens_reach_the_limit_then_429(db_url: str) -> None:
    app = create_app(db_url)

    async def one_by_one() -> list[int]:
        out = []
        for _ in range(LOGIN_FAILURES + 2):
            out += await _attempts(app, [BAD])
        return out

    codes = asyncio.run(one_by_one())
    assert codes == [401] * LOGIN_FAILURES + [429, 429], codes
