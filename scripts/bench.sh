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
stop_bench_pg() {
  local data=target/bench-pg/data
  [ -f "$data/postmaster.pid" ] || return 0
  local bindir; bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true
  else "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true; fi
}
trap stop_bench_pg EXIT
cargo bench --locked --bench pull -- --python "$PWD/.tools/bench-venv/bin/python" "$@"
