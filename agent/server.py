"""Serve the API, dashboard and admission webhook under uvicorn with TLS, reloading the certificate on change.

Certificates are the second most common webhook outage (anchors.md §2.3-2.4): cert-manager or a rotator
rewrites the mounted Secret files, and a server that loaded them once keeps presenting the old, expiring
leaf. ``run_server`` watches the cert and key files (and the client CA of ``--client-ca``) and loads the new
pair into the live ``SSLContext``; new TLS handshakes use it at once, with no restart and no dropped
connections. A pair that does not load (half-written during rotation) is logged and retried on the next poll,
the old pair staying in use.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import ssl
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import uvicorn

from agent.files import Stamp, file_stamp

log = logging.getLogger("veu.server")


# An encrypted key is refused (never a passphrase prompt from the reloader's thread).
_NO_PASSWORD = b""


@contextmanager
def _pem_path(data: bytes) -> Iterator[str]:
    """A path that reads as ``data``: an anonymous in-memory file on Linux (no copy of a key on disk), else a
    private temporary file removed on exit. ``load_cert_chain`` takes paths only."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("veu-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="veu-tls-") as d:  # 0700
        p = Path(d) / "pem"
        p.write_bytes(data)
        yield str(p)


class CertReloader:
    """Polls ``cert``/``key`` (and ``client_ca``) by mtime, size and inode and reloads them when they change.

    Without a client CA the new pair is loaded into the live ``ctx``. A client CA cannot be reloaded that way:
    OpenSSL adds certificates to a context's trust store but never removes one, so a retired CA would stay
    trusted. With ``client_ca`` every change builds a whole new server context (pair, CA, client certificates
    required), and the live context's SNI callback, which OpenSSL runs on every ClientHello, with or without a
    server name, hands each new handshake to the newest one."""

    def __init__(self, ctx: ssl.SSLContext, cert: str, key: str, interval: float = 2.0,
                 client_ca: str | None = None) -> None:
        self.ctx, self.cert, self.key, self.interval = ctx, cert, key, interval
        self.client_ca = client_ca
        self._serving: ssl.SSLContext | None = None
        self._ca_pem: bytes | None = None  # the last client CA bundle that loaded
        if client_ca is not None:
            ctx.sni_callback = self._hand_over
            self._ca_pem = self._read_ca(quiet=True)
        self._stamp = self._stat()
        self._stop = threading.Event()
        self.reloads = 0
        self._thread = threading.Thread(target=self._run, name="cert-reloader", daemon=True)

    def _hand_over(self, conn: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext) -> None:
        serving = self._serving
        if serving is not None:
            conn.context = serving

    def _stat(self) -> tuple[Stamp | None, ...]:
        return tuple(file_stamp(p) for p in (self.cert, self.key, *([self.client_ca] if self.client_ca else [])))

    def _read_ca(self, quiet: bool = False) -> bytes | None:
        """The client CA bundle's bytes if they load as PEM CA certificates (as at start: any text around them,
        comments in any script, is allowed), else None, logged."""
        assert self.client_ca is not None
        try:
            pem = Path(self.client_ca).read_bytes()
            with _pem_path(pem) as path:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=path)
            return pem
        except (OSError, ssl.SSLError, ValueError) as exc:
            if not quiet:
                log.warning("client CA %s changed but does not load as PEM CA certificates yet (%s); keeping the "
                            "previous one and retrying every %g s", self.client_ca,
                            getattr(exc, "reason", None) or exc, self.interval)
            return None

    def check(self) -> bool:
        """Reload if the files changed; True when a new pair or client CA was loaded.

        The pair is read once and loaded into a scratch context first: only a certificate and key that load
        together reach the live context. Loading straight into it replaced the certificate even when the key
        then failed (the rotator had written the certificate but not yet the key, or a wrong key), and OpenSSL
        drops a key that does not match the new certificate, so every new handshake failed. A client CA that
        does not load keeps the previous one, and does not hold back a new pair."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        try:
            cert_pem, key_pem = Path(self.cert).read_bytes(), Path(self.key).read_bytes()
            with _pem_path(cert_pem) as cert_path, _pem_path(key_pem) as key_path:
                scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                scratch.load_cert_chain(cert_path, key_path, password=_NO_PASSWORD)
                if self.client_ca is None:
                    self.ctx.load_cert_chain(cert_path, key_path, password=_NO_PASSWORD)
        except (OSError, ssl.SSLError) as exc:
            log.warning("TLS certificate %s or key %s changed but the pair does not load yet (%s); keeping the "
                        "previous one and retrying every %g s", self.cert, self.key,
                        getattr(exc, "reason", None) or exc, self.interval)
            return False
        what = "TLS certificate"
        if self.client_ca is not None:
            ca_pem = self._read_ca() if stamp[2] != self._stamp[2] else self._ca_pem
            pair_changed = stamp[:2] != self._stamp[:2]
            if ca_pem is None and not (pair_changed and self._ca_pem is not None):
                return False
            trusted = ca_pem if ca_pem is not None else self._ca_pem
            assert trusted is not None
            with _pem_path(trusted) as path:
                scratch.load_verify_locations(cafile=path)
            scratch.verify_mode = ssl.CERT_REQUIRED
            refuse_resumption(scratch)
            self._serving = scratch
            if ca_pem is None:  # the pair is new, the CA is retried on the next poll
                stamp = (*stamp[:2], self._stamp[2])
            else:
                self._ca_pem = ca_pem
                what = "TLS certificate and client CA" if pair_changed else "client CA"
        self._stamp = stamp
        self.reloads += 1
        log.info("%s reloaded (%s)", what, self.client_ca if what == "client CA" else self.cert)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def start(self) -> CertReloader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


# How long an idle client connection is kept open. The API server re-uses its connections to a webhook;
# closing them after uvicorn's default 5 s would put a TLS handshake in front of the next review.
KEEP_ALIVE_SECONDS = 30


# The largest request line plus headers the server reads before refusing the request (400 and a closed connection).
# uvicorn's httptools protocol reads a head of any size (a 16 MiB header was read whole and answered); the served
# port uses BoundedHttpToolsProtocol, which counts it. Heads the callers send are a few KiB: the API server's review,
# a bearer token or an OIDC JWT, a dashboard cookie; ingress controllers' own defaults are smaller.
MAX_REQUEST_HEAD_BYTES = 64 * 1024


# Slow clients (slowloris, slow POST). uvicorn's httptools protocol times out only a kept-alive connection idle after
# a response: a connection that sent nothing, a head trickled in a byte at a time and a body that stalls or drips were
# each held (with a file descriptor, and for a body the request's task) for as long as the client liked. The served
# protocol gives a request head HEADER_TIMEOUT_SECONDS (``veuctl serve --header-timeout``), counted from the
# connection or from the first byte after a response, and answers a late one with a 408 and a closed connection; an
# unfinished body must bring MIN_BODY_BYTES_PER_SECOND over each BODY_TIMEOUT_SECONDS window (``--body-timeout``)
# or the connection is closed (a 408 when no response has begun). The API server gives a webhook 10 s by default and
# 30 s at most, so a head or body slower than that serves nobody. The TLS handshake, before any of this, is bounded
# by the event loop's own timeout (60 s). Cost on the hot path: a clock read per request and a counter per body
# read; a connection's one timer is re-armed about once per timeout, not per request (see _bounded_protocol).
HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 10.0
MIN_BODY_BYTES_PER_SECOND = 500  # Apache mod_reqtimeout's MinRate; the API server sends a review in one go


# A client certificate refused by ``--client-name`` is logged by its CN at most once per CLIENT_NAME_LOG_SECONDS; the
# refusals in between are counted into the next line for that CN. Any holder of a certificate from the client CA
# (every kubelet's, on a cluster CA) can reconnect in a loop, and a line per connection let it fill the log and the
# disk. At most CLIENT_NAME_LOG_MAX_NAMES CNs are remembered at once; further CNs share one line per window. A count
# no line reported within a window after its window ended (the refusals stopped) is logged on a line of its own
# then, and what is still counted when the server stops is logged at shutdown.
CLIENT_NAME_LOG_SECONDS = 60.0
CLIENT_NAME_LOG_MAX_NAMES = 1024


class Refusal(NamedTuple):
    """What a refusal's log line adds: how many refusals of its name were not logged since that name's last line,
    how many of other names not remembered (past ``max_names``, or forgotten) were not logged since any line said
    so, and whether the name is remembered (else the line also stands for other names, for one window)."""

    since: int
    others: int
    remembered: bool


class Unlogged(NamedTuple):
    """Refusals no line reported, logged by :meth:`RefusalLog.flush`: of the name ``name``, or of names not
    remembered (``name`` None)."""

    name: str | None
    refused: int


@dataclass(slots=True)
class _Window:
    began: float
    unlogged: int = 0


class RefusalLog:
    """Which refusals to log: the first of each name in a window, then none of that name until the window passes,
    each counted into the name's next line.

    Thread-safe, O(1) a call, and bounded: at most ``max_names`` names, kept in the order their windows began, so
    when it is full a name whose window passed is forgotten from the front to make room (its count goes to
    ``others``). When all of them are within their window, a further name is not remembered: names past the limit
    share one line per window."""

    def __init__(self, window: float, max_names: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.max_names, self._clock = window, max(1, max_names), clock
        self._seen: OrderedDict[str, _Window] = OrderedDict()
        self._others = 0  # refusals not logged that no remembered name will report
        self._others_began: float | None = None  # the window of the last line for names past the limit
        self._others_at: float | None = None  # when the oldest refusal counted in _others was
        self._lock = threading.Lock()

    def note(self, name: str) -> Refusal | None:
        """None when this refusal of ``name`` is not to be logged (it is counted), else what its line adds."""
        with self._lock:
            now = self._clock()
            seen = self._seen.get(name)
            if seen is not None:
                if now - seen.began < self.window:
                    seen.unlogged += 1
                    return None
                since, seen.began, seen.unlogged = seen.unlogged, now, 0
                self._seen.move_to_end(name)
                return self._line(since, True)
            if len(self._seen) >= self.max_names:
                oldest = next(iter(self._seen.values()))
                if now - oldest.began < self.window:
                    if self._others_began is not None and now - self._others_began < self.window:
                        self._add_others(1, now)
                        return None
                    self._others_began = now
                    return self._line(0, False)
                self._seen.popitem(last=False)
                self._add_others(oldest.unlogged, now)
            self._seen[name] = _Window(now)
            return self._line(0, True)

    def _add_others(self, count: int, now: float) -> None:
        if count and not self._others:
            self._others_at = now
        self._others += count

    def _line(self, since: int, remembered: bool) -> Refusal:
        others, self._others, self._others_at = self._others, 0, None
        return Refusal(since, others, remembered)

    def now(self) -> float:
        return self._clock()

    def next_due(self) -> float | None:
        """When (on the clock) :meth:`flush` next has a count to log, None when nothing is counted.

        A count is due a window after its name's window ended: until then the name's next refusal, logged, reports
        it (so a name refused steadily still gets one line a window, not two); past that the refusals stopped.
        O(names), called at most once per flush timer."""
        with self._lock:
            due = [w.began + 2 * self.window for w in self._seen.values() if w.unlogged]
            if self._others and self._others_at is not None:
                due.append(self._others_at + 2 * self.window)
            return min(due, default=None)

    def flush(self, final: bool = False) -> list[Unlogged]:
        """The counts now due (:meth:`next_due`), or all of them when ``final`` (the server stops), each taken off:
        what the refusals no line reported were, to be logged. Names whose window passed long ago are forgotten
        (their next refusal is logged as a new name's, as it would have been)."""
        with self._lock:
            now, out = self._clock(), []
            while self._seen:
                name, w = next(iter(self._seen.items()))
                if now - w.began < 2 * self.window:
                    break
                del self._seen[name]
                if w.unlogged:
                    out.append(Unlogged(name, w.unlogged))
            if final:
                for name, w in self._seen.items():
                    if w.unlogged:
                        out.append(Unlogged(name, w.unlogged))
                        w.unlogged = 0
            if self._others and (final or (self._others_at is not None
                                           and now - self._others_at >= 2 * self.window)):
                out.append(Unlogged(None, self._others))
                self._others, self._others_at = 0, None
            return out

    def remembered(self) -> int:
        with self._lock:
            return len(self._seen)


class _HeadTooLarge(Exception):
    """Raised from a parser callback: httptools turns it into an HttpParserError, which uvicorn answers with a 400."""


def _refusal_counts(said: Refusal, refusals: RefusalLog) -> str:
    """The end of a refused certificate's log line: what was not logged, and until when the next are not."""
    parts, window = [], refusals.window
    if said.since:
        parts.append(f"{said.since} more connections with this CN were refused and not logged since its last line")
    if said.others:
        parts.append(f"{said.others} refusals of other CNs were not logged")
    if not said.remembered:
        parts.append(f"more than {refusals.max_names} CNs were refused within {window:g} s: other CNs' "
                     "refusals are not logged for that long")
    else:
        parts.append(f"this CN's refusals are not logged again for {window:g} s")
    return "; " + "; ".join(parts)


def log_unlogged(refusals: RefusalLog, final: bool = False) -> None:
    """Log the refusals of client certificates that no line reported (:meth:`RefusalLog.flush`): a burst that
    stopped, or (``final``) whatever is counted when the server stops."""
    for name, refused in refusals.flush(final):
        who = f"with a client certificate of CN {name}" if name is not None else "of other CNs"
        log.warning("%d more connections %s were refused (none of the names of --client-name) and not logged "
                    "since the last line%s", refused, who, " (the server is stopping)" if final else "")


def flush_refusal_log(config: uvicorn.Config, final: bool = True) -> None:
    """Log what the served port's refusal log counted and did not log yet (at shutdown: ``final``)."""
    refusals = getattr(config.http_protocol_class, "refusals", None) if config.loaded else None
    if isinstance(refusals, RefusalLog):
        log_unlogged(refusals, final)


def client_cert_names(peercert: dict[str, object] | None) -> tuple[list[str], list[str]]:
    """The Subject CNs and the DNS and URI SANs of a peer certificate as ``SSLObject.getpeercert()`` decodes it."""
    cns: list[str] = []
    sans: list[str] = []
    if not peercert:
        return cns, sans
    for rdn in peercert.get("subject", ()):  # type: ignore[attr-defined]
        cns.extend(str(value) for key, value in rdn if key == "commonName")
    for kind, value in peercert.get("subjectAltName", ()):  # type: ignore[attr-defined]
        if kind in ("DNS", "URI"):
            sans.append(str(value))
    return cns, sans


def _bounded_protocol(header_timeout: float = HEADER_TIMEOUT_SECONDS,
                      body_timeout: float = BODY_TIMEOUT_SECONDS,
                      client_names: Collection[str] = ()) -> type:
    """uvicorn's httptools protocol with the request head bounded (:data:`MAX_REQUEST_HEAD_BYTES`) and slow clients
    timed out (:data:`HEADER_TIMEOUT_SECONDS`, :data:`BODY_TIMEOUT_SECONDS`); with ``client_names``
    (``--client-name``) a connection whose client certificate has none of those names is closed unread.

    Not h11, which bounds it too: h11 parses in Python, and the webhook's reviews per second are what the admission
    path is measured by (bench/bench_webhook.py). The URL and each header are counted as the parser completes them,
    and a read that lies wholly inside an unfinished head counts whole, so a head that never ends is refused once
    the bytes read for it pass the limit (by at most one read); so is a chunked body's trailer that never ends.
    A body is never counted.

    Each connection has at most one timer, re-armed lazily: a head's deadline is set when it begins (or when the
    connection is made, or blank lines arrive between requests), and a timer already due earlier is left to fire
    and move itself on. A timer is a libuv handle (~8 us to create and cancel under uvloop, as much as uvicorn's own
    keep-alive timer); a deadline is a ``loop.time()`` (~0.2 us), so a busy connection creates a timer about once
    per timeout, not per request. When it fires past a head's deadline the head is late: a 408. During a body it
    checks the body's progress and moves on by ``body_timeout``; the first check only takes the mark, and time that
    is the server's own (reading paused while the app has not taken the body, a pipelined request waiting behind an
    earlier response, a ``100-continue`` not yet sent, a response being produced) never counts against the
    client."""
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    min_body_bytes = max(1, int(MIN_BODY_BYTES_PER_SECOND * body_timeout))
    pinned = frozenset(client_names)
    refusals = RefusalLog(CLIENT_NAME_LOG_SECONDS, CLIENT_NAME_LOG_MAX_NAMES)
    flush_timer: list[asyncio.TimerHandle] = []  # the one timer (on the server's loop) that logs counts left over

    def arm_flush(loop: asyncio.AbstractEventLoop) -> None:
        """Have counted refusals logged when due, even if no connection comes after them."""
        if flush_timer:
            return
        due = refusals.next_due()
        if due is not None:
            flush_timer.append(loop.call_later(max(0.0, due - refusals.now()), flush_due, loop))

    def flush_due(loop: asyncio.AbstractEventLoop) -> None:
        flush_timer.clear()
        log_unlogged(refusals)
        arm_flush(loop)

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        refusals: RefusalLog  # the served port's (set below): flushed at shutdown by run_server
        _in_head = False  # a request's head has begun and not ended
        _boundary = False  # a request began, or its head or the request ended, during the current read
        _read = 0  # bytes of reads that the current head spanned whole (begun before, not ended after)
        _parsed = 0  # the current head's URL and headers (and a chunked body's trailers), as parsed
        _open = False  # a request has begun and not ended
        _body = False  # body bytes arrived during the current read
        _timer: asyncio.TimerHandle | None = None
        _timer_at = 0.0  # loop time the timer fires at
        _due: float | None = None  # loop time a head awaited or begun must be complete by
        _got = 0  # body bytes of the current request
        _mark = -1  # _got at the body's last progress check; -1 before its first

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if pinned and not self._client_named(transport):
                return
            # A connection that never sends a byte is a head that never completes.
            self._await_head(self.loop.time() + header_timeout)

        def _client_named(self, transport: asyncio.BaseTransport) -> bool:
            """Whether the client certificate bears one of ``--client-name``, else the connection is aborted.

            The CA check alone admits every certificate the CA signed (a cluster CA signs each kubelet's). Python
            has no verify callback, so the name is checked here: the transport reaches the protocol only once the
            handshake (and the CA check) completed, once per connection, before any byte of a request is read.
            Aborting leaves the client as a refused CA does under TLS 1.3: a closed connection, no HTTP answer."""
            ssl_object = transport.get_extra_info("ssl_object")
            peercert = ssl_object.getpeercert() if ssl_object is not None else None
            cns, sans = client_cert_names(peercert)
            if any(name in pinned for name in (*cns, *sans)):
                return True
            # At most a few CNs of 256 characters each: a certificate is the client's to fill.
            shown = ", ".join(repr(cn[:256]) for cn in cns[:4]) + (f" and {len(cns) - 4} more" if len(cns) > 4 else "")
            said = refusals.note(shown)
            if said is not None:
                log.warning("closing a connection from %s: its client certificate (CN %s) has none of the names of "
                            "--client-name (%s) as its CN or a DNS/URI SAN%s", self.client, shown or "none",
                            ", ".join(sorted(pinned)), _refusal_counts(said, refusals))
            else:
                arm_flush(self.loop)
            transport.abort()  # type: ignore[attr-defined]
            return False

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            was_in_head, was_open = self._in_head, self._open
            self._boundary = self._body = False
            super().data_received(data)
            if not self._open and self._due is None and self.timeout_keep_alive_task is None and (
                    self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
                # Bytes between requests that began none (blank lines, which the parser skips): uvicorn cancelled
                # the keep-alive timer on them and arms it again only after a response, so they held the
                # connection open for good. The next head is due within the head timeout.
                self._await_head(self.loop.time() + header_timeout)
            # Only a read that lay wholly inside an unfinished head counts: one that also held a head's end, a
            # body or the next request's start is counted by _parsed (a review of 200 KiB in one read is a body).
            # So does a read inside an open request that carried no body byte: a chunked body's trailer field (or
            # chunk extension) that never ends, which httptools would otherwise buffer without bound.
            if was_open and not self._boundary and not self._body and not self.transport.is_closing() and (
                    was_in_head == self._in_head):
                self._read += len(data)
                if self._read > MAX_REQUEST_HEAD_BYTES:
                    self.send_400_response("Invalid HTTP request received.")

        def on_message_begin(self) -> None:
            self._in_head, self._open, self._boundary, self._read, self._parsed = True, True, True, 0, 0
            self._got, self._mark = 0, -1
            if self._due is None:  # else the head's clock started with the connection or its first blank line
                self._await_head(self.loop.time() + header_timeout)
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head, self._boundary, self._read, self._due = False, True, 0, None
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._body, self._read = True, 0
            self._got += len(body)
            super().on_body(body)

        def on_message_complete(self) -> None:
            self._open, self._boundary = False, True
            # The timer stays: it finds nothing to time when it fires, or the next head's deadline.
            super().on_message_complete()

        def _await_head(self, due: float) -> None:
            self._due = due
            if self._timer is None or self._timer_at > due:
                self._arm_at(due)

        def _arm_at(self, when: float) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self.loop.call_at(when, self._timed_out), when

        def _timed_out(self) -> None:
            self._timer = None
            if self.transport is None or self.transport.is_closing() or self.transport.get_protocol() is not self:
                return  # closed, or handed to a WebSocket protocol
            now, cycle = self.loop.time(), self.cycle
            if self._due is not None:  # a head awaited or begun
                if now < self._due - 0.005:  # the loop's clock is in milliseconds
                    self._arm_at(self._due)
                # self.cycle is still the previous request's: a response being produced is the server's time.
                elif cycle is not None and not cycle.response_complete:
                    self._await_head(now + header_timeout)
                elif self._in_head:
                    log.debug("closing a connection from %s: request head not complete within %g s",
                              self.client, header_timeout)
                    self._refuse(f"Request timeout: the request line and headers did not arrive within "
                                 f"{header_timeout:g} s.")
                else:
                    self.transport.close()
                return
            if not self._open or cycle is None:
                return  # between requests: uvicorn's keep-alive timer
            if self.flow.read_paused or self.pipeline or cycle.waiting_for_100_continue:
                self._mark = -1  # not reading, or nothing asked for yet: the client is not the one stalling
            elif self._mark < 0 or self._got - self._mark >= min_body_bytes:
                self._mark = self._got
            else:
                log.debug("closing a connection from %s: request body stalled (%d bytes in %g s)", self.client,
                          self._got - self._mark, body_timeout)
                if cycle.response_started:
                    self.transport.close()
                else:
                    self._refuse(f"Request timeout: the request body stalled (under {MIN_BODY_BYTES_PER_SECOND} "
                                 f"bytes a second over {body_timeout:g} s).")
                cycle.disconnected = True  # the app's receive() sees a disconnect, and its answer is not written
                cycle.message_event.set()
                return
            self._arm_at(now + body_timeout)

        def _refuse(self, msg: str) -> None:
            """A 408 with ``msg`` and a closed connection (as uvicorn's own 400)."""
            content = [STATUS_LINE[408]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            data = msg.encode("ascii")
            content.extend([b"content-type: text/plain; charset=utf-8\r\n",
                            b"content-length: " + str(len(data)).encode("ascii") + b"\r\n",
                            b"connection: close\r\n", b"\r\n", data])
            self.transport.write(b"".join(content))
            self.transport.close()

        def _count(self, n: int) -> None:
            self._parsed += n
            if self._parsed > MAX_REQUEST_HEAD_BYTES:
                raise _HeadTooLarge

    BoundedHttpToolsProtocol.refusals = refusals
    return BoundedHttpToolsProtocol


# uvicorn's --log-level names (it registers TRACE with the logging module).
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _readable(option: str, path: str) -> None:
    from policies.errors import PolicyError

    f = Path(path)
    if not f.exists():
        raise PolicyError(f"{option}: {path}: no such file")
    if not f.is_file():
        raise PolicyError(f"{option}: {path}: not a file")
    if not os.access(f, os.R_OK):
        raise PolicyError(f"{option}: {path}: cannot read it (permission denied)")


def check_options(tls_cert: str | None, tls_key: str | None, client_ca: str | None = None,
                  log_level: str = "info", *, header_timeout: float = HEADER_TIMEOUT_SECONDS,
                  body_timeout: float = BODY_TIMEOUT_SECONDS, client_names: Collection[str] = ()) -> None:
    """Refuse bad ``veuctl serve`` options, naming the option, before anything else runs: no store is opened or
    migrated and no log line written for a server that cannot start (a PEM pair that does not load, too)."""
    from policies.errors import PolicyError

    for option, seconds in (("--header-timeout", header_timeout), ("--body-timeout", body_timeout)):
        if not (isinstance(seconds, int | float) and math.isfinite(seconds) and seconds > 0):
            raise PolicyError(f"{option}: {seconds!r} is not a number of seconds above 0; give e.g. 10")
    if log_level.lower() not in LOG_LEVELS:
        raise PolicyError(f"--log-level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if bool(tls_cert) != bool(tls_key):
        given, missing = ("--tls-cert", "--tls-key") if tls_cert else ("--tls-key", "--tls-cert")
        raise PolicyError(f"{missing}: required with {given}; give both files, or neither for plain HTTP")
    if client_ca is not None and not tls_cert:
        raise PolicyError("--client-ca: requires --tls-cert/--tls-key (client certificates need TLS)")
    for name in client_names:
        if not name.strip() or name != name.strip():
            raise PolicyError(f"--client-name: {name!r} is blank or has spaces around it; give the Subject CN or a "
                              f"DNS/URI SAN of the API server's webhook client certificate, e.g. "
                              f"kube-apiserver-webhook-client")
    if client_names and client_ca is None:
        raise PolicyError("--client-name: requires --client-ca (the names are checked on client certificates that "
                          "CA signed)")
    if tls_cert and tls_key:
        _readable("--tls-cert", tls_cert)
        _readable("--tls-key", tls_key)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tls_cert, tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise PolicyError(f"--tls-cert/--tls-key: {tls_cert} and {tls_key} do not load as a PEM certificate "
                              f"and its private key ({getattr(exc, 'reason', None) or exc})") from None
    if client_ca is not None:
        _readable("--client-ca", client_ca)
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=client_ca)
        except (ssl.SSLError, OSError) as exc:
            raise PolicyError(f"--client-ca: {client_ca} does not load as PEM CA certificates "
                              f"({getattr(exc, 'reason', None) or exc})") from None


def build_config(host: str, port: int, tls_cert: str | None, tls_key: str | None, database_url: str | None,
                 log_level: str = "info", *, webhook_only: bool = False,
                 client_ca: str | None = None, webhook: bool = True,
                 header_timeout: float = HEADER_TIMEOUT_SECONDS,
                 body_timeout: float = BODY_TIMEOUT_SECONDS, client_names: Collection[str] = ()) -> uvicorn.Config:
    # before the app (and its store) exists
    check_options(tls_cert, tls_key, client_ca, log_level, header_timeout=header_timeout, body_timeout=body_timeout,
                  client_names=client_names)
    from agent.api.app import create_app, create_webhook_app

    app = create_webhook_app(database_url) if webhook_only else create_app(database_url, webhook=webhook)
    tls_extra: dict[str, object] = {}
    if client_ca:
        # Only the kube-apiserver (configured with a client certificate from this CA) may call.
        tls_extra = {"ssl_ca_certs": client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    config = uvicorn.Config(
        app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
        log_level=log_level, access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS,
        http=_bounded_protocol(header_timeout, body_timeout, client_names), **tls_extra,  # type: ignore[arg-type]
    )
    config.load()
    if client_ca and config.ssl is not None:
        refuse_resumption(config.ssl)
    return config


def refuse_resumption(ctx: ssl.SSLContext) -> None:
    """No TLS session resumption where client certificates are checked: a resumed session skips the check, so a
    client whose CA was retired from the bundle got back in for as long as its session lived (two hours in
    OpenSSL). TLS 1.3 without session tickets resumes nothing; TLS 1.2 would still resume from the server's
    session cache, which Python cannot turn off, so TLS 1.2 is refused (the kube-apiserver speaks TLS 1.3)."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.num_tickets = 0
    ctx.options |= ssl.OP_NO_TICKET


def configure_logging(level: str) -> None:
    """Send the product's own loggers (``veu.*``) to stderr at ``level``, as uvicorn's are: uvicorn's
    ``log_level`` configures only its own loggers, so the webhook's and API's records were dropped below
    WARNING whatever ``--log-level`` said."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s")
    root.setLevel(level.upper())


def run_server(host: str, port: int, tls_cert: str | None, tls_key: str | None, database_url: str | None,
               *, reload_interval: float = 2.0, log_level: str = "info", webhook_only: bool = False,
               client_ca: str | None = None, webhook: bool = True, metrics_port: int | None = None,
               header_timeout: float = HEADER_TIMEOUT_SECONDS, body_timeout: float = BODY_TIMEOUT_SECONDS,
               client_names: Collection[str] = ()) -> None:
    """Run until interrupted; with TLS, cert/key/client-CA changes are picked up every ``reload_interval`` seconds."""
    configure_logging(log_level)
    config = build_config(host, port, tls_cert, tls_key, database_url, log_level, webhook_only=webhook_only,
                          client_ca=client_ca, webhook=webhook, header_timeout=header_timeout,
                          body_timeout=body_timeout, client_names=client_names)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=host)
    server = uvicorn.Server(config)
    reloader = None
    if config.ssl is not None and tls_cert and tls_key:
        reloader = CertReloader(config.ssl, tls_cert, tls_key, reload_interval, client_ca=client_ca).start()
    try:
        server.run()
    finally:
        if reloader is not None:
            reloader.stop()
        flush_refusal_log(config)  # the refusals counted since their CN's last line: the timer will not fire now
