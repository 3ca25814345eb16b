"""What README.md, docs/inventory.md and docs/api.md tell a new operator, checked against what the commands and
the API do (session 21's literal walk through the documents on a fresh store).

Commands run in-process (``run_app`` with ``sys.argv``) against a fresh store.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from agent.cli import app
from agent.cli._common import run_app

ROOT = Path(__file__).parents[2]


def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(app)
    out, err = capsys.readouterr()
    return rc, out, err


def readme_commands(prefix: str) -> list[list[str]]:
    """The README walkthrough's command lines starting with ``prefix`` (comments cut), as argv lists."""
    cmds = []
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith(prefix):
            cmds.append(shlex.split(re.sub(r"\s+#.*$", "", line))[1:])
    return cmds


def test_agent_run_with_no_collector_configured_says_so_instead_of_idling_silently(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """README's `veuctl agent run` on a fresh machine (no --config, no VEU_AGENT_CONFIG) scheduled nothing and
    printed nothing but Alembic's log lines: an operator could not tell it would never inventory a chip. It
    still runs (in a pod it also writes PolicyReports), but says on stderr that no collector is configured and
    where to configure one."""
    monkeypatch.delenv("VEU_AGENT_CONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rc, _, err = veuctl(monkeypatch, capsys, "agent", "run", "--once", "--db", db_url)
    assert rc == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1, err
    assert "no collector is configured" in warning[0] and "--config" in warning[0], warning
    assert "VEU_AGENT_CONFIG" in warning[0] and "docs/inventory.md" in warning[0], warning


def test_agent_run_with_a_collector_configured_gives_no_such_warning(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    register = tmp_path / "assets.csv"
    register.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"collectors:\n  csv:\n    files: [{register}]\n", encoding="utf-8")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rc, _, err = veuctl(monkeypatch, capsys, "agent", "run", "--once", "--config", str(cfg), "--db", db_url)
    assert rc == 0, err
    assert "no collector is configured" not in err, err


def test_inventory_show_of_an_empty_date_does_not_end_its_totals_line_on_a_dangling_colon(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """README: `veuctl inventory show --as-of 2026-06-30` before any chip was held printed
    `total: 0 chips, TPP 0; by tier: ` and stopped."""
    monkeypatch.setenv("COLUMNS", "200")
    rc, _, err = veuctl(monkeypatch, capsys, "inventory", "show", "--as-of", "2026-06-30", "--db", db_url)
    assert rc == 0, err
    total = next(line for line in err.splitlines() if line.startswith("total: "))
    assert total == "total: 0 chips, TPP 0; by tier: none", total


def test_keygen_to_a_file_that_is_not_the_signing_key_says_how_to_sign_with_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """README: `veuctl audit keygen --out signing-key.pem`, then the exports: the manifests were signed with
    another key (the one made under the data dir), and keygen had not said that the new key is used only once
    VEU_SIGNING_KEY_FILE names it. It now says so on stderr; --json's document is unchanged."""
    configured = tmp_path / "configured.pem"
    monkeypatch.setenv("VEU_SIGNING_KEY_FILE", str(configured))
    other = tmp_path / "signing-key.pem"
    rc, out, err = veuctl(monkeypatch, capsys, "audit", "keygen", "--out", str(other), "--json")
    assert rc == 0, err
    assert set(json.loads(out)) == {"path", "key_id", "public_key"}
    assert f"VEU_SIGNING_KEY_FILE={other}" in err and "not the key" in err, err
    rc, _, err = veuctl(monkeypatch, capsys, "audit", "keygen", "--out", str(configured))
    assert rc == 0, err
    assert "VEU_SIGNING_KEY_FILE" not in err, err


def test_the_readme_model_ledger_lines_run_as_written_on_a_fresh_store(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """README: `veuctl models withdraw-run 7` after the walkthrough had added one run (id 1): exit 2, `run: 7 is
    not a run in the ledger`. The walkthrough now records the mistaken run it withdraws."""
    monkeypatch.setenv("VEU_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")
    lines = readme_commands('veuctl parties add "Lumen') + readme_commands("veuctl models ")
    assert any(c[:2] == ["models", "withdraw-run"] for c in lines), lines
    for argv in lines:
        rc, _, err = veuctl(monkeypatch, capsys, *argv)
        assert rc == 0, (argv, err)
    rc, out, err = veuctl(monkeypatch, capsys, "models", "show", "frontier-1", "--json")
    doc = json.loads(out)
    assert len(doc["withdrawn_runs"]) == 1 and doc["cumulative_operations"] == 8e25, doc


def test_the_api_doc_party_examples_run_in_order_on_a_fresh_store(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/api.md's curl examples: the PATCH set a parent ("Lumen Holdings") that nothing had registered, so it
    answered 422 `parent: ... is not registered`. Each example, in order, now succeeds."""
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    monkeypatch.setenv("VEU_AUTH", "none")
    c = TestClient(create_app(db_url), raise_server_exceptions=False)
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    block = text.split("## Parties", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    calls = [" ".join(part.strip().rstrip("\\") for part in call.splitlines())
             for call in re.split(r"\n(?=curl )", block.strip())]
    assert len(calls) >= 2, calls
    for call in calls:
        argv = shlex.split(call, comments=True)
        method = argv[argv.index("-X") + 1] if "-X" in argv else "POST"
        body = json.loads(argv[argv.index("-d") + 1])
        path = re.sub(r"^https://[^/]+", "", argv[-1])
        r = c.request(method, path, json=body)
        assert r.status_code in (200, 201), (call, r.status_code, r.text)


def test_agent_run_with_every_collector_disabled_warns_too(
        db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    register = tmp_path / "assets.csv"
    register.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"collectors:\n  csv:\n    enabled: false\n    files: [{register}]\n", encoding="utf-8")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rc, _, err = veuctl(monkeypatch, capsys, "agent", "run", "--once", "--config", str(cfg), "--db", db_url)
    assert rc == 0, err
    assert "warning: no collector is enabled" in err, err
