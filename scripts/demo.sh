#!/usr/bin/env bash
# The demo command (README): install into .venv if needed, then run the server and dashboard on an
# embedded SQLite store seeded with a sample fleet (http://127.0.0.1:8080 by default).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/veuctl ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -c constraints.txt -e .
fi
exec .venv/bin/veuctl demo "$@"
