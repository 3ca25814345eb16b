"""The access-log import (paragraph 17 weight-access records): an unreadable or over-wide CSV is refused naming the
line and column, on the CLI and the API alike, and nothing of it is stored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from agent.api.app import create_app
from agent.store import session_scope
from agent.store.tables.obligations import WeightAccess

HEADER = "timestamp,model,principal,action,device,site\n"
ROW = "2025-01-01T00:00:00Z,frontier-1,alice,read,nvme-1,dc-frankfurt\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("db_url" if request.param == "sqlite" else "pg_url"))


def _rows(url: str) -> int:
    with session_scope(url) as s:
        return int(s.exec(select(func.count()).select_from(WeightAccess)).one())


def _import(url: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "weights", "import-access", str(path), "--json"],
                          env={**os.environ, "VEU_DATABASE_URL": url}, capture_output=True, text=True, timeout=120)


def test_a_field_past_the_csv_size_limit_is_refused_naming_the_file_and_line(store: str, tmp_path: Path) -> None:
    log = tmp_path / "access.csv"
    log.write_text(HEADER + ROW + "2025-01-02T00:00:00Z,frontier-1,bob,read," + "d" * 200_000 + ",dc\n")
    r = _import(store, log)
    assert r.returncode == 2, r.stderr[-500:]
    assert r.stderr.startswith(f"error: {log}:3: not a readable CSV"), r.stderr[-300:]
    assert r.stderr.count("\n") == 1
    assert _rows(store) == 0  # all rows or none: the good first row is not kept either


@pytest.mark.parametrize(("column", "row"), [
    ("principal", "2025-01-01T00:00:00Z,frontier-1," + "p" * 301 + ",read,,\n"),
    ("model", "2025-01-01T00:00:00Z," + "m" * 201 + ",alice,read,,\n"),
    ("action", "2025-01-01T00:00:00Z,frontier-1,alice," + "a" * 41 + ",,\n"),
    ("site", "2025-01-01T00:00:00Z,frontier-1,alice,read,," + "s" * 201 + "\n"),
])
def test_a_value_wider_than_its_column_is_refused_naming_row_and_column(
    store: str, tmp_path: Path, column: str, row: str,
) -> None:
    log = tmp_path / "access.csv"
    log.write_text(HEADER + ROW + row)
    r = _import(store, log)
    assert r.returncode == 2, r.stderr[-500:]
    assert f"{log}:3: {column} is " in r.stderr and "Traceback" not in r.stderr, r.stderr[-300:]
    assert _rows(store) == 0


def test_the_api_names_the_line_of_an_unreadable_csv_and_keeps_nothing(store: str) -> None:
    c = TestClient(create_app(store), base_url="https://testserver")
    body = HEADER + ROW + "2025-01-02T00:00:00Z,frontier-1,bob,read," + "d" * 200_000 + ",dc\n"
    r = c.post("/api/v1/weights/access", content=body.encode(), headers={"content-type": "text/csv"})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["detail"].startswith("api:3: not a readable CSV"), r.text[:300]
    assert _rows(store) == 0


def test_a_quoted_field_may_hold_a_line_break_and_crlf_files_import(store: str, tmp_path: Path) -> None:
    log = tmp_path / "access.csv"
    log.write_bytes((HEADER + ROW).replace("\n", "\r\n").encode()
                    + b'2025-01-02T00:00:00Z,frontier-1,"bob\r\n(contractor)",read,,\r\n')
    r = _import(store, log)
    assert r.returncode == 0, r.stderr[-500:]
    assert _rows(store) == 2
