"""`veuctl tokens`: the secret is shown once, never stored or listed; revocation takes effect at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlmodel import select

from agent.store import session_scope
from agent.store.tables.auth import ApiToken

pytestmark = pytest.mark.auth


def veuctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=120)


def test_create_list_revoke(db_url: str) -> None:
    r = veuctl("tokens", "create", "--role", "auditor", "--name", "bis-audit", "--expires", "30", "--json")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["token"].startswith("veu_") and created["role"] == "auditor" and created["expires_at"]
    listing = veuctl("tokens", "list", "--json")
    assert created["token"] not in listing.stdout
    assert json.loads(listing.stdout)[0]["name"] == "bis-audit"
    with session_scope(db_url) as s:
        assert created["token"] not in json.dumps([t.model_dump(mode="json") for t in s.exec(select(ApiToken))])
    r = veuctl("tokens", "revoke", created["prefix"], "--json")
    assert json.loads(r.stdout)["revoked"] is True


def test_unknown_role_exits_2_with_one_line(db_url: str) -> None:
    r = veuctl("tokens", "create", "--role", "root")
    assert r.returncode == 2 and "--role" in r.stderr and r.stderr.count("\n") == 1


def test_token_creation_is_audited(db_url: str) -> None:
    veuctl("tokens", "create", "--role", "viewer", "--json")
    r = veuctl("audit", "verify", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
