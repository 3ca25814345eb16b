"""The package builds without setuptools' deprecation of ``project.license`` as a TOML table (PEP 639): the licence
is an SPDX expression, and every setuptools that builds it (the isolated build's, the test venv's) supports one."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
FIRST_WITH_LICENSE_EXPRESSIONS = Version("77.0.3")  # 77.0.0 added them (77.0.0 and 77.0.2 are yanked)


def _project() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _setuptools_floor(requirements: list[str]) -> Version:
    (req,) = [Requirement(r) for r in requirements if Requirement(r).name == "setuptools"]
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert floors, f"{req}: give setuptools a lower bound"
    return max(floors)


def test_the_license_is_an_spdx_expression_and_the_build_requires_a_setuptools_that_reads_it() -> None:
    data = _project()
    assert data["project"]["license"] == "Apache-2.0"
    assert _setuptools_floor(data["build-system"]["requires"]) >= FIRST_WITH_LICENSE_EXPRESSIONS
    # the test venv's setuptools builds the wheel without isolation (tests/helm/test_dockerfile.py)
    assert _setuptools_floor(data["project"]["optional-dependencies"]["test"]) >= FIRST_WITH_LICENSE_EXPRESSIONS


def test_the_wheel_builds_without_a_license_deprecation_and_carries_the_license_expression(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for pkg in ("policies", "agent", "controllers"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", "dist", "."],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    output = built.stdout + built.stderr
    assert "project.license` as a TOML table is deprecated" not in output
    assert "License classifiers are deprecated" not in output
    (wheel,) = (tmp_path / "dist").glob("veu_governor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        metadata = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
