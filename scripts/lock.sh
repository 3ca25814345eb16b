#!/usr/bin/env bash
# Re-pin constraints.txt: every distribution veu-governor[test] installs, at the versions resolved today.
# CI (scripts/test.sh) and the image (Dockerfile) install with `-c constraints.txt`, so a release upstream
# changes nothing until this is run, the suite passes and the new file is committed. pip-audit in CI says
# when a pinned version gains an advisory: re-run this, then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
trap 'rm -rf "$(dirname "$venv")"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q '.[test]'
{
  echo "# Pinned by scripts/lock.sh on $(date -u +%Y-%m-%d) for $("$venv/bin/python" -V) (pip install -c constraints.txt)."
  echo "# pyproject.toml keeps the lower bounds; this file keeps what CI tested. Do not edit by hand: re-run the script."
  "$venv/bin/pip" freeze --exclude-editable | grep -vi '^veu-governor[= @]'
} > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
