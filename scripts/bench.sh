#!/usr/bin/env bash
# Benchmarks (release build) on a generated 10,000-object fabric: the pull against the Python
# plugin's way (PyYAML + psycopg, installed into .tools/bench-venv), then apply and watch against
# `kubectl apply --server-side` on a real kube-apiserver (tests/kube-harness), and the cost of
# the auth layer per call (with and without it, in one process), writes to Git against the git
# command, the cluster inventory import against `kubectl get -o json` of the same kinds, and a
# pull's memory when another branch holds a 1 GiB file (scripts/bench-fetch-memory.sh).
# Usage: scripts/bench.sh [pull|cluster|auth|write|inventory|fetch-memory] [--resources N] [--repeat N]
#        [--watch-samples N] [--nodes N --pods N --vms N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ ! -x .tools/bench-venv/bin/python ]; then
  python3 -m venv .tools/bench-venv
  .tools/bench-venv/bin/pip install -q "PyYAML==6.0.3" "psycopg[binary]==3.2.12"
fi
source scripts/lib.sh
trap "stop_private_pg target/bench-pg" EXIT
which=all
case "${1:-}" in pull|cluster|auth|write|inventory|fetch-memory) which=$1; shift ;; esac
if [ "$which" = all ] || [ "$which" = auth ]; then
  cargo bench --locked --bench auth
fi
if [ "$which" = all ] || [ "$which" = pull ]; then
  cargo bench --locked --bench pull -- --python "$PWD/.tools/bench-venv/bin/python" "$@"
fi
if [ "$which" = all ] || [ "$which" = write ]; then
  cargo bench --locked --bench write
fi
if [ "$which" = all ] || [ "$which" = cluster ]; then
  scripts/kube-harness.sh
  cargo bench --locked --bench cluster -- "$@"
fi
if [ "$which" = all ] || [ "$which" = inventory ]; then
  scripts/kube-harness.sh
  cargo bench --locked --bench inventory -- "$@"
fi
if [ "$which" = all ] || [ "$which" = fetch-memory ]; then
  cargo build --locked --release -p fabricsync --bin fabricsync
  scripts/bench-fetch-memory.sh target/release/fabricsync
fi
