"""`veuctl audit` polish from session 21's QA (each test failed before the fix it covers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from agent import audit
from agent.store import session_scope

Veuctl = Callable[..., tuple[int, str, str]]


def _append(url: str, n: int, action: str = "party.update") -> None:
    for i in range(1, n + 1):
        with session_scope(url) as s:
            audit.record(s, actor="test:alice", action=action, subject=f"party:p{i}", payload={"i": i})


# --------------------------------------------------------------------------- verify: distinct checkpoints


def test_verify_counts_a_stored_checkpoint_given_as_a_file_once(db_url: str, veuctl: Veuctl, tmp_path: Path) -> None:
    """`audit verify --checkpoint cp.json` with the checkpoint `audit checkpoint --out cp.json` also stored
    reported "2 signed checkpoints": the same one counted twice."""
    _append(db_url, 3)
    cp = tmp_path / "cp.json"
    rc, _, err = veuctl("audit", "checkpoint", "--out", str(cp), "--db", db_url)
    assert rc == 0, err
    rc, out, err = veuctl("audit", "verify", "--checkpoint", str(cp), "--db", db_url, "--json")
    assert rc == 0, err
    assert json.loads(out)["checkpoints_verified"] == 1, out
    rc, out, err = veuctl("audit", "verify", "--checkpoint", str(cp), "--checkpoint", str(cp), "--db", db_url)
    assert rc == 0, err
    assert "; 1 signed checkpoint (latest at seq 3)" in out, out
    # A second, different checkpoint counts.
    _append(db_url, 1)
    assert veuctl("audit", "checkpoint", "--db", db_url)[0] == 0
    rc, out, err = veuctl("audit", "verify", "--checkpoint", str(cp), "--db", db_url)
    assert rc == 0 and "; 2 signed checkpoints (latest at seq 4)" in out, out


def test_verify_says_one_entry_and_one_checkpoint_in_the_singular(db_url: str, veuctl: Veuctl) -> None:
    _append(db_url, 1)
    assert veuctl("audit", "checkpoint", "--db", db_url)[0] == 0
    rc, out, err = veuctl("audit", "verify", "--db", db_url)
    assert rc == 0, err
    assert out.startswith("OK: 1 entry verified (seq 1..1, from genesis); 1 signed checkpoint (latest at seq 1)"), out


# --------------------------------------------------------------------------- log --action: an unknown action


def test_log_warns_of_an_action_no_entry_has_listing_the_recorded_ones(db_url: str, veuctl: Veuctl) -> None:
    """`audit log --action party.creat` (a typo) printed an empty table, as if nothing had been done. It warns,
    naming the option and the actions recorded; the answer (none) stands, since an action the store has not seen
    yet may still be a real one."""
    _append(db_url, 2, action="party.create")
    _append(db_url, 1, action="site.create")
    rc, out, err = veuctl("audit", "log", "--action", "party.creat", "--db", db_url, "--json")
    assert rc == 0 and json.loads(out) == [], out
    line = " ".join(err.split())
    assert line.startswith("warning: --action: no audit entry has action 'party.creat'"), err
    assert "party.create, site.create" in line, err
    rc, out, err = veuctl("audit", "log", "--action", "party.create", "--db", db_url, "--json")
    assert rc == 0 and [e["action"] for e in json.loads(out)] == ["party.create", "party.create"], err
    # An action that is recorded but not in the --from window still answers an empty list, not an error.
    rc, out, err = veuctl("audit", "log", "--action", "party.create", "--from", "3", "--db", db_url, "--json")
    assert rc == 0 and json.loads(out) == [], err


def test_log_action_on_an_empty_log_warns_it_is_empty(db_url: str, veuctl: Veuctl) -> None:
    rc, out, err = veuctl("audit", "log", "--action", "party.create", "--db", db_url, "--json")
    assert rc == 0 and json.loads(out) == [], out
    assert "--action" in err and "the audit log has no entries" in " ".join(err.split()), err
