#!/usr/bin/env bash
# The test command (README): set up the environment from scratch if needed and run every check.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# System packages: headless Chromium for the dashboard tests, poppler for rendering PDFs to PNG.
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# PostgreSQL: (re)start the local cluster if it is down.
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

# Python environment.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
log "installing veu-governor[test]"
.venv/bin/pip install -q --upgrade pip
# Pinned to what CI tested (scripts/lock.sh re-pins); pyproject.toml keeps only lower bounds.
.venv/bin/pip install -q -c constraints.txt -e '.[test]'

log "ruff"
.venv/bin/ruff check .
log "mypy --strict policies/ controllers/"
.venv/bin/mypy policies/ controllers/
log "pip-audit (dependency vulnerabilities; VEU_AUDIT_STRICT=1 also fails on an incomplete audit)"
.venv/bin/python scripts/audit_deps.py
log "pytest"
.venv/bin/pytest -q -p no:cacheprovider --timeout=600 "$@"
