#!/usr/bin/env bash
# Runs every test: proto lint (and breaking-change check once a baseline exists), unit
# tests, and integration tests against a real PostgreSQL and real git servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== buf lint"
.tools/venv/bin/buf lint
if [ -f proto/BREAKING_BASELINE ]; then
  baseline=$(cat proto/BREAKING_BASELINE)
  echo "== buf breaking against $baseline"
  .tools/venv/bin/buf breaking --against ".git#ref=$baseline"
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

echo "== cargo test"
cargo test --workspace --locked 2>&1
