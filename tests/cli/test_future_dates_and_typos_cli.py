"""Commands whose bad input would quietly weaken a record: a future date that deletes or suppresses, a typo
that clears a 4E091 flag. Each is refused, naming the option, and nothing is written."""

from __future__ import annotations

import json
from datetime import date, timedelta

from tests.cli.test_foundation_cli import run

FUTURE = (date.today() + timedelta(days=400)).isoformat()


def test_audit_prune_refuses_a_future_as_of_that_would_delete_records_still_kept(db_url: str) -> None:
    assert run("parties", "add", "Acme", "--hq", "DE", env_db=db_url).returncode == 0
    r = run("audit", "prune", "--as-of", "2099-01-01", env_db=db_url)
    assert r.returncode == 2 and "--as-of" in r.stderr and "after today" in r.stderr
    log = json.loads(run("audit", "log", "--json", env_db=db_url).stdout)
    assert any(e["action"] == "party.upsert" or e["action"].startswith("party") for e in log)
    assert run("audit", "prune", "--as-of", "2099-01-01", "--dry-run", env_db=db_url).returncode == 0


def test_deadlines_notify_refuses_a_future_as_of_that_would_record_reminders_not_yet_due(db_url: str) -> None:
    r = run("deadlines", "notify", "--webhook-url", "http://127.0.0.1:9/", "--as-of", FUTURE, env_db=db_url)
    assert r.returncode == 2 and "--as-of" in r.stderr and "after today" in r.stderr


def test_weights_export_refuses_an_unknown_model_status_instead_of_clearing_the_flag(db_url: str) -> None:
    assert run("parties", "add", "Acme Robotics", "--hq", "DE", env_db=db_url).returncode == 0
    r = run("weights", "export", "nosuchmodel", "--to", "Acme Robotics", "--country", "CN", "--model-status",
            "4e09l", env_db=db_url)
    assert r.returncode == 2 and "--model-status" in r.stderr
    r = run("weights", "export", "nosuchmodel", "--to", "Acme Robotics", "--country", "CN", "--model-status",
            "4e091", "--json", env_db=db_url)  # the right status in other letter case is the status
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model_status"] == "4E091" and out["flagged"] is True


def test_a_huge_id_a_non_utf8_file_and_a_file_that_is_no_database_are_one_line_errors(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("cases", "show", "99999999999999999999999", env_db=db_url)
    assert r.returncode == 2 and "too large" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "n.csv"
    bad.write_bytes(b"\xff\xfe\x00")
    r = run("inventory", "import", str(bad), env_db=db_url)
    assert r.returncode == 2 and "UTF-8" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "t.db"
    junk.write_text("hi")
    r = run("sites", "list", "--db", f"sqlite:///{junk}", env_db=db_url)
    assert r.returncode == 2 and "--db" in r.stderr and "Traceback" not in r.stderr


def test_an_authorization_granted_in_the_future_or_a_filing_made_in_the_future_is_refused(db_url: str) -> None:
    assert run("parties", "add", "Aurora", "--hq", "US", env_db=db_url).returncode == 0
    r = run("deadlines", "authorize", "a-uveu", "--granted", FUTURE, "--kind", "uveu", "--holder", "Aurora",
            env_db=db_url)
    assert r.returncode == 2 and "--granted" in r.stderr and "after today" in r.stderr
    assert run("deadlines", "authorize", "a-uveu", "--granted", "2025-03-01", "--kind", "uveu", "--holder", "Aurora",
               env_db=db_url).returncode == 0
    keys = [d["key"] for d in json.loads(run("deadlines", "list", "--json", env_db=db_url).stdout)]
    assert keys
    r = run("deadlines", "file", keys[0], "--on", FUTURE, env_db=db_url)
    assert r.returncode == 2 and "--on" in r.stderr and "after today" in r.stderr
    # keys[0] is the 2025 H1 semi-annual report (2025-01-01 to 2025-06-30): a filing dated 2025-01-20 is before
    # its period ended, so it is refused unless --early says it really was filed then (tests/obligations/
    # test_filing_period.py). With --early, a filing dated before the deadline existed (the grant, 2025-03-01)
    # is still that deadline's filing (it is current today).
    assert keys[0] == "veu-report:a-uveu:2025H1"
    r = run("deadlines", "file", keys[0], "--on", "2025-01-20", env_db=db_url)
    assert r.returncode == 2 and "--on" in r.stderr and "2025-06-30" in r.stderr
    r = run("deadlines", "file", keys[0], "--on", "2025-01-20", "--early", env_db=db_url)
    assert r.returncode == 0, r.stderr


def test_an_empty_date_option_is_an_error_not_today(db_url: str) -> None:
    # An unset shell variable ("--as-of $DAY") must not quietly evaluate today instead of the day meant.
    for args in (["tier", "DE", "--as-of", ""], ["caps", "show", "x", "--as-of", ""],
                 ["reservations", "add", "x", "--count", "1", "--chip", "h100", "--site", "s", "--planned-for", ""]):
        r = run(*args, env_db=db_url)
        assert r.returncode == 2 and "is not a date" in r.stderr, (args, r.stderr)


def test_the_last_calendar_day_as_of_is_refused_naming_as_of_not_a_store_error(db_url: str) -> None:
    # Everything up to the end of the as-of day is read, and 9999-12-31 has no next day: it read as "a number given
    # is too large for the store".
    for args in (["inventory", "show", "--as-of", "9999-12-31"], ["deadlines", "list", "--as-of", "9999-12-31"],
                 ["models", "list", "--as-of", "9999-12-31"]):
        r = run(*args, env_db=db_url)
        assert r.returncode == 2 and "--as-of: 9999-12-31 is past the last day that can be evaluated" in r.stderr, (
            args, r.stderr)


def test_an_incident_at_a_site_or_under_an_authorization_the_register_does_not_know_is_refused(db_url: str) -> None:
    r = run("deadlines", "event", "e1", "--kind", "incident", "--on", "2026-01-01", "--site", "nosite",
            env_db=db_url)
    assert r.returncode == 2 and "--site" in r.stderr
    r = run("deadlines", "event", "e1", "--kind", "incident", "--on", "2026-01-01", "--authorization", "nosuch",
            env_db=db_url)
    assert r.returncode == 2 and "--authorization" in r.stderr


def test_an_agent_config_that_is_a_list_and_a_port_out_of_range_are_refused(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "agent.yaml"
    cfg.write_text("[]\n")
    r = run("inventory", "sync", "--config", str(cfg), env_db=db_url)
    assert r.returncode == 2 and "--config" in r.stderr and "mapping" in r.stderr
    r = run("serve", "--port", "99999", env_db=db_url)
    assert r.returncode == 2 and "--port" in r.stderr
