"""Static checks of the Dockerfile (no Docker engine here) and of what the image installs.

hadolint is not available, so the rules that matter for a production admission webhook image are
checked by parsing the Dockerfile: pinned bases, multi-stage, non-root, no remote ADD, a health check,
the UID the chart runs as, and a wheel that really carries the migrations and policy packs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helm.chart import render_set

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _args(instructions: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for word, args in instructions:
        if word == "ARG" and "=" in args:
            key, _, val = args.partition("=")
            found.setdefault(key, val)
    return found


def _is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return re.search(r"@sha256:[0-9a-f]{64}$", image) is not None
    name, _, tag = image.rpartition(":")
    # An exact patch release (3.11.14-slim-bookworm), never a floating tag such as latest / 3 / 3.11-slim.
    return bool(name) and re.match(r"^\d+\.\d+\.\d+(-[a-z0-9.-]+)?$", tag) is not None


def test_base_images_are_pinned_to_an_exact_release(instructions: list[tuple[str, str]]) -> None:
    args = _args(instructions)
    froms = [a for w, a in instructions if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the runtime image"
    for line in froms:
        image = line.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        assert _is_pinned(image), f"unpinned base image {image!r}"
        assert not image.endswith(":latest")


def test_runtime_stage_runs_as_the_non_root_uid_the_chart_expects(instructions: list[tuple[str, str]]) -> None:
    last_from = max(i for i, (w, _) in enumerate(instructions) if w == "FROM")
    users = [a for w, a in instructions[last_from:] if w == "USER"]
    assert users, "the runtime stage must switch to a non-root USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-zero UID so runAsNonRoot can verify it"
    for _, pod in [("", o["spec"]["template"]["spec"]) for o in render_set("default") if o["kind"] == "Deployment"]:
        assert pod["securityContext"]["runAsUser"] == int(uid)


def test_no_remote_add_and_no_secrets_baked_in(instructions: list[tuple[str, str]]) -> None:
    for word, args in instructions:
        if word == "ADD":
            assert not re.search(r"https?://|git@", args), f"ADD of a URL: {args}"
        if word in {"ENV", "ARG"}:
            assert not re.search(r"(PASSWORD|TOKEN|SECRET|_KEY)\s*=", args, re.I), args
        if word == "RUN":
            assert "curl" not in args and "wget" not in args, "fetch nothing unpinned at build time"
    assert not any(w == "ADD" for w, _ in instructions), "COPY is enough; ADD has surprising semantics"


def test_image_has_a_health_check_and_runs_veuctl(instructions: list[tuple[str, str]]) -> None:
    words = [w for w, _ in instructions]
    assert "HEALTHCHECK" in words
    (health,) = [a for w, a in instructions if w == "HEALTHCHECK"]
    assert "/healthz" in health
    (entry,) = [a for w, a in instructions if w == "ENTRYPOINT"]
    assert entry == '["veuctl"]'
    (cmd,) = [a for w, a in instructions if w == "CMD"]
    assert cmd.startswith('["serve"')
    # The chart runs the same image with these argument lists (one image, three commands).
    args = {c["name"]: c["args"] for o in render_set("sqlite-trial-values") if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"] + o["spec"]["template"]["spec"]["initContainers"]}
    assert args["webhook"][0] == "serve" and args["agent"] == ["agent", "run"]
    assert args["migrate"][:2] == ["db", "upgrade"]


def test_runtime_stage_keeps_no_build_or_packaging_tools(instructions: list[tuple[str, str]]) -> None:
    """The runtime stage installs no compiler and removes the packaging tools the base image ships (pip,
    setuptools, wheel: python:3.11 images carry all three), once the prebuilt wheels are installed."""
    last_from = max(i for i, (w, _) in enumerate(instructions) if w == "FROM")
    runs = " ".join(a for w, a in instructions[last_from:] if w == "RUN")
    assert not re.search(r"apt-get install|apk add|build-essential|\bgcc\b", runs)
    m = re.search(r"pip uninstall (?:--yes|-y) ([^&;]+)", runs)
    assert m, "the runtime stage must uninstall the packaging tools"
    assert {"pip", "setuptools", "wheel"} <= set(m.group(1).split())
    # and nothing the product runs needs them
    for folder in ("agent", "controllers", "policies"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"^\s*(import|from) (setuptools|pkg_resources|pip|wheel)\b", text, re.M), path


def test_build_context_excludes_the_venv_tests_and_secrets() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", "*.pem", ".env"} <= ignored
    copied = [a.split()[0] for w, a in _instructions(DOCKERFILE.read_text()) if w == "COPY" and "--" not in a]
    for src in copied:
        assert src not in ignored, f"{src} is copied but excluded from the context"


def test_the_wheel_the_image_installs_carries_migrations_packs_and_veuctl(tmp_path: Path) -> None:
    """Build the same wheel the Dockerfile's build stage builds, from a copy of the sources."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    for pkg in ("policies", "agent", "controllers"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", "dist", "."],
        cwd=tmp_path, check=True, capture_output=True, timeout=120,
    )
    (wheel,) = (tmp_path / "dist").glob("veu_governor-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "veuctl = agent.cli:main" in entry_points
    assert "agent/store/alembic.ini" in names
    assert "agent/store/migrations/env.py" in names
    revisions = {p.name for p in (ROOT / "agent/store/migrations/versions").glob("*.py")}
    assert revisions and {f"agent/store/migrations/versions/{r}" for r in revisions} <= names
    packs = {p.name for p in (ROOT / "policies/packs").glob("*.yaml")}
    assert {f"policies/packs/{p}" for p in packs} <= names
    assert "controllers/policyreports.py" in names
