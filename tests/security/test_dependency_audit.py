"""The CI dependency audit (scripts/audit_deps.py): a known vulnerability fails the build; an audit the
service could not answer is reported as incomplete, and fails only in strict mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import audit_deps  # noqa: E402

VULNERABLE: dict[str, Any] = {"dependencies": [
    {"name": "jinja2", "version": "2.4.1", "vulns": [
        {"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"], "aliases": ["CVE-2019-10906"], "description": "..."}]},
    {"name": "fastapi", "version": "0.115.0", "vulns": []},
], "fixes": []}
UNANSWERED: dict[str, Any] = {"dependencies": [
    {"name": "fastapi", "skip_reason": "Dependency not found on PyPI and could not be audited: fastapi (0.115.0)"},
], "fixes": []}
CLEAN: dict[str, Any] = {"dependencies": [{"name": "fastapi", "version": "0.115.0", "vulns": []}], "fixes": []}


def test_a_known_vulnerability_fails_the_build_and_names_the_advisory() -> None:
    v = audit_deps.judge(VULNERABLE)
    assert v.exit_code(strict=False) == 1 and v.audited == 2
    assert any("jinja2 2.4.1: PYSEC-2019-217, CVE-2019-10906 (fixed in: 2.10.1)" in line
               for line in v.lines("pypi", False))


def test_an_unanswered_audit_warns_and_fails_only_when_strict() -> None:
    v = audit_deps.judge(UNANSWERED)
    assert v.exit_code(strict=False) == 0 and v.exit_code(strict=True) == 1
    assert any(line.startswith("WARNING: 1 dependencies could not be audited") for line in v.lines("pypi", False))
    assert audit_deps.judge(CLEAN).exit_code(strict=True) == 0


def test_a_report_without_dependencies_is_an_error() -> None:
    with pytest.raises(ValueError, match="dependencies"):
        audit_deps.judge({"oops": 1})


def _fake_pip_audit(tmp_path: Path, report: Any) -> Path:
    """An executable that answers like pip-audit (same flags, same JSON on stdout)."""
    exe = tmp_path / "pip-audit"
    exe.write_text(f"#!{sys.executable}\nimport sys\nassert '--format' in sys.argv and 'json' in sys.argv\n"
                   f"print({json.dumps(json.dumps(report))})\n")
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize(("report", "strict", "code"), [
    (VULNERABLE, False, 1), (UNANSWERED, False, 0), (UNANSWERED, True, 1), (CLEAN, True, 0), ("not json", False, 2),
])
def test_the_script_end_to_end(tmp_path: Path, report: Any, strict: bool, code: int) -> None:
    exe = _fake_pip_audit(tmp_path, report) if report != "not json" else tmp_path / "pip-audit"
    if report == "not json":
        exe.write_text("#!/bin/sh\necho 'Traceback: boom' >&2\nexit 3\n")
        exe.chmod(0o755)
    env = {**os.environ, "VEU_AUDIT_STRICT": "1" if strict else "0"}
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit_deps.py"), "--pip-audit", str(exe)],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == code, p.stdout + p.stderr
    if code == 1 and report is VULNERABLE:
        assert "VULNERABLE jinja2 2.4.1" in p.stdout
    if code == 2:
        assert "boom" in p.stderr
