"""Bad input found by the session-13 sweep of every `veuctl` command: each is one error line naming the option at
fault, exit code 2, and nothing is written.

- a command-line word that is not UTF-8 (bytes reach Python as lone surrogates) was a UnicodeEncodeError traceback;
- a value echoed in an error with a newline or an escape sequence broke the one error line (or drove the terminal);
- a date the rules are not in effect on named the provision (``eccn-3a090: not in effect ...``), not --as-of/--date;
- a 20-digit number or a date at the end of the calendar was "a number given is too large" naming no option;
- text longer than its column was refused by PostgreSQL as "--db: not a usable database";
- ``admission controllers --interval`` nan/0/-1/inf was checked only after a pass against the cluster;
- ``demo --host`` that is not this machine's was a socket traceback after the database was seeded;
- ``audit checkpoint --out ' '`` (a blank name) wrote a file named " ".
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from agent.cli import app
from agent.cli._common import run_app
from tests.cli.test_cli_error_naming import refused, veuctl

BIG = "1" + "0" * 22
PATHS = ["paths", "--items", "H100 x 8", "--consignee", "Falcon", "--country", "AE"]
SHIP = ["shipments", "add", "--date", "2025-06-01", "--consignee", "Falcon", "--destination", "AE", "--chip", "h100",
        "--count", "1", "--via", "other"]


@pytest.mark.parametrize(("args", "starts"), [
    (["cases", "list", "--customer", "Lum\udcffen"], "--customer: not valid UTF-8 text (byte 0xff at position 3)"),
    (["parties", "add", "Ac\udce9me", "--hq", "DE"], "argument 3: not valid UTF-8 text (byte 0xe9"),
    ([*SHIP, "--reference", "r\udcff"], "--reference: not valid UTF-8"),
    (["sites", "add", "x", "--country=D\udcffE"], "--country: not valid UTF-8"),
])
def test_a_word_that_is_not_utf8_is_named_not_a_traceback(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], starts: str,
) -> None:
    refused(monkeypatch, capsys, args, starts, fleet)


@pytest.mark.parametrize(("args", "starts", "shown"), [
    (["caps", "show", "ab\ncd"], "authorization: 'ab\\ncd' is not registered", "ab\\ncd"),
    (["whatif", "aurora", "--add", "1", "--chip", "ab\ncd", "--site", "iad"], "--chip: ab\\ncd: not in catalog",
     "ab\\ncd"),
    (["authorizations", "add", "a1", "--kind", "uveu", "--holder", "No\r\nbody"], "--holder: 'No\\r\\nbody'",
     "No\\r\\nbody"),
    (["admission", "review", "no\nfile.json"], "no\\nfile.json: no such file", "no\\nfile.json"),
    (["parties", "show", "x\x1b[31mred"], "", "x\\x1b[31mred"),
])
def test_a_value_echoed_in_an_error_stays_on_its_one_line_escaped(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], starts: str, shown: str,
) -> None:
    line = refused(monkeypatch, capsys, args, starts, fleet)
    assert shown in line and "\x1b" not in line


@pytest.mark.parametrize(("args", "starts"), [
    (["chips", "list", "--as-of", "0001-01-01"], "--as-of: eccn-3a090: not in effect on 0001-01-01"),
    (["chips", "classify", "--rate", "FP8=1979", "--as-of=0001-01-01"], "--as-of: eccn-3a090: not in effect"),
    (["instances", "show", "aws", "p5.48xlarge", "--as-of", "0001-01-01"], "--as-of: eccn-3a090: not in effect"),
    (["audit", "prune", "--dry-run", "--as-of", "0001-01-01"], "--as-of: veu-recordkeeping: not in effect"),
    ([*PATHS, "--date", "1999-01-01"], "--date: eccn-3a090: not in effect on 1999-01-01"),
])
def test_a_date_the_rules_are_not_in_effect_on_names_the_date_option(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], starts: str,
) -> None:
    refused(monkeypatch, capsys, args, starts, fleet)


@pytest.mark.parametrize(("args", "starts"), [
    (["audit", "log", "--from", BIG], f"--from: {BIG}: too large for the store"),
    (["shipments", "list", f"--offset={BIG}"], f"--offset: {BIG}: too large for the store"),
    (["models", "list", "--offset", BIG], "--offset: "),
    (["controls", "evidence", "iad", "-p", BIG, "--uri", "https://x/y"], f"-p: {BIG}: too large"),
    (["models", "determine", "frontier-1", "--less-capable", "--by", "a", "--basis", "b", "--on", "9999-12-31"],
     "--on: 9999-12-31 is too near the end of the calendar"),
    ([*PATHS, "--date", "9999-12-31"], "--date: 9999-12-31 is too near the end of the calendar"),
])
def test_a_number_or_a_day_past_what_can_be_counted_names_its_option(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], starts: str,
) -> None:
    refused(monkeypatch, capsys, args, starts, fleet)


def test_a_huge_case_id_still_says_too_large(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    rc, _, err = veuctl(monkeypatch, capsys, "cases", "show", BIG)
    assert rc == 2 and "too large" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("interval", ["nan", "-1", "0", "inf", "1e400"])
def test_a_controller_interval_that_is_not_a_positive_time_is_refused_before_the_cluster_is_read(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], interval: str,
) -> None:
    refused(monkeypatch, capsys, ["admission", "controllers", "--once", "--interval", interval],
            "--interval: ")


@pytest.mark.parametrize("host", ["8.8.8.8", ""])
def test_a_demo_host_this_machine_cannot_listen_on_is_refused_before_seeding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], host: str,
) -> None:
    db = tmp_path / "demo.db"
    refused(monkeypatch, capsys, ["demo", "--no-serve", "--port", "0", "--auth", "none", "--db", str(db),
                                  "--host", host], f"--host: {host!r} is not an address of this machine")
    assert not db.exists()


def test_a_blank_out_file_name_writes_nothing(
    fleet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))
    refused(monkeypatch, capsys, ["audit", "checkpoint", "--out", " "], "--out: ' ' is blank", fleet)
    refused(monkeypatch, capsys, ["audit", "keygen", "--out", "  "], "--out: '  ' is blank")
    assert not (tmp_path / " ").exists() and not (tmp_path / "  ").exists()


def test_text_longer_than_its_column_on_postgresql_names_the_option_not_db(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    assert veuctl(monkeypatch, capsys, "parties", "add", "Falcon", "--hq", "AE")[0] == 0
    line = refused(monkeypatch, capsys, ["sites", "add", "s1", "--country", "DE", "--cluster", "c" * 300],
                   "--cluster: at most 200 characters of text (got 300)")
    assert "--db" not in line
    refused(monkeypatch, capsys, [*SHIP, f"--reference={'r' * 201}"], "--reference: at most 200 characters")
    rc, out, _ = veuctl(monkeypatch, capsys, "sites", "list", "--json")
    assert rc == 0 and "s1" not in out
    rc, out, _ = veuctl(monkeypatch, capsys, "shipments", "list", "--json")
    assert rc == 0 and "r" * 201 not in out and '"Falcon"' not in out


def test_run_app_checks_words_before_running(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # No command, no store: a bad word is refused before any module is imported or any store is opened.
    monkeypatch.setattr(sys, "argv", ["veuctl", "tier", "D\udcffE"])
    assert run_app(app) == 2
    assert capsys.readouterr().err == ("error: argument 2: not valid UTF-8 text (byte 0xff at position 1); check "
                                       "the terminal's or the script's encoding\n")


@pytest.mark.parametrize(("args", "starts"), [
    (["--webhook-url", "http://a\x01b/"], "--webhook-url: 'http://a\\x01b/' is not a URL"),
    (["--webhook-url", "ftp://host/x"], "--webhook-url: 'ftp://host/x' is not an http:// or https:// URL"),
    (["--smtp-host", "h" * 300, "--smtp-to", "a@example.com"], "--smtp-host: 'hhh"),
    (["--smtp-host", " ", "--smtp-to", "a@example.com"], "--smtp-host: ' ' is not a host name"),
])
def test_a_notification_address_no_request_can_be_made_to_is_refused_before_anything_is_sent(
    fleet: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], starts: str,
) -> None:
    # Overdue reports, so that a reminder would be sent (and recorded) were the address taken.
    assert veuctl(monkeypatch, capsys, "deadlines", "authorize", "aurora", "--granted", "2025-03-01")[0] == 0
    refused(monkeypatch, capsys, ["deadlines", "notify", *args], starts, fleet)
