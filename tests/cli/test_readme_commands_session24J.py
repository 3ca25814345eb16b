"""The README as a new operator reads it (session 24's walk through the documents): every `veuctl` command is named
in its command index, and what `veuctl` prints to a pipe stays whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
VEUCTL = [sys.executable, "-m", "agent"]


def registered_commands() -> dict[str, list[str]]:
    """Each top-level `veuctl` command and its subcommands (an empty list for a command that has none)."""
    from agent.cli import COMMANDS, _commands_of

    out: dict[str, list[str]] = {}
    for top, module in COMMANDS.items():
        command = _commands_of(module)[top]
        out[top] = sorted(getattr(command, "commands", {}) or {})
    return out


def readme_index() -> dict[str, list[str]]:
    """The README's command index: a table row per command, `veuctl NAME` then its subcommands, comma-separated."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "### Every command" in text, "the README has no command index (### Every command)"
    section = text.split("### Every command", 1)[1].split("\n## ", 1)[0]
    index: dict[str, list[str]] = {}
    for line in section.splitlines():
        row = re.match(r"\| `veuctl ([a-z-]+)` \| ([^|]*) \|", line)
        if row:
            subs = [s.strip(" `") for s in row.group(2).split(",") if s.strip(" `-—")]
            index[row.group(1)] = sorted(subs)
    return index


def test_every_veuctl_command_and_subcommand_is_named_in_the_readme_command_index() -> None:
    """`veuctl models reactivate-run` (this session), `audit prune`, `controls set`, `weights store` and a dozen more
    were named in no document: a new operator found them only by running --help on each group."""
    assert readme_index() == registered_commands()


def run(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run([*VEUCTL, *args], capture_output=True, text=True, env={**env, "VEU_DATABASE_URL": db},
                          timeout=120)


def test_inventory_show_piped_keeps_its_totals_line_whole(tmp_path: Path, db_url: str) -> None:
    """The README's register (4,096 H100 in iad-dc1, 128 in sin-dc1): `veuctl inventory show 2>&1 | less` folded the
    totals line at 80 columns between "tier 2:" and its figure, where the other notes of the command stay whole."""
    for argv in (["sites", "add", "iad-dc1", "--country", "US"], ["sites", "add", "sin-dc1", "--country", "SG"],
                 ["parties", "add", "Aurora Compute Inc.", "--hq", "US"]):
        assert run(*argv, db=db_url).returncode == 0
    register = tmp_path / "assets.csv"
    register.write_text("site,accelerator,count,owner,operator\n"
                        "iad-dc1,h100-sxm,4096,Aurora Compute Inc.,Aurora Compute Inc.\n"
                        "sin-dc1,h100-sxm,128,Aurora Compute Inc.,Aurora Compute Inc.\n", encoding="utf-8")
    assert run("inventory", "import", str(register), db=db_url).returncode == 0
    shown = run("inventory", "show", db=db_url)
    assert shown.returncode == 0, shown.stderr
    totals = [line for line in shown.stderr.splitlines() if line.startswith("total:")]
    assert totals == ["total: 4224 chips, TPP 66,874,368; by tier: tier 1: 64,847,872, tier 2: 2,026,496"], \
        shown.stderr


def test_db_upgrade_help_names_the_migration_lock_settings() -> None:
    """VEU_MIGRATION_LOCK_TIMEOUT (this session) bounds how long `veuctl db upgrade` waits on PostgreSQL: an operator
    whose upgrade failed naming a lock holder found the setting only in docs/operations.md, not in --help."""
    shown = subprocess.run([*VEUCTL, "db", "upgrade", "--help"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "COLUMNS": "200"})
    assert shown.returncode == 0
    assert "VEU_MIGRATION_LOCK_TIMEOUT" in shown.stdout and "VEU_MIGRATION_LOCK_RETRIES" in shown.stdout, shown.stdout
