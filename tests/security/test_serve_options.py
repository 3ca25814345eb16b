"""`veuctl serve` checks its options before anything else: one line naming the option, exit 2, no log line, no
store opened or migrated (the store used to be migrated, and alembic's INFO lines printed, before a missing
certificate was reported without naming ``--tls-cert``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    db = tmp_path / "store.db"
    env = {**os.environ, "VEU_DATABASE_URL": f"sqlite:///{db}", "VEU_AUTH": "none"}
    r = subprocess.run([sys.executable, "-m", "agent", "serve", "--host", "127.0.0.1", "--port", "18080", *args],
                       env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    return r, db


@pytest.mark.parametrize(("args", "expected"), [
    (["--tls-cert", "missing.crt", "--tls-key", "missing.key"], "error: --tls-cert: missing.crt: no such file"),
    (["--tls-cert", "tls.crt", "--tls-key", "missing.key"], "error: --tls-key: missing.key: no such file"),
    (["--tls-cert", "tls.crt"], "error: --tls-key: required with --tls-cert"),
    (["--tls-key", "tls.key"], "error: --tls-cert: required with --tls-key"),
    (["--client-ca", "ca.crt"], "error: --client-ca: requires --tls-cert"),
    (["--tls-cert", ".", "--tls-key", "tls.key"], "error: --tls-cert: .: not a file"),
    (["--tls-cert", "tls.crt", "--tls-key", "tls.key"], "error: --tls-cert/--tls-key: tls.crt and tls.key do not "
                                                         "load as a PEM certificate"),
    (["--log-level", "loud"], "error: --log-level: 'loud' is not one of"),
])
def test_a_bad_option_is_one_line_naming_it_before_any_log_line_or_store(
    tmp_path: Path, args: list[str], expected: str,
) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / name).write_text("not PEM\n")
    r, db = _serve(tmp_path, *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(expected) and r.stderr.count("\n") == 1, r.stderr
    assert "alembic" not in r.stderr and "INFO" not in r.stderr and r.stdout == ""
    assert not db.exists()  # the store was not created, let alone migrated


@pytest.mark.parametrize(("env", "expected"), [
    ({"VEU_NOTIFY_SMTP_PORT": "abc"}, "error: VEU_NOTIFY_SMTP_PORT: Input should be a valid integer"),
    ({"VEU_NOTIFY_SMTP_HOST": "mail", "VEU_NOTIFY_SMTP_PORT": "70000"},
     "error: VEU_NOTIFY_SMTP_PORT: 70000 is not a TCP port"),
    ({"VEU_NOTIFY_INTERVAL_MINUTES": "0", "VEU_NOTIFY_SCHEDULER": "1"},
     "error: VEU_NOTIFY_INTERVAL_MINUTES: 0 is not a number of minutes"),
])
def test_a_reminder_setting_that_does_not_parse_stops_serve_in_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str,
) -> None:
    # Was a pydantic traceback (and exit 1) from inside the app factory.
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    r, _db = _serve(tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(expected) and r.stderr.count("\n") == 1, r.stderr
