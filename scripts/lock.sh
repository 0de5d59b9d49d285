#!/usr/bin/env bash
# Refresh constraints.txt: resolve pyproject.toml's dependencies (every extra the README and CI
# install, plus the benchmark peers of the bench extra) afresh in a throw-away virtual
# environment and pin exactly what was installed.
# Run the whole suite with the new pins (scripts/check.sh) before committing them.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e '.[dev,bench]'
{
    echo "# Exact versions the test suite passed with; refresh: bash scripts/lock.sh"
    "$tmp/venv/bin/pip" freeze --exclude-editable --all | grep -v -E '^(pip|setuptools|wheel)=='
} > constraints.txt
rm -rf "$tmp"
echo "wrote constraints.txt ($(grep -c '==' constraints.txt) pins)"
