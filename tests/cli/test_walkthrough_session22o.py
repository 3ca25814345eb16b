"""README.md's `veuctl` block run top to bottom on a fresh store, as a new operator types it (session 22's walk
through the documents).

Commands run in-process (``run_app`` with ``sys.argv``) in a scratch directory. Lines that need a cloud account, a
cluster, a mail or webhook endpoint or a second database, and the long-running servers, are left out (named in
``NEEDS_MORE_THAN_A_LAPTOP``); every other line must exit 0, in order.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import app
from agent.cli._common import run_app

ROOT = Path(__file__).parents[2]

# Commands (first two words) that cannot run on a fresh laptop store: servers, cloud and cluster reads, a
# notification endpoint (`URL`), a copy into a second database (`postgresql://...`).
NEEDS_MORE_THAN_A_LAPTOP = {
    ("serve", "--host"), ("serve", "--webhook-only"), ("serve", "--no-webhook"),
    ("agent", "run"), ("inventory", "sync"), ("parties", "sync-namespaces"),
    ("deadlines", "notify"), ("db", "copy"),
}


def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(app)
    out, err = capsys.readouterr()
    return rc, out, err


def readme_block() -> list[str]:
    """The README's `veuctl` bash block, continuation lines joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## `veuctl`", 1)[1].split("```bash\n", 1)[1].split("\n```", 1)[0]
    return block.replace("\\\n", " ").splitlines()


def steps(workdir: Path) -> Iterator[list[str]]:
    """Each command of the block as argv (heredocs written to ``workdir``, optional ``[...]`` parts dropped)."""
    lines = iter(readme_block())
    for line in lines:
        heredoc = re.match(r"cat > (\S+) <<'(\w+)'", line)
        if heredoc:
            target, end = heredoc.groups()
            body = []
            for inner in lines:
                if inner == end:
                    break
                body.append(inner)
            (workdir / target).write_text("\n".join(body) + "\n", encoding="utf-8")
            continue
        if not line.startswith("veuctl "):
            continue
        for command in re.sub(r"\s+#.*$", "", line).split(" ; "):
            command = re.sub(r"\s*\[[^]]*\]", "", command)
            yield shlex.split(command)[1:]


def test_the_readme_veuctl_block_runs_in_order_on_a_fresh_store(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`veuctl inventory import assets.csv` named a register the README never gave, so a new operator's fleet was
    empty (or their own), and `veuctl reservations add aurora-uveu --count 64 --chip h100 --site sin-dc1` then
    failed with exit 2 (`at most 0 fit`): on an empty fleet 64 chips in Singapore are all of it, over the UVEU's
    25% share outside Tier 1. The README now writes a small register first; every line runs."""
    import agent.directory

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    # Each `veuctl` is a process of its own, with its own namespace -> customer snapshot; in one test process the
    # snapshot would outlive `parties add ... --namespace` by up to VEU_CUSTOMER_CACHE_SECONDS.
    monkeypatch.setattr(agent.directory, "TTL", 0.0)
    ran: list[tuple[str, ...]] = []
    for argv in steps(tmp_path):
        if tuple(argv[:2]) in NEEDS_MORE_THAN_A_LAPTOP:
            continue
        if argv[:2] == ["reservations", "add"] and dt.date.today() >= dt.date.fromisoformat(
                argv[argv.index("--expires") + 1]):
            continue  # the example's --expires has passed: the README's dates want a refresh, not this test
        rc, out, err = veuctl(monkeypatch, capsys, *argv)
        assert rc == 0, (argv, err)
        ran.append(tuple(argv[:2]))
        if argv[:2] == ["whatif", "aurora-uveu"]:
            assert json.loads(out)["ok"] is True, out  # the README's what-if fits, as the reservation after it must
    assert ("inventory", "import") in ran and ("export", "installed-base") in ran, ran
    assert ("admission", "review") in ran and ("cases", "resolve") in ran, ran
    rc, out, err = veuctl(monkeypatch, capsys, "inventory", "show", "--json")
    assert rc == 0 and json.loads(out)["totals"]["count"] > 0, (out, err)


def test_every_readme_line_left_out_is_one_that_needs_more_than_a_laptop(tmp_path: Path) -> None:
    """The skip list names only what the README actually shows (a renamed command would otherwise go untested)."""
    shown = {tuple(argv[:2]) for argv in steps(tmp_path)}
    assert shown >= NEEDS_MORE_THAN_A_LAPTOP, NEEDS_MORE_THAN_A_LAPTOP - shown
