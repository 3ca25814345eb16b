"""Request heads are bounded on the served port: uvicorn's default HTTP parser (httptools) buffers a request line and
headers of any size (a 16 MiB header was answered 200), so a few connections could hold the process's memory. The
server counts the head as httptools parses it: an oversized head is a 400 with a message and a closed connection, on
/validate, /api and the probes alike, and ordinary heads (a JWT, a session cookie) pass."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from agent.server import MAX_REQUEST_HEAD_BYTES, build_config
from tests.webhook.tlsutil import free_port


@pytest.fixture(params=[False, True], ids=["combined", "webhook-only"])
def port(request: pytest.FixtureRequest, db_url: str) -> Iterator[int]:
    p = free_port()
    config = build_config("127.0.0.1", p, None, None, db_url, log_level="critical", webhook_only=request.param)
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


def _send(port: int, head: bytes, body: bytes = b"") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused while still sending
            s.sendall(head + body)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            # The server closed with the rest of the head unread: the kernel resets the connection, and the
            # 400 sent before may be dropped with it. Either way the request was not served.
            return out or RESET
        return out


RESET = b"(connection reset)"


def _refused(out: bytes) -> bool:
    return out == RESET or (out.startswith(b"HTTP/1.1 400") and b"Invalid HTTP request" in out)


@pytest.mark.parametrize("path", ["/healthz", "/validate", "/api/v1/whoami"])
# A head is refused once the buffered part of it passes the limit; one that arrives whole in a single read (up to
# 256 KiB) may pass it by that much, so the sizes here are beyond that.
@pytest.mark.parametrize("size", [1024 * 1024, 16 * 1024 * 1024], ids=["1MiB", "16MiB"])
def test_an_oversized_header_is_refused_with_a_status_and_message(port: int, path: str, size: int) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Big: ".encode() + b"a" * size
    head += b"\r\nConnection: close\r\n\r\n"
    assert _refused(_send(port, head, b"{}"))
    # The server is still up and serves the next request.
    assert _send(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").endswith(b"ok")


def test_many_small_headers_adding_up_are_refused(port: int) -> None:
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100) for i in range(10_000))  # 1 MiB
    assert _refused(_send(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + fields + b"Connection: close\r\n\r\n"))


def test_an_oversized_request_line_is_refused(port: int) -> None:
    assert _refused(_send(port, b"GET /api/v1/models/" + b"a" * 1024 * 1024
                          + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))


def test_ordinary_large_heads_still_pass(port: int) -> None:
    """A long JWT and a full cookie jar (well under the limit) are served."""
    jwt_like = b"Bearer " + b"e" * 8000
    head = (b"GET /healthz HTTP/1.1\r\nHost: x\r\nAuthorization: " + jwt_like + b"\r\nCookie: " + b"c" * 8000
            + b"\r\nConnection: close\r\n\r\n")
    out = _send(port, head)
    assert out.startswith(b"HTTP/1.1 200"), out[:200]
    assert out.endswith(b"ok")


def test_the_limit_covers_what_real_callers_send() -> None:
    assert 32 * 1024 <= MAX_REQUEST_HEAD_BYTES <= 1024 * 1024


def _review(size: int) -> bytes:
    import json

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big", "namespace": "default",
                                                         "annotations": {"note": "n" * size}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-big", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "default",
        "operation": "CREATE", "userInfo": {"username": "u"}, "object": pod, "dryRun": True}}).encode()


@pytest.mark.parametrize("size", [100_000, 200_000, 1_000_000])
def test_a_review_body_larger_than_the_head_limit_sent_in_one_write_is_served(port: int, size: int) -> None:
    """An UPDATE's review carries object and oldObject (and last-applied annotations): bodies of hundreds of KiB
    arrive in the same read as their head, and are a body, not a head."""
    body = _review(size)
    head = (f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            "\r\nConnection: close\r\n\r\n").encode()
    out = _send(port, head, body)
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
    assert b'"uid":"u-big"' in out


def test_pipelined_requests_with_large_bodies_are_each_served(port: int) -> None:
    body = _review(150_000)
    one = (f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
           "\r\n\r\n").encode() + body
    last = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = _send(port, one + one + last)
    assert out.count(b"HTTP/1.1 200") == 3, out[:500]
    assert out.endswith(b"ok")


def test_a_chunked_body_trailer_that_never_ends_is_refused(port: int) -> None:
    """After the last chunk, trailer fields are head-like text that httptools buffers until they end: a trailer
    sent on and on, read after read, is refused like an oversized head (the body's own bytes never count)."""
    head = (b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: ")
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(head)
            for _ in range(32):  # 2 MiB of one trailer value, in separate writes
                s.sendall(b"t" * 65536)
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while still sending
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            out = out or RESET
    assert _refused(out), out[:200]


def test_a_slow_chunked_upload_is_not_refused(port: int) -> None:
    body = _review(1000)
    head = (b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        for i in range(0, len(body), 100):
            part = body[i:i + 100]
            s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 200"), out[:300]
