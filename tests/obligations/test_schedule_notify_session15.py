"""Deadline reminders under failure: redirects, normalised URLs, non-ASCII mail, refusals and concurrent runs.

Webhooks go to a real HTTP server and mail to a real SMTP server (aiosmtpd) on 127.0.0.1; concurrent runs use
the PostgreSQL server at 127.0.0.1:5432.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlmodel import select

from agent import obligations as svc
from agent.store import session_scope
from agent.store.tables.audit import AuditEntry
from policies.packs import PackRegistry

TOKEN = "T0KEN-s3cr3t-in-the-path"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(status: int, location: str | None = None, delay: float = 0.0) -> tuple[HTTPServer, list[bytes]]:
    got: list[bytes] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers.get("content-length", "0"))))
            time.sleep(delay)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, got


@pytest.fixture()
def servers() -> Iterator[list[HTTPServer]]:
    started: list[HTTPServer] = []
    yield started
    for srv in started:
        srv.shutdown()
        srv.server_close()


def _incident(url: str, ref: str = "INC-1", description: str = "drive missing") -> None:
    with session_scope(url) as s:
        svc.add_event(s, "incident", ref, date(2025, 9, 10), description=description)


def _everything_recorded(url: str, out: dict[str, Any]) -> str:
    with session_scope(url) as s:
        audit = [e.payload for e in s.exec(select(AuditEntry)).all()]
        rows = svc.notifications(s)
    return json.dumps(out) + json.dumps(audit, default=str) + json.dumps(rows)


def test_a_webhook_redirect_is_a_failure_and_its_location_is_never_recorded_or_logged(
    db_url: str, packs: PackRegistry, servers: list[HTTPServer], caplog: pytest.LogCaptureFixture,
) -> None:
    srv, got = _serve(301, location=f"https://hooks.example.test/services/{TOKEN}")
    servers.append(srv)
    _incident(db_url)
    cfg = svc.NotifySettings(webhook_url=f"http://127.0.0.1:{srv.server_address[1]}/services/{TOKEN}")
    with session_scope(db_url) as s:
        out = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
    assert len(got) == 1 and out["sent"][0]["ok"] is False
    assert "301" in out["sent"][0]["error"] and "redirect" in out["sent"][0]["error"]
    assert TOKEN not in _everything_recorded(db_url, out) + caplog.text
    with session_scope(db_url) as s:  # never marked sent: the next run tries again
        again = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
    assert again["sent"][0]["count"] == 1 and len(got) == 2


def test_a_webhook_url_the_http_library_normalises_never_shows_its_token_on_a_server_error(
    db_url: str, packs: PackRegistry, servers: list[HTTPServer], caplog: pytest.LogCaptureFixture,
) -> None:
    srv, got = _serve(500)
    servers.append(srv)
    _incident(db_url)
    # httpx prints this URL as http://localhost:PORT/..., which is not the text configured.
    cfg = svc.NotifySettings(webhook_url=f"HTTP://LOCALHOST:{srv.server_address[1]}/services/{TOKEN}")
    with session_scope(db_url) as s:
        out = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
    assert len(got) == 1 and out["sent"][0]["ok"] is False and "500" in out["sent"][0]["error"]
    assert TOKEN not in _everything_recorded(db_url, out) + caplog.text


@pytest.fixture()
def smtp_server() -> Iterator[tuple[int, list[Any]]]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[Any] = []

    class Collect(Message):
        def handle_message(self, message: Any) -> None:
            got.append(message)

    port = _free_port()
    ctl = Controller(Collect(), hostname="127.0.0.1", port=port, auth_require_tls=False)
    ctl.start()
    yield port, got
    ctl.stop()


def test_a_non_ascii_smtp_login_is_recorded_as_a_failure_without_the_password(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[Any]], caplog: pytest.LogCaptureFixture,
) -> None:
    port, _ = smtp_server
    _incident(db_url)
    cfg = svc.NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_to="compliance@example.test",
                             smtp_user="jürgen", smtp_password="pässwörd-Ω")
    with session_scope(db_url) as s:
        out = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)  # was an uncaught UnicodeEncodeError
    assert out["sent"][0]["ok"] is False and "not ASCII" in out["sent"][0]["error"]
    recorded = _everything_recorded(db_url, out) + caplog.text
    assert "pässwörd" not in recorded and "\\xe4" not in recorded and "'ä'" not in recorded


def test_non_ascii_deadline_text_reaches_the_smtp_server_intact(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[Any]],
) -> None:
    port, got = smtp_server
    _incident(db_url, "INC-Zürich-✓", description="Laufwerk in Zürich verloren")
    cfg = svc.NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_to="compliance@example.test",
                             smtp_from="VEU Gövernor <veu@example.test>")
    with session_scope(db_url) as s:
        out = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
    assert out["sent"][0]["ok"], out
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    msg = got[0]
    body = msg.get_payload(decode=True).decode(msg.get_content_charset() or "utf-8")
    assert "INC-Zürich-✓" in body and msg["Subject"].startswith("[veu-governor]")


def test_an_smtp_server_refusing_connections_is_recorded_failed_and_retried(
    db_url: str, packs: PackRegistry,
) -> None:
    _incident(db_url)
    cfg = svc.NotifySettings(smtp_host="127.0.0.1", smtp_port=_free_port(), smtp_to="compliance@example.test")
    for _ in range(2):
        with session_scope(db_url) as s:
            out = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
        assert out["sent"][0]["ok"] is False and out["sent"][0]["count"] == 1
    with session_scope(db_url) as s:
        assert [n["ok"] for n in svc.notifications(s)] == [False]


def test_two_reminder_runs_at_once_on_postgresql_send_each_deadline_once(
    pg_url: str, packs: PackRegistry, servers: list[HTTPServer],
) -> None:
    srv, got = _serve(204, delay=0.5)  # slow enough that both runs are in flight together
    servers.append(srv)
    _incident(pg_url)
    cfg = svc.NotifySettings(webhook_url=f"http://127.0.0.1:{srv.server_address[1]}/hook")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait(5)
            with session_scope(pg_url) as s:
                svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(got) == 1, (errors, len(got))
    with session_scope(pg_url) as s:
        assert [(n["key"], n["ok"]) for n in svc.notifications(s)] == [("theft-loss:INC-1", True)]


def test_a_delivered_webhook_never_shows_its_token_in_the_servers_info_log(
    db_url: str, packs: PackRegistry, servers: list[HTTPServer], caplog: pytest.LogCaptureFixture,
) -> None:
    srv, got = _serve(204)
    servers.append(srv)
    _incident(db_url)
    caplog.set_level(logging.INFO)  # `veuctl serve` logs at INFO by default, httpx's request lines included
    cfg = svc.NotifySettings(webhook_url=f"http://127.0.0.1:{srv.server_address[1]}/services/{TOKEN}?k={TOKEN}")
    with session_scope(db_url) as s:
        out = svc.send_reminders(s, packs, date(2025, 9, 11), cfg)
    assert len(got) == 1 and out["sent"][0]["ok"]
    assert any(r.name == "httpx" for r in caplog.records)
    assert TOKEN not in caplog.text and TOKEN not in _everything_recorded(db_url, out)


def _notify_cli(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VEU_NOTIFY_")}
    full.update(VEU_DATABASE_URL=db_url, **env)
    return subprocess.run([sys.executable, "-m", "agent", "deadlines", "notify", *args, "--as-of", "2025-09-11"],
                          capture_output=True, text=True, env=full, timeout=60)


def test_cli_notify_exits_1_naming_the_channel_when_a_reminder_could_not_be_sent(db_url: str) -> None:
    _incident(db_url)
    r = _notify_cli(db_url, "--webhook-url", f"http://127.0.0.1:{_free_port()}/services/{TOKEN}", "--json")
    assert r.returncode == 1, (r.returncode, r.stderr)  # was 0: a cron job never noticed
    assert json.loads(r.stdout)["sent"][0]["ok"] is False
    assert "error: reminder via webhook to http://127.0.0.1:" in r.stderr and "ConnectError" in r.stderr
    assert TOKEN not in r.stdout + r.stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--smtp-host", "127.0.0.1", "--smtp-to", "a@example.test", "--smtp-port", "99999"), {},
     "error: --smtp-port: 99999 is not a TCP port (1-65535)"),
    (("--webhook-url", "http://127.0.0.1:9/x"), {"VEU_NOTIFY_SMTP_PORT": "abc"},
     "error: VEU_NOTIFY_SMTP_PORT: Input should be a valid integer"),
])
def test_cli_notify_refuses_a_bad_port_in_one_line_before_recording_anything(
    db_url: str, args: tuple[str, ...], env: dict[str, str], message: str,
) -> None:
    _incident(db_url)
    r = _notify_cli(db_url, *args, **env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().startswith(message) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    with session_scope(db_url) as s:
        assert svc.notifications(s) == []
