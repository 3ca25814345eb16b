"""Session 24 (review R7): the dashboard's form posts do their store work off the event loop.

A form route written ``async def`` (to read the posted form) ran its store work on the event loop that serves every
request. Two people signing a checkpoint at once on PostgreSQL: one request's endpoint had returned holding the audit
chain's lock, its commit waiting for the loop; the other's endpoint blocked the loop waiting for that lock. The whole
process stopped answering, /readyz and /validate included, until the pod was restarted.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from agent.api.app import create_app
from agent.demo import seed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def served(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("VEU_AUTH", "none")
    seed(pg_url)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(pg_url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(10)


@pytest.mark.postgres
def test_two_people_signing_checkpoints_at_once_do_not_stop_the_server(served: str) -> None:
    results: list[object] = []

    def sign() -> None:
        with httpx.Client(timeout=15) as c:
            for _ in range(15):
                try:
                    r = c.post(served + "/audit/checkpoint", data={"as_of": "2026-06-01"},
                               headers={"origin": served})
                    results.append(r.status_code)
                except httpx.HTTPError as exc:
                    results.append(type(exc).__name__)
                    return

    threads = [threading.Thread(target=sign) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert results == [303] * 45, results
    assert httpx.get(served + "/readyz", timeout=5).status_code == 200
