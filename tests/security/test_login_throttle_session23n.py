"""The sign-in throttle counts an IPv6 client by its /64 (one host holds a whole /64 and picks a new source address
at will: per address the limit of 10 failures was no limit at all), and stays bounded and cheap when failures come
from very many addresses: past 10,000 tracked addresses every failed sign-in walked all of them on the event loop
(6 ms each at 10,000, growing with every new address), which the webhook sharing the loop waited behind."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from agent.api.app import create_app
from agent.api.routes.auth import LOGIN_FAILURES, TRACKED_ADDRESSES, LoginThrottle

pytestmark = pytest.mark.auth

BAD = "veu_0123456789ab_" + "x" * 43


async def _sign_ins(app: object, addresses: list[str]) -> list[int]:
    codes = []
    for address in addresses:
        transport = httpx.ASGITransport(app=app, client=(address, 4000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            codes.append((await c.post("/login", data={"token": BAD, "next": "/"})).status_code)
    return codes


def test_failed_sign_ins_from_new_addresses_of_one_ipv6_64_are_throttled_together(db_url: str) -> None:
    addresses = [f"2001:db8:1:2::{i + 1:x}" for i in range(LOGIN_FAILURES + 1)]
    codes = asyncio.run(_sign_ins(create_app(db_url), addresses))
    assert codes == [401] * LOGIN_FAILURES + [429], codes


def test_another_ipv6_64_and_each_ipv4_address_keep_their_own_count(db_url: str) -> None:
    app = create_app(db_url)
    asyncio.run(_sign_ins(app, [f"2001:db8:1:2::{i + 1:x}" for i in range(LOGIN_FAILURES)]))
    asyncio.run(_sign_ins(app, [f"198.51.100.{i + 1}" for i in range(LOGIN_FAILURES)]))
    assert asyncio.run(_sign_ins(app, ["2001:db8:1:3::1", "198.51.100.200"])) == [401, 401]


def test_an_ipv4_mapped_ipv6_address_counts_as_the_ipv4_address() -> None:
    t = LoginThrottle()
    for _ in range(LOGIN_FAILURES):
        t.failed("::ffff:192.0.2.7")
    assert t.wait("192.0.2.7") > 0


def test_failures_from_very_many_addresses_stay_bounded_and_cheap() -> None:
    t = LoginThrottle(clock=lambda: 1000.0)  # every failure inside the window
    started = time.perf_counter()
    for i in range(TRACKED_ADDRESSES + 5_000):
        t.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    elapsed = time.perf_counter() - started
    assert len(t._failures) <= TRACKED_ADDRESSES
    assert elapsed < 3.0, f"{elapsed:.1f} s for {TRACKED_ADDRESSES + 5_000} failed sign-ins"


def test_a_guesser_at_the_limit_is_kept_when_the_table_is_full_of_single_failures() -> None:
    # Room is made by forgetting the addresses with the fewest failures, never one that is being throttled.
    now = [1000.0]
    t = LoginThrottle(clock=lambda: now[0])
    for _ in range(LOGIN_FAILURES):
        t.failed("203.0.113.9")
    for i in range(TRACKED_ADDRESSES + 100):
        now[0] += 0.001  # all of them still inside the window
        t.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert len(t._failures) <= TRACKED_ADDRESSES
    assert t.wait("203.0.113.9") > 0
