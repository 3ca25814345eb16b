"""Slow clients (slowloris, slow POST) are timed out on the served port, over plain HTTP and TLS.

uvicorn's httptools protocol times out only a kept-alive connection idle after a response: a connection that sent
nothing, a request head trickling in a byte at a time, and a body that stalls or drips were each held for as long as
the client liked (with its file descriptor and, for a body, the request's task), on the webhook's port too. The
served protocol (``agent.server._bounded_protocol``) gives a request head ``--header-timeout`` seconds from the
connection (or from its first byte after a response) and closes it with a 408; a body must bring
``MIN_BODY_BYTES_PER_SECOND`` over each ``--body-timeout`` window or the connection is closed (408 when no response
has begun). Ordinary requests, kept-alive connections and pipelined requests are unaffected."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from agent.server import (
    BODY_TIMEOUT_SECONDS,
    HEADER_TIMEOUT_SECONDS,
    MIN_BODY_BYTES_PER_SECOND,
    build_config,
    check_options,
)
from policies.errors import PolicyError
from tests.webhook.tlsutil import CA, free_port

HEADER_T = 1.0
BODY_T = 1.0


class Served:
    def __init__(self, port: int, ctx: ssl.SSLContext | None) -> None:
        self.port, self.ctx = port, ctx

    def connect(self, timeout: float = 10) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.ctx is not None:
            s = self.ctx.wrap_socket(s, server_hostname="127.0.0.1")
        return s


@pytest.fixture(params=["http", "https"])
def scheme(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["combined", "webhook-only"])
def served(request: pytest.FixtureRequest, scheme: str, db_url: str, tmp_path: Path) -> Iterator[Served]:
    cert = key = None
    ctx = None
    if scheme == "https":
        ca = CA()
        cert, key = str(tmp_path / "tls.crt"), str(tmp_path / "tls.key")
        ca.issue(Path(cert), Path(key))
        ctx = ssl.create_default_context(cafile=str(ca.write_ca(tmp_path / "ca.crt")))
    p = free_port()
    config = build_config("127.0.0.1", p, cert, key, db_url, log_level="critical", webhook_only=request.param,
                          header_timeout=HEADER_T, body_timeout=BODY_T)
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "server did not start"
        time.sleep(0.02)
    yield Served(p, ctx)
    server.should_exit = True
    t.join(10)


def _read_until_closed(s: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that was (monotonic)."""
    out = b""
    s.settimeout(limit)
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, ssl.SSLError):
        pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {limit} s; got {out[:200]!r}") from None
    return out, time.monotonic()


def _review() -> bytes:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-slow", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "default",
        "operation": "CREATE", "userInfo": {"username": "u"}, "object": pod, "dryRun": True}}).encode()


def _validate_head(length: int, close: bool = True) -> bytes:
    return (f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def _healthy(served: Served) -> None:
    with served.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out, _ = _read_until_closed(s, 10)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"ok"), out[:200]


def test_a_connection_that_sends_nothing_is_closed(served: Served) -> None:
    with served.connect() as s:
        t0 = time.monotonic()
        out, t1 = _read_until_closed(s, HEADER_T + 5)
    assert out == b"" and t1 - t0 >= HEADER_T - 0.2, (out, t1 - t0)
    _healthy(served)


def test_a_head_sent_a_byte_at_a_time_is_closed_with_a_408(served: Served) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: a\r\n" * 200 + b"\r\n"
    got = b""
    with served.connect() as s:
        t0 = time.monotonic()
        s.settimeout(0.1)
        for i in range(len(head)):  # one byte each 50 ms: every gap well inside any idle timeout
            try:
                s.sendall(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                chunk = None
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if chunk is not None:
                got += chunk
                if not chunk:
                    break
            assert time.monotonic() - t0 < HEADER_T + 5, "the trickled head was never timed out"
        elapsed = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b"connection: close" in got.lower() and b"header" in got.lower()
    assert HEADER_T - 0.2 <= elapsed < HEADER_T + 3, elapsed
    _healthy(served)


def test_blank_lines_between_requests_do_not_hold_a_kept_alive_connection(served: Served) -> None:
    """A CRLF before a request line is skipped by the parser and (in uvicorn) cancels the keep-alive timer."""
    with served.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        t0 = time.monotonic()
        closed = False
        s.settimeout(0.25)
        while time.monotonic() - t0 < HEADER_T + 5:
            try:
                s.sendall(b"\r\n")
                if s.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed = True
                break
    assert closed, "blank lines kept the connection open"


def test_a_body_that_stalls_is_closed_with_a_408(served: Served) -> None:
    body = _review()
    with served.connect() as s:
        s.sendall(_validate_head(len(body)) + body[:10])
        t0 = time.monotonic()
        out, t1 = _read_until_closed(s, HEADER_T + BODY_T + 5)
    assert out.startswith(b"HTTP/1.1 408"), out[:200]
    assert b"body" in out.lower()
    assert t1 - t0 < HEADER_T + BODY_T + 3
    _healthy(served)


def test_a_body_dripped_below_the_minimum_rate_is_closed(served: Served) -> None:
    """One byte every 100 ms is data in every window, but far below the minimum rate (a slow POST)."""
    body = _review()
    assert len(body) > 200
    got = b""
    with served.connect() as s:
        s.sendall(_validate_head(len(body)))
        t0 = time.monotonic()
        s.settimeout(0.1)
        for i in range(len(body)):
            try:
                s.sendall(body[i:i + 1])
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            got += chunk
            if not chunk:
                break
        elapsed = time.monotonic() - t0
    assert elapsed < HEADER_T + 2 * BODY_T + 3, elapsed
    assert got.startswith(b"HTTP/1.1 408"), got[:200]


def test_a_slow_but_steady_body_is_served(served: Served) -> None:
    """A body arriving in pieces over longer than the timeouts, each window above the minimum rate, is read."""
    body = _review()
    step = max(1, int(MIN_BODY_BYTES_PER_SECOND * 0.25 * 4))  # 4x the minimum rate, a piece every 250 ms
    with served.connect() as s:
        s.sendall(_validate_head(len(body) + 4000))
        padded = body + b" " * 4000  # JSON allows trailing whitespace
        for i in range(0, len(padded), step):
            s.sendall(padded[i:i + step])
            time.sleep(0.25)
        out, _ = _read_until_closed(s, 20)
    assert len(padded) / step * 0.25 > HEADER_T + BODY_T  # it did take longer than the timeouts
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    assert b'"uid":"u-slow"' in out


def test_a_kept_alive_connection_serves_requests_spaced_beyond_the_header_timeout(served: Served) -> None:
    """Idle between requests is the keep-alive's (30 s), not the head's: the API server's pooled connection
    stays usable; and a request whose head and body arrive together is not delayed."""
    body = _review()
    with served.connect() as s:
        s.settimeout(10)
        for i in range(2):
            if i:
                time.sleep(HEADER_T + BODY_T + 0.5)
            s.sendall(_validate_head(len(body), close=False) + body)
            out = b""
            while b'"uid":"u-slow"' not in out:
                chunk = s.recv(65536)
                assert chunk, out[:300]
                out += chunk
            assert out.startswith(b"HTTP/1.1 200"), out[:300]


def test_pipelined_requests_are_each_served(served: Served) -> None:
    one = _validate_head(len(_review()), close=False) + _review()
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with served.connect() as s:
        s.sendall(one * 5 + last)
        out, _ = _read_until_closed(s, 20)
    assert out.count(b"HTTP/1.1 200") == 6, out[:500]


def test_many_idle_connections_are_all_released(served: Served) -> None:
    """Connections (and descriptors) held by clients that never send are all closed."""
    socks = [served.connect() for _ in range(40)]
    try:
        deadline = time.monotonic() + HEADER_T + 6
        for s in socks:
            out, _ = _read_until_closed(s, max(0.1, deadline - time.monotonic()))
            assert out == b""
    finally:
        for s in socks:
            s.close()
    _healthy(served)


def test_defaults_are_bounded_and_within_the_webhook_timeout() -> None:
    """The API server gives a webhook at most 30 s (10 s by default): a head or a stalled body longer than that
    serves nobody."""
    assert 0 < HEADER_TIMEOUT_SECONDS <= 30 and 0 < BODY_TIMEOUT_SECONDS <= 30
    assert 0 < MIN_BODY_BYTES_PER_SECOND <= 1024


@pytest.mark.parametrize(("kw", "option"), [({"header_timeout": 0}, "--header-timeout"),
                                            ({"body_timeout": -1}, "--body-timeout"),
                                            ({"header_timeout": float("nan")}, "--header-timeout"),
                                            ({"body_timeout": float("inf")}, "--body-timeout")])
def test_a_timeout_that_is_not_a_positive_number_is_refused_naming_the_option(kw: dict[str, float],
                                                                               option: str) -> None:
    with pytest.raises(PolicyError) as e:
        check_options(None, None, **kw)
    assert str(e.value).startswith(option) and "seconds" in str(e.value)


def test_serve_takes_the_timeouts_with_the_documented_defaults() -> None:
    import inspect

    from agent.cli.serve import serve

    params = inspect.signature(serve).parameters
    assert params["header_timeout"].default.default == HEADER_TIMEOUT_SECONDS
    assert params["body_timeout"].default.default == BODY_TIMEOUT_SECONDS


@pytest.mark.parametrize(("args", "expected"), [
    (["--header-timeout", "0"], "error: --header-timeout: 0.0 is not a number of seconds above 0"),
    (["--body-timeout", "-5"], "error: --body-timeout: -5.0 is not a number of seconds above 0"),
])
def test_serve_refuses_a_bad_timeout_in_one_line_before_the_store(tmp_path: Path, args: list[str],
                                                                  expected: str) -> None:
    import os
    import subprocess
    import sys

    db = tmp_path / "store.db"
    env = {**os.environ, "VEU_DATABASE_URL": f"sqlite:///{db}", "VEU_AUTH": "none"}
    r = subprocess.run([sys.executable, "-m", "agent", "serve", "--host", "127.0.0.1", "--port", "18080", *args],
                       env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(expected) and r.stderr.count("\n") == 1, r.stderr
    assert not db.exists()


async def _slow_app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def,type-arg]
    """/slow answers after 2.5 s; /late-read reads its body only after 2.5 s; /early answers 401 without reading
    the body; anything else answers at once."""
    import asyncio

    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] in ("/slow", "/late-read"):
        await asyncio.sleep(2.5)
    if scope["path"] == "/early":
        await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    body = b""
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    text = b"%d" % len(body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(text))]})
    await send({"type": "http.response.body", "body": text})


@pytest.fixture()
def slow_app() -> Iterator[int]:
    from agent.server import _bounded_protocol

    p = free_port()
    config = uvicorn.Config(_slow_app, host="127.0.0.1", port=p, log_level="critical",
                            http=_bounded_protocol(HEADER_T, BODY_T))
    server = uvicorn.Server(config)
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and t.is_alive(), "server did not start"
        time.sleep(0.02)
    yield p
    server.should_exit = True
    t.join(10)


def test_a_pipelined_head_waiting_behind_a_slow_response_is_not_timed_out(slow_app: int) -> None:
    """The head's time while the server is still answering the request before it is the server's, not the client's."""
    with socket.create_connection(("127.0.0.1", slow_app), timeout=10) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n")
        time.sleep(2.7)  # the slow response is done; the second head is 2.7 s old
        s.sendall(b"Connection: close\r\n\r\n")
        out, _ = _read_until_closed(s, 10)
    assert out.count(b"HTTP/1.1 200") == 2, out


def test_a_body_the_app_has_not_read_yet_is_not_a_stall(slow_app: int) -> None:
    """Beyond 64 KiB uvicorn stops reading until the app takes the body: the client is not the one stalling."""
    body = b"b" * 300_000
    with socket.create_connection(("127.0.0.1", slow_app), timeout=10) as s:
        s.sendall(b"POST /late-read HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                  % len(body))
        s.sendall(body)
        out, _ = _read_until_closed(s, 15)
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"300000"), out[:200]


def test_a_body_stalled_after_the_response_began_is_closed_without_a_second_status(slow_app: int) -> None:
    """An app that answers before reading the body (as a refusal may): the rest of the body never comes, and the
    connection is closed without a 408 after the answer (not kept for the 30 s keep-alive)."""
    with socket.create_connection(("127.0.0.1", slow_app), timeout=10) as s:
        s.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
        t0 = time.monotonic()
        out, t1 = _read_until_closed(s, HEADER_T + BODY_T + 5)
    assert out.startswith(b"HTTP/1.1 401") and out.count(b"HTTP/1.1") == 1, out
    assert t1 - t0 < HEADER_T + BODY_T + 3
