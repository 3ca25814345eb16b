"""constraints.txt pins what pyproject.toml asks for: CI and the image install exactly what was tested."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
# pip freeze leaves out the packaging tools themselves; pip keeps them current on its own.
UNPINNED = {"pip", "setuptools", "wheel"}


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"constraints.txt line {n}: {line!r} is not NAME==VERSION (re-run scripts/lock.sh)"
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_every_declared_dependency_is_pinned_at_a_version_its_lower_bound_allows() -> None:
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        if name in UNPINNED:
            continue
        assert name in pins, f"{req.name}: in pyproject.toml but not in constraints.txt; run scripts/lock.sh"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{req.name}: constraints.txt pins {pins[name]}, outside pyproject.toml's {req.specifier}; "
            "run scripts/lock.sh")


def test_ci_and_the_image_install_with_the_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / "scripts" / "test.sh").read_text(encoding="utf-8")
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "-c constraints.txt" in dockerfile and "constraints.txt" in dockerfile.split("COPY", 1)[1]


def test_the_package_itself_is_not_pinned() -> None:
    assert "veu-governor" not in _pins(), "constraints.txt must not pin the project being installed"
