#!/usr/bin/env bash
# Everything CI checks, in order: lint, types, the import-layer contract, then the tests.
# Run from the repository root with the virtual environment made by the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
bash scripts/system-deps.sh
echo "== ruff"; $bin/ruff check src tests benchmarks scripts
echo "== mypy"; $bin/mypy src
echo "== import layers"; $bin/lint-imports
echo "== tests"; $bin/python -m pytest -q "$@"
