"""`veuctl` foundation commands as a user runs them: JSON fields, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

VEUCTL = [sys.executable, "-m", "agent"]


def run(*args: str, env_db: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "VEU_DATABASE_URL": env_db}
    return subprocess.run([*VEUCTL, *args], capture_output=True, text=True, env=env, timeout=120)


def test_tier_json(db_url: str) -> None:
    r = run("tier", "Cambodia", "--as-of", "2026-03-01", "--json", env_db=db_url)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["country"] == "KH" and out["tier"] == 2 and out["groups"] == ["D:1"]


def test_bad_date_exits_2_with_one_line(db_url: str) -> None:
    r = run("tier", "DE", "--as-of", "2025-02-30", env_db=db_url)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "--as-of" in r.stderr


def test_unknown_country_exits_2(db_url: str) -> None:
    r = run("tier", "Narnia", env_db=db_url)
    assert r.returncode == 2 and "Narnia" in r.stderr


def test_parties_add_and_show_with_ultimate_parent(db_url: str) -> None:
    assert run("parties", "add", "Pear", "--hq", "CN", env_db=db_url).returncode == 0
    r = run("parties", "add", "Pear SG", "--hq", "SG", "--parent", "Pear", "--namespace", "pear-ml", "--json",
            env_db=db_url)
    assert r.returncode == 0, r.stderr
    r = run("parties", "show", "Pear SG", "--as-of", "2025-06-01", "--json", env_db=db_url)
    out = json.loads(r.stdout)
    assert out == {**out, "name": "Pear SG", "hq": "SG", "ultimate_parent": "Pear", "effective_tier": 3}
    assert out["namespaces"] == ["pear-ml"]


def test_updating_a_subsidiary_without_parent_keeps_its_tier3_parent_and_no_parent_removes_it(db_url: str) -> None:
    assert run("parties", "add", "Pear", "--hq", "CN", env_db=db_url).returncode == 0
    assert run("parties", "add", "Pear SG", "--hq", "SG", "--parent", "Pear", env_db=db_url).returncode == 0
    # Adding a namespace later must not drop the parent: the parent is what makes this customer Tier 3.
    r = run("parties", "add", "Pear SG", "--hq", "SG", "--namespace", "pear-train", "--json", env_db=db_url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["effective_tier"] == 3
    r = run("parties", "add", "Pear SG", "--hq", "SG", "--parent", "Pear", "--no-parent", env_db=db_url)
    assert r.returncode == 2 and "--no-parent" in r.stderr
    r = run("parties", "add", "Pear SG", "--hq", "SG", "--no-parent", "--json", env_db=db_url)
    assert r.returncode == 0 and json.loads(r.stdout)["effective_tier"] == 2


def test_parties_show_unknown_exits_2(db_url: str) -> None:
    r = run("parties", "show", "Ghost", env_db=db_url)
    assert r.returncode == 2 and "Ghost" in r.stderr


def test_policy_list_show_diff(db_url: str) -> None:
    r = run("policy", "list", "--as-of", "2025-06-01", "--json", env_db=db_url)
    ids = {p["id"] for p in json.loads(r.stdout)["provisions"]}
    assert {"red-flag-28", "eccn-4e091", "tier1-destinations"} <= ids
    r = run("policy", "show", "eccn-4e091", "--json", env_db=db_url)
    assert json.loads(r.stdout)["values"]["operations_threshold"] == 1e26
    r = run("policy", "diff", "--as-of", "2025-05-01", "--as-of", "2025-06-01", "--json", env_db=db_url)
    assert any(c["id"] == "red-flag-28" for c in json.loads(r.stdout)["changes"])


def test_operator_pack_dir_via_env(db_url: str, tmp_path: Path) -> None:
    import os

    import yaml

    from tests.foundation.test_packs import MINIMAL

    (tmp_path / "acme.yaml").write_text(yaml.safe_dump(MINIMAL))
    env = {**os.environ, "VEU_DATABASE_URL": db_url, "VEU_POLICY_DIRS": str(tmp_path)}
    r = subprocess.run([*VEUCTL, "policy", "show", "nveu-allocation", "--as-of", "2026-06-01", "--json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(r.stdout)["pack"] == "licence-acme"


@pytest.mark.postgres
def test_cli_against_postgres(pg_url: str) -> None:
    assert run("parties", "add", "Acme", "--hq", "US", env_db=pg_url).returncode == 0
    r = run("parties", "show", "Acme", "--json", env_db=pg_url)
    assert json.loads(r.stdout)["effective_tier"] == 1


def test_a_namespace_of_another_customer_moves_only_with_reassign_and_bad_names_are_refused(db_url: str) -> None:
    assert run("parties", "add", "Acme", "--hq", "DE", "--namespace", "acme-train", env_db=db_url).returncode == 0
    r = run("parties", "add", "P3", "--hq", "DE", "--namespace", "acme-train", env_db=db_url)
    assert r.returncode == 2 and "registered to Acme" in r.stderr and "--reassign" in r.stderr
    assert json.loads(run("parties", "show", "Acme", "--json", env_db=db_url).stdout)["namespaces"] == ["acme-train"]
    r = run("parties", "add", "P3", "--hq", "DE", "--namespace", "acme-train", "--reassign", "--json", env_db=db_url)
    assert r.returncode == 0 and json.loads(r.stdout)["namespaces"] == ["acme-train"]
    for bad in ("", "Bad_NS!", "-x", "a" * 64):
        r = run("parties", "add", "P4", "--hq", "DE", "--namespace", bad, env_db=db_url)
        assert r.returncode == 2 and "--namespace" in r.stderr, bad
    assert run("parties", "show", "P4", env_db=db_url).returncode == 2  # nothing was written


def test_updates_that_leave_an_option_out_keep_the_stored_value(db_url: str) -> None:
    # A site's cluster maps its inventory and namespaces; a model's publication excludes its lineage.
    assert run("sites", "add", "s9", "--country", "DE", "--cluster", "c9", env_db=db_url).returncode == 0
    r = run("sites", "add", "s9", "--country", "DE", "--json", env_db=db_url)
    assert r.returncode == 0 and json.loads(r.stdout)["cluster"] == "c9"
    assert run("parties", "add", "Lumen", "--hq", "SG", env_db=db_url).returncode == 0
    assert run("models", "add", "m1", "--owner", "Lumen", "--published-on", "2026-01-01", env_db=db_url).returncode == 0
    r = run("models", "add", "m1", "--owner", "Lumen", "--json", env_db=db_url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["published"] is True
    r = run("models", "add", "m1", "--owner", "Lumen", "--unpublished", "--json", env_db=db_url)
    assert json.loads(r.stdout)["published"] is False
