#!/usr/bin/env bash
# Runs every test: proto lint and breaking-change check against the last landed contract, unit
# tests, integration tests against a real PostgreSQL, real git servers and a real kube-apiserver
# on loopback, then the generated SDKs (fresh, and tested against a real server), the Helm chart
# and the NetBox plugin (a real NetBox with its PostgreSQL and Redis, and headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
df -h . | tail -1 | awk '{print "== disk: " $4 " free of " $2}'

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== the pure core has no I/O dependencies; the server's layers have no import cycles"
if cargo tree -p fabricsync-core --edges normal --prefix none --locked | grep -E '^(tokio|diesel|kube|tonic|gix|reqwest|hyper) '; then
  echo "fabricsync-core depends on an I/O crate (above)" >&2
  exit 1
fi
python3 scripts/check-layers.py

echo "== buf lint"
.tools/venv/bin/buf lint
# The contract as last landed on main, as a buf image (a clean checkout may have no history).
if [ -f proto/breaking-baseline.binpb ]; then
  echo "== buf breaking against proto/breaking-baseline.binpb"
  .tools/venv/bin/buf breaking --against proto/breaking-baseline.binpb
fi

# The integration tests start a private PostgreSQL in target/test-pg (kept between runs);
# stop it when the tests end.
source scripts/lib.sh
trap "stop_private_pg target/test-pg" EXIT

scripts/kube-harness.sh
export PATH="$PWD/.tools/bin:$PATH"
echo "== cargo test"
cargo test --workspace --locked 2>&1
du -sh target | awk '{print "== target/ holds " $1}'
df -h . | tail -1 | awk '{print "== disk: " $4 " free of " $2}'

echo "== SDK code is what proto/ generates"
scripts/check-sdk-fresh.sh
echo "== Go SDK"
client-sdk/go/test.sh
echo "== Python SDK"
client-sdk/python/test.sh
echo "== Helm chart"
helm/test.sh
echo "== NetBox plugin"
client-sdk/netbox-plugin/test.sh
