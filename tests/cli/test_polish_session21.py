"""CLI and message polish from session 21's QA (each test failed before the fix it covers)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from agent.cli import app
from agent.cli._common import run_app

ROOT = Path(__file__).parents[2]


def veuctl(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["veuctl", *args])
    rc = run_app(app)
    out, err = capsys.readouterr()
    return rc, out, err


# --------------------------------------------------------------------------- agent run: Alembic's chatter


def test_agent_run_prints_no_alembic_info_lines(tmp_path: Path) -> None:
    """README's `veuctl agent run` on a fresh store printed ~30 `INFO setup plugin alembic...` and `INFO Running
    upgrade ...` lines (the store's migrations) around the agent's own. Alembic logs at WARNING; ours stay INFO."""
    env = {k: v for k, v in os.environ.items() if k not in ("VEU_AGENT_CONFIG", "VEU_LOG_LEVEL",
                                                             "KUBERNETES_SERVICE_HOST")}
    env["VEU_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.db'}"
    cfg = tmp_path / "agent.yaml"
    register = tmp_path / "assets.csv"
    register.write_text("site,accelerator,count,owner,operator\n", encoding="utf-8")
    cfg.write_text(f"collectors:\n  csv:\n    files: [{register}]\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "agent", "agent", "run", "--once", "--config", str(cfg)],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "setup plugin alembic" not in r.stderr and "Running upgrade" not in r.stderr, r.stderr
    assert "Context impl" not in r.stderr, r.stderr
    assert re.search(r"INFO inventory csv run \d+: ", r.stderr), r.stderr  # the agent's own INFO lines stay


# --------------------------------------------------------------------------- chips show --help


def test_chips_show_help_gives_a_mig_example_the_catalog_accepts(
        db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`veuctl chips show --help` offered 'A100-SXM4-40GB-1g.5gb', which is "not in catalog"."""
    monkeypatch.setenv("COLUMNS", "400")
    rc, out, _ = veuctl(monkeypatch, capsys, "chips", "show", "--help")
    assert rc == 0
    examples = re.findall(r"'([^']+)'", " ".join(out.split()))
    assert examples and "A100-SXM4-40GB-1g.5gb" not in examples, out
    for name in examples:
        rc, out, err = veuctl(monkeypatch, capsys, "chips", "show", name, "--json")
        assert rc == 0, (name, err)
    assert "A100-SXM4-40GB MIG 1g.5gb" in examples
    assert json.loads(veuctl(monkeypatch, capsys, "chips", "show", "A100-SXM4-40GB MIG 1g.5gb", "--json")[1])[
        "id"] == "a100-sxm4-40gb"


# --------------------------------------------------------------------------- README: the red flag at admission


def _block(title: str) -> list[str]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(f"# {title}") + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("# ") or lines[i].startswith("```"))
    return lines[start:end]


def test_readme_red_flag_block_runs_as_written_on_a_fresh_store(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The block's `veuctl cases resolve 1` failed on a fresh store ("no case 1"): nothing in it opened a case, and
    `veuctl admission review review.json` needed a file the README never provided. Every line but `serve` (a
    long-running server) now runs, the heredoc writing review.json, in order."""
    monkeypatch.chdir(tmp_path)
    lines = iter(_block("The red flag at admission"))
    ran: list[str] = []
    for line in lines:
        if line.startswith("cat > "):
            target, end = re.match(r"cat > (\S+) <<'(\w+)'", line).groups()  # type: ignore[union-attr]
            body = []
            for inner in lines:
                if inner == end:
                    break
                body.append(inner)
            (tmp_path / target).write_text("\n".join(body) + "\n", encoding="utf-8")
            continue
        if not line.startswith("veuctl ") or line.startswith("veuctl serve"):
            continue
        args = shlex.split(re.sub(r"\s+#.*$", "", line))[1:]
        rc, out, err = veuctl(monkeypatch, capsys, *args)
        assert rc == 0, (line, err)
        ran.append(args[0] + " " + args[1])
        if args[:2] == ["admission", "review"]:
            assert json.loads(out)["code"] == "HOLD_FOR_INQUIRY", out
    assert ran[-1] == "cases resolve" and "admission review" in ran, ran


# --------------------------------------------------------------------------- API 401s say what to do


@pytest.fixture()
def client(db_url: str):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from agent.api.app import create_app

    return TestClient(create_app(db_url), base_url="https://testserver")


@pytest.mark.auth
def test_revoked_and_expired_token_401s_say_to_ask_for_a_new_token(client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    from agent.auth import create_token, revoke_token
    from agent.store import session_scope
    from agent.store.tables.auth import ApiToken
    from agent.store.tables.core import utcnow

    with session_scope(db_url) as s:
        _, revoked = create_token(s, role="viewer", name="gone")
        _, expired = create_token(s, role="viewer", name="old", expires_days=1)
    with session_scope(db_url) as s:
        revoke_token(s, revoked.split("_")[1])
        row = s.exec(select(ApiToken).where(ApiToken.prefix == expired.split("_")[1])).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
    for secret, why in ((revoked, "token: revoked"), (expired, "token: expired"),
                        ("veu_0123456789ab_" + "a" * 30, "token: unknown")):
        r = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
        detail = r.json()["detail"]
        assert r.status_code == 401 and detail.startswith(why), detail
        assert "veuctl tokens create --role" in detail and "admin" in detail, detail
    r = client.get("/api/v1/whoami", headers={"Authorization": "Bearer veu_short"})
    assert r.status_code == 401 and r.json()["detail"].startswith("token: malformed"), r.text
    assert "veuctl tokens create" in r.json()["detail"], r.text


@pytest.mark.auth
def test_the_sign_in_page_says_why_a_token_fails_and_what_to_do(client, db_url: str) -> None:  # type: ignore[no-untyped-def]
    """The sign-in page said only "That token is not valid.", for a revoked or expired token too."""
    from agent.auth import create_token, revoke_token
    from agent.store import session_scope

    with session_scope(db_url) as s:
        _, revoked = create_token(s, role="viewer", name="gone-web")
    with session_scope(db_url) as s:
        revoke_token(s, revoked.split("_")[1])
    r = client.post("/login", data={"token": revoked, "next": "/"}, headers={"origin": "https://testserver"})
    assert r.status_code == 401, r.text
    assert "token: revoked" in r.text and "veuctl tokens create --role" in r.text, r.text
