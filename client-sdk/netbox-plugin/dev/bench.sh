#!/usr/bin/env bash
# The plugin's benchmark (dev/bench.py) against the real fabricsync and a private NetBox:
# prints a Markdown table of server-side render times. fabricsync is the release build unless
# FABRICSYNC_BIN names another.
#
#   client-sdk/netbox-plugin/dev/bench.sh      (BENCH_ROUNDS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/../../.."
if [ -z "${FABRICSYNC_BIN:-}" ]; then
  cargo build --release -p fabricsync
  export FABRICSYNC_BIN=$PWD/target/release/fabricsync
fi
tests/sdk-fixture.sh client-sdk/netbox-plugin/dev/netbox.sh \
  netbox shell --no-startup --command "import runpy; runpy.run_path('client-sdk/netbox-plugin/dev/bench.py')"
