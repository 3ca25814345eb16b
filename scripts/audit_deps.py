"""Dependency vulnerability audit for CI: pip-audit over the installed environment, with an honest verdict.

Exits 1 when any installed dependency has a known vulnerability (package, version, advisory, fixed
versions printed). When the vulnerability service cannot be asked about some dependencies (a CI machine
whose network reaches the package index but not PyPI's per-version JSON API nor OSV), those are listed
as NOT AUDITED with a loud warning; that is exit 0 unless ``VEU_AUDIT_STRICT=1``, where it is a failure.
pip-audit itself failing (no JSON, a crash) is exit 2.

    .venv/bin/python scripts/audit_deps.py            # the CI step (scripts/test.sh)
    VEU_AUDIT_STRICT=1 .venv/bin/python scripts/audit_deps.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SERVICES = ("pypi", "osv")  # pip-audit's vulnerability services, tried in this order


@dataclass
class Verdict:
    """What one pip-audit report says, and the exit code CI should take from it."""

    vulnerable: list[str] = field(default_factory=list)
    unaudited: list[str] = field(default_factory=list)
    audited: int = 0

    def exit_code(self, strict: bool) -> int:
        if self.vulnerable:
            return 1
        return 1 if strict and self.unaudited else 0

    def lines(self, service: str, strict: bool) -> list[str]:
        out = [f"pip-audit ({service}): {self.audited} dependencies audited, {len(self.vulnerable)} vulnerable, "
               f"{len(self.unaudited)} not audited"]
        out += [f"VULNERABLE {v}" for v in self.vulnerable]
        if self.unaudited:
            word = "ERROR" if strict else "WARNING"
            out.append(f"{word}: {len(self.unaudited)} dependencies could not be audited (the vulnerability "
                       f"service did not answer for them); the audit is incomplete here"
                       + ("" if strict else " (VEU_AUDIT_STRICT=1 makes this a failure)"))
            out += [f"  not audited: {u}" for u in self.unaudited[:10]]
            if len(self.unaudited) > 10:
                out.append(f"  ... and {len(self.unaudited) - 10} more")
        return out


def judge(report: dict[str, Any]) -> Verdict:
    """Read pip-audit's JSON (``{"dependencies": [{"name", "version", "vulns": [...]} | {"name", "skip_reason"}]}``)."""
    deps = report.get("dependencies")
    if not isinstance(deps, list):
        raise ValueError("pip-audit JSON: no 'dependencies' list")
    v = Verdict()
    for d in deps:
        name = str(d.get("name", "?"))
        if "skip_reason" in d:
            v.unaudited.append(f"{name}: {d['skip_reason']}")
            continue
        v.audited += 1
        for vuln in d.get("vulns") or []:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            ids = ", ".join([str(vuln.get("id", "?")), *map(str, vuln.get("aliases") or [])])
            v.vulnerable.append(f"{name} {d.get('version', '?')}: {ids} (fixed in: {fixes})")
    return v


def run_pip_audit(exe: str, service: str, timeout: float) -> dict[str, Any]:
    """One pip-audit run over this environment (editable installs, i.e. the project itself, skipped)."""
    cmd = [exe, "--format", "json", "--progress-spinner", "off", "--skip-editable", "-s", service]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        report = json.loads(p.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"pip-audit -s {service} exited {p.returncode} without a JSON report: "
                           f"{(p.stderr or p.stdout).strip()[-500:]}") from None
    if not isinstance(report, dict):
        raise RuntimeError(f"pip-audit -s {service}: unexpected report {str(report)[:200]}")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pip-audit", default=str(Path(sys.executable).with_name("pip-audit")),
                    help="the pip-audit executable (default: the one beside this Python)")
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args(argv)
    strict = os.environ.get("VEU_AUDIT_STRICT") == "1"
    best: tuple[str, Verdict] | None = None
    errors: list[str] = []
    for service in SERVICES:
        try:
            verdict = judge(run_pip_audit(a.pip_audit, service, a.timeout))
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
            continue
        if best is None or len(verdict.unaudited) < len(best[1].unaudited) or verdict.vulnerable:
            best = (service, verdict)
        if verdict.vulnerable or not verdict.unaudited:
            break  # a finding, or a complete audit: no need to ask the next service
    if best is None:
        print("pip-audit failed with every vulnerability service:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 2
    service, verdict = best
    for line in verdict.lines(service, strict):
        print(line)
    return verdict.exit_code(strict)


if __name__ == "__main__":
    sys.exit(main())
