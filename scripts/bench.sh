#!/usr/bin/env bash
# Benchmarks (release build): the pull of a generated 10,000-object fabric, and the Python
# plugin's way of doing the same (PyYAML + psycopg, installed into .tools/bench-venv).
# Usage: scripts/bench.sh [--resources N] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x .tools/bench-venv/bin/python ]; then
  python3 -m venv .tools/bench-venv
  .tools/bench-venv/bin/pip install -q "PyYAML==6.0.3" "psycopg[binary]==3.2.12"
fi
source scripts/lib.sh
trap "stop_private_pg target/bench-pg" EXIT
cargo bench --locked --bench pull -- --python "$PWD/.tools/bench-venv/bin/python" "$@"
