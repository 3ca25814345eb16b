"""SMTP reminder recipients: the target a reminder is recorded as sent to, whatever the list's spelling.

Mail goes to a real SMTP server (aiosmtpd) on 127.0.0.1; the store is SQLite.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlmodel import select

from agent import obligations as svc
from agent.store import session_scope
from agent.store.tables.obligations import ObligationNotification
from policies.errors import PolicyError
from policies.packs import PackRegistry

AS_OF = date(2025, 9, 11)  # the theft/loss notice of an incident on 2025-09-10 is due


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def smtp_server() -> Iterator[tuple[int, list[list[str]]]]:
    """A local SMTP server; yields its port and the envelope recipients of each message delivered."""
    from aiosmtpd.controller import Controller

    got: list[list[str]] = []

    class Collect:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(list(envelope.rcpt_tos))
            return "250 OK"

    port = _free_port()
    ctl = Controller(Collect(), hostname="127.0.0.1", port=port)
    ctl.start()
    yield port, got
    ctl.stop()


def _incident(url: str) -> None:
    with session_scope(url) as s:
        svc.add_event(s, "incident", "INC-1", date(2025, 9, 10), description="drive missing")


def _notify(url: str, packs: PackRegistry, port: int, smtp_to: str) -> dict[str, Any]:
    cfg = svc.NotifySettings(smtp_host="127.0.0.1", smtp_port=port, smtp_to=smtp_to)
    with session_scope(url) as s:
        return svc.send_reminders(s, packs, AS_OF, cfg)


def _delivered(got: list[list[str]], n: int) -> list[list[str]]:
    deadline = time.monotonic() + 5
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than n
    return got


def _rows(url: str) -> list[tuple[str, bool]]:
    with session_scope(url) as s:
        return [(r.target, r.ok) for r in s.exec(select(ObligationNotification)).all()]


def test_smtp_target_is_the_recipients_sorted_deduplicated_with_the_domain_lower_cased() -> None:
    assert svc.smtp_target(" b@Example.TEST ,a@example.test, A@example.test,a@EXAMPLE.test") == \
        "A@example.test,a@example.test,b@example.test"
    assert svc.smtp_target("compliance@example.test") == "compliance@example.test"  # as recorded before


@pytest.mark.parametrize("again", ["b@example.test,a@example.test", "a@EXAMPLE.test ,  b@example.TEST",
                                   "a@example.test, b@example.test, a@example.test"])
def test_reordered_respaced_or_domain_cased_recipients_are_not_sent_the_reminder_again(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[list[str]]], again: str,
) -> None:
    port, got = smtp_server
    _incident(db_url)
    first = _notify(db_url, packs, port, "a@example.test, b@example.test")
    assert first["sent"][0]["ok"] and first["sent"][0]["target"] == "a@example.test,b@example.test", first
    second = _notify(db_url, packs, port, again)
    assert second["sent"] == [], second  # was a second mail with every reminder
    assert len(_delivered(got, 1)) == 1


def test_each_recipient_is_sent_to_as_given(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[list[str]]],
) -> None:
    port, got = smtp_server
    _incident(db_url)
    out = _notify(db_url, packs, port, "Ops@Example.TEST , legal@example.test")
    assert out["sent"][0]["ok"], out
    assert _delivered(got, 1) == [["Ops@Example.TEST", "legal@example.test"]]


def test_a_single_address_recorded_before_the_upgrade_is_not_sent_again(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[list[str]]],
) -> None:
    port, got = smtp_server
    _incident(db_url)
    with session_scope(db_url) as s:  # a row as the previous release wrote it: the raw VEU_NOTIFY_SMTP_TO text
        s.add(ObligationNotification(key="theft-loss:INC-1", status="due", channel="smtp",
                                     target="compliance@example.test", due=date(2025, 9, 10)))
    assert _notify(db_url, packs, port, "compliance@example.test")["sent"] == []
    assert _delivered(got, 0) == []


def test_a_recipient_list_recorded_raw_before_the_upgrade_is_not_sent_again(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[list[str]]],
) -> None:
    port, got = smtp_server
    _incident(db_url)
    with session_scope(db_url) as s:
        s.add(ObligationNotification(key="theft-loss:INC-1", status="due", channel="smtp",
                                     target="b@Example.test, a@example.test", due=date(2025, 9, 10)))
    assert _notify(db_url, packs, port, "a@example.test,b@example.test")["sent"] == []
    assert _delivered(got, 0) == []


def test_a_failure_recorded_raw_before_the_upgrade_is_retried_in_its_own_row(
    db_url: str, packs: PackRegistry, smtp_server: tuple[int, list[list[str]]],
) -> None:
    port, got = smtp_server
    _incident(db_url)
    with session_scope(db_url) as s:
        s.add(ObligationNotification(key="theft-loss:INC-1", status="due", channel="smtp", ok=False,
                                     error="ConnectionRefusedError", target="b@example.test, a@example.test",
                                     due=date(2025, 9, 10)))
    out = _notify(db_url, packs, port, "a@example.test,b@example.test")
    assert out["sent"][0]["ok"] and out["sent"][0]["count"] == 1, out
    assert _rows(db_url) == [("a@example.test,b@example.test", True)]  # one row per target, not two
    assert len(_delivered(got, 1)) == 1


@pytest.mark.parametrize(("smtp_to", "n"), [("a@example.test,,", 2), ("a@example.test,", 2),
                                            (",a@example.test", 1), ("a@example.test, ,b@example.test", 2),
                                            ("  ", 1)])
def test_an_empty_address_in_veu_notify_smtp_to_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, smtp_to: str, n: int,
) -> None:
    monkeypatch.setenv("VEU_NOTIFY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VEU_NOTIFY_SMTP_TO", smtp_to)
    with pytest.raises(PolicyError) as exc:
        svc.notify_settings()
    assert str(exc.value).startswith(f"VEU_NOTIFY_SMTP_TO: {smtp_to!r}: address {n} is empty"), exc.value


def test_a_recipient_list_without_an_empty_address_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEU_NOTIFY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VEU_NOTIFY_SMTP_TO", " a@example.test , b@example.test ")
    assert svc.notify_settings().channels() == [("smtp", "a@example.test,b@example.test",
                                                 " a@example.test , b@example.test ")]


def _notify_cli(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VEU_NOTIFY_")}
    full.update(VEU_DATABASE_URL=db_url, **env)
    return subprocess.run([sys.executable, "-m", "agent", "deadlines", "notify", *args, "--as-of", "2025-09-11"],
                          capture_output=True, text=True, env=full, timeout=60)


@pytest.mark.parametrize(("args", "env", "message"), [
    (("--smtp-host", "127.0.0.1", "--smtp-to", "a@example.test,,"), {},
     "error: --smtp-to: 'a@example.test,,': address 2 is empty"),
    (("--smtp-host", "127.0.0.1"), {"VEU_NOTIFY_SMTP_TO": "a@example.test,,"},
     "error: VEU_NOTIFY_SMTP_TO: 'a@example.test,,': address 2 is empty"),
])
def test_cli_notify_refuses_an_empty_recipient_in_one_line_before_recording_anything(
    db_url: str, args: tuple[str, ...], env: dict[str, str], message: str,
) -> None:
    _incident(db_url)
    r = _notify_cli(db_url, *args, **env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().startswith(message) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _rows(db_url) == []
