#!/usr/bin/env bash
# Runs every test: proto lint and breaking-change check against the last landed contract, unit
# tests, and integration tests against a real PostgreSQL and real git servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== buf lint"
.tools/venv/bin/buf lint
# The contract as last landed on main, as a buf image (a clean checkout may have no history).
if [ -f proto/breaking-baseline.binpb ]; then
  echo "== buf breaking against proto/breaking-baseline.binpb"
  .tools/venv/bin/buf breaking --against proto/breaking-baseline.binpb
fi

# The integration tests start a private PostgreSQL in target/test-pg (kept between runs);
# stop it when the tests end.
stop_test_pg() {
  local data=target/test-pg/data
  [ -f "$data/postmaster.pid" ] || return 0
  local bindir; bindir=$(dirname "$(ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true
  else "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null || true; fi
}
trap stop_test_pg EXIT

export PATH="$PWD/.tools/bin:$PATH"
echo "== cargo test"
cargo test --workspace --locked 2>&1
