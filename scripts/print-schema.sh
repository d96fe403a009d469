#!/usr/bin/env bash
# Regenerates server/src/db/schema.rs from migrations/ (`diesel print-schema` with diesel.toml
# on a freshly migrated test database): the schema test, told to write instead of compare.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
source scripts/lib.sh
trap "stop_private_pg target/test-pg" EXIT
FABRICSYNC_WRITE_SCHEMA=1 cargo test --locked -p fabricsync --test schema
cargo fmt -- server/src/db/schema.rs
