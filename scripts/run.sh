#!/usr/bin/env bash
# Runs the fabricsync server. Without DATABASE_URL it starts a private PostgreSQL in
# .fabricsync/postgres. Extra arguments go to `fabricsync serve` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --quiet -p fabricsync -- serve "$@"
