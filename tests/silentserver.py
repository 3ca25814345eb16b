"""A TCP server that accepts every connection and never answers, and a watchdog for calls made against it.

A hung load balancer or a black-holed API server: the collectors' and the controllers' clients are pointed at it
to prove that ``VEU_COLLECTOR_TIMEOUT_SECONDS`` bounds every call (tests/inventory, tests/policyreports). The
fixtures ``silent`` and ``one_second`` are in tests/conftest.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

DEADLINE = 9.0  # seconds a run may take against the silent server with a 1 s timeout (a few tries, a backoff)


class SilentServer:
    """Accepts every TCP connection and never answers (a hung load balancer, a black-holed API server)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed at teardown
            self.accepted.append(conn)  # held open, never read from or written to

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()  # a client still waiting (a regression) sees the connection end instead of hanging on


def within(seconds: float, fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()``'s result and how long it took; fails the test (instead of hanging it) if it is still running."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test thread below
            out["error"] = exc

    started = time.monotonic()
    t = threading.Thread(target=target, name="collector-run", daemon=True)
    t.start()
    t.join(seconds)
    took = time.monotonic() - started
    assert not t.is_alive(), f"still running after {seconds:g} s: the call against the silent server hung"
    if "error" in out:
        raise out["error"]
    return out.get("result"), took
