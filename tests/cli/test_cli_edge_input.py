"""Bad input at the edges of what a `veuctl` option takes: each is one error line naming the option, exit code 2,
and nothing is written (on SQLite and, where the store is touched, PostgreSQL).

- ``--db sqlite:////typo/dir/x.db`` made the directories and a new, empty store (only the default store's
  directory under XDG_DATA_HOME is made);
- ``shipments add --date 2999-01-01`` recorded a shipment after today;
- ``models add-run --count 1e30`` recorded a run of more chips than any fleet holds (and made the lineage 4E091);
- a blank ``--config``, ``--owner``, ``--db``, ``--precision``, filter, ``--tls-cert``... was read as left out (another
  config file or store, the holder as owner, BF16, every row, plain HTTP);
- ``serve --host no-such-host.invalid`` failed only once the server started, as log lines and exit code 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent import ledger
from agent.store import session_scope
from agent.store.tables.core import utc_today
from tests.caps.conftest import seed_fleet
from tests.cli.test_cli_error_naming import refused, veuctl

ROOT = Path(__file__).resolve().parents[2]
SHIP = ["shipments", "add", "--consignee", "Falcon", "--destination", "AE", "--chip", "h100", "--count", "1",
        "--via", "other"]
RUN = ["models", "add-run", "frontier-1", "--chip", "h100", "--hours", "3"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A small fleet (seed_fleet and the model frontier-1) in a fresh SQLite store, then a fresh PostgreSQL
    database; exported as VEU_DATABASE_URL for the commands run in-process."""
    url = str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))
    monkeypatch.setenv("COLUMNS", "200")
    seed_fleet(url)
    with session_scope(url) as s:
        ledger.add_model(s, "frontier-1", "Lumen")
    return url


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=timeout)


# ----------------------------------------------------------------------------------- --db in a missing directory


def test_a_db_url_in_a_directory_that_does_not_exist_is_refused_naming_db(
    fleet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    typo = tmp_path / "nonexistent" / "typo" / "dir"
    line = refused(monkeypatch, capsys, ["parties", "add", "Acme", "--hq", "DE", "--db", f"sqlite:///{typo}/x.db"],
                   f"--db: directory {typo} does not exist; create it first", fleet)
    assert "Traceback" not in line
    assert not (tmp_path / "nonexistent").exists()
    # A path under a file is no directory either.
    (tmp_path / "file").write_text("not a directory")
    refused(monkeypatch, capsys, ["sites", "list", "--db", f"sqlite:///{tmp_path / 'file' / 'x.db'}"],
            f"--db: directory {tmp_path / 'file'} is not a directory")


def test_a_database_url_from_the_environment_in_a_missing_directory_is_refused_not_created(tmp_path: Path) -> None:
    typo = tmp_path / "nonexistent" / "dir"
    r = _cli("parties", "add", "Acme", "--hq", "DE", env={"VEU_DATABASE_URL": f"sqlite:///{typo}/x.db"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: database URL (--db / VEU_DATABASE_URL): not usable: directory ")
    assert "does not exist" in r.stderr and not (tmp_path / "nonexistent").exists()


def test_the_default_store_directory_is_still_made_on_first_use(tmp_path: Path) -> None:
    data_home = tmp_path / "fresh-data-home"
    r = _cli("parties", "list", "--json", env={"XDG_DATA_HOME": str(data_home), "VEU_DATABASE_URL": ""})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [] and (data_home / "veu-governor" / "veu.db").is_file()


def test_a_demo_db_in_a_directory_that_does_not_exist_is_refused_naming_db(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "nonexistent" / "demo.db"
    refused(monkeypatch, capsys, ["demo", "--no-serve", "--auth", "none", "--db", str(db)],
            f"--db: directory {db.parent} does not exist")
    assert not db.parent.exists()


# ----------------------------------------------------------------------------------- a shipment after today


@pytest.mark.parametrize("day", ["2999-01-01", "tomorrow"])
def test_shipment_dated_after_today_is_refused_naming_date(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], day: str,
) -> None:
    if day == "tomorrow":
        day = (utc_today() + timedelta(days=1)).isoformat()
    refused(monkeypatch, capsys, [*SHIP, "--date", day], f"--date: {day} is after today; record a shipment once",
            store)
    # Today is not after today.
    rc, out, err = veuctl(monkeypatch, capsys, *SHIP, "--date", utc_today().isoformat(), "--json")
    assert rc == 0, err
    assert json.loads(out)["date"] == utc_today().isoformat()


# ----------------------------------------------------------------------------------- a run of too many chips


@pytest.mark.parametrize(("count", "shown"), [("1e30", "1e30"), ("99999999999999999999999999999999", "1e32"),
                                              ("10000001", "10,000,001")])
def test_a_training_run_of_more_chips_than_any_fleet_holds_is_refused_naming_count(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], count: str, shown: str,
) -> None:
    refused(monkeypatch, capsys, [*RUN, "--count", count],
            f"--count: {shown} chips is more than any fleet holds; give at most 10,000,000", store)
    rc, out, _ = veuctl(monkeypatch, capsys, "models", "show", "frontier-1", "--json")
    assert rc == 0 and json.loads(out)["status"] == "below-threshold" and json.loads(out)["runs"] == []
    # The bound itself is a run (and an estimate) like any other.
    assert veuctl(monkeypatch, capsys, *RUN, "--count", "10000000")[0] == 0


def test_an_estimate_of_more_chips_than_any_fleet_holds_is_refused_naming_count(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    refused(monkeypatch, capsys, ["estimate", "--chip", "h100", "--count", "1e30", "--hours", "3"],
            "--count: 1e30 chips is more than any fleet holds")


# ----------------------------------------------------------------------------------- blank values


@pytest.mark.parametrize(("args", "option"), [
    (["sites", "list", "--db", ""], "--db"),
    (["parties", "add", "Acme", "--hq", "DE", "--db", " "], "--db"),
    (["inventory", "sync", "--source", "csv", "--config", ""], "--config"),
    (["parties", "sync-namespaces", "--config", ""], "--config"),
    (["whatif", "aurora", "--add", "1", "--chip", "h100", "--site", "iad", "--owner", ""], "--owner"),
    (["whatif", "aurora", "--add", "1", "--chip", "h100", "--site", "iad", "--operator", ""], "--operator"),
    (["reservations", "list", "--authorization", ""], "--authorization"),
    (["shipments", "list", "--consignee", ""], "--consignee"),
    (["shipments", "list", "--destination", ""], "--destination"),
    (["shipments", "list", "--via", ""], "--via"),
    (["cases", "list", "--customer", ""], "--customer"),
    (["audit", "log", "--action", ""], "--action"),
    (["audit", "log", "--subject", ""], "--subject"),
    (["inventory", "show", "--site", ""], "--site"),
    (["inventory", "runs", "--source", ""], "--source"),
    (["estimate", "--chip", "h100", "--count", "2", "--hours", "3", "--precision", ""], "--precision"),
    (["caps", "show", ""], "NAME"),
])
def test_a_blank_option_value_is_refused_naming_the_option_not_read_as_left_out(
    fleet: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    args: list[str], option: str,
) -> None:
    # Were a blank --config read as left out, this one (configuring a csv collector) would be read instead.
    (tmp_path / "agent.yaml").write_text("collectors:\n  csv:\n    path: /nonexistent.csv\n")
    monkeypatch.setenv("VEU_AGENT_CONFIG", str(tmp_path / "agent.yaml"))
    value = "" if option == "NAME" else args[args.index(option) + 1]
    refused(monkeypatch, capsys, args, f"{option}: {value!r} is blank; give ", fleet)


@pytest.mark.parametrize(("args", "option"), [
    (["reservations", "add", "aurora", "--count", "1", "--chip", "h100", "--site", "iad", "--owner", ""], "--owner"),
    (["reservations", "add", "aurora", "--count", "1", "--chip", "h100", "--site", "iad", "--operator", " "],
     "--operator"),
    ([*RUN, "--count", "2", "--precision", ""], "--precision"),
])
def test_a_blank_option_value_of_a_write_is_refused_and_nothing_is_written(
    store: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], option: str,
) -> None:
    refused(monkeypatch, capsys, args, f"{option}: {args[args.index(option) + 1]!r} is blank; give ", store)


def test_blank_tls_files_for_serve_are_refused_not_plain_http(tmp_path: Path) -> None:
    db = tmp_path / "veu.db"
    # (--host does not resolve: were the blank files read as left out, the server would fail there, not serve.)
    r = _cli("serve", "--tls-cert", "", "--tls-key", "", "--port", "18443", "--host", "no-such-host.invalid",
             env={"VEU_DATABASE_URL": f"sqlite:///{db}", "VEU_AUTH": "none"}, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: --tls-cert: '' is blank; give the PEM file")
    assert not db.exists()


# ----------------------------------------------------------------------------------- serve --host


@pytest.mark.parametrize("host", ["no-such-host.invalid", "8.8.8.8"])
def test_a_serve_host_this_machine_cannot_listen_on_is_refused_naming_host(tmp_path: Path, host: str) -> None:
    db = tmp_path / "veu.db"
    r = _cli("serve", "--host", host, "--port", "18443", env={"VEU_DATABASE_URL": f"sqlite:///{db}",
                                                              "VEU_AUTH": "none"}, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: --host: {host!r} is not an address of this machine to listen on")
    assert "Traceback" not in r.stderr and not db.exists()  # refused before the store was opened


def test_the_demos_own_temporary_store_is_removed_when_it_is_stopped(tmp_path: Path) -> None:
    # SIGTERM (a process manager, `kill`) left a /tmp/veu-demo-* directory behind on every run.
    import json
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "data")}
    p = subprocess.Popen([sys.executable, "-m", "agent", "demo", "--port", "0", "--json"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        text = ""
        while True:  # the summary is pretty-printed JSON: read until it parses
            line = p.stdout.readline()
            assert line, p.stderr.read() if p.stderr else ""
            text += line
            if line.startswith("}"):
                break
        summary = json.loads(text)
        store = Path(summary["database"].removeprefix("sqlite:///"))
        assert store.parent.parent == tmp_path and store.exists()
        time.sleep(1.0)  # serving
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
    assert not store.parent.exists()
