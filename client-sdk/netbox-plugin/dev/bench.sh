#!/usr/bin/env bash
# The plugin's benchmark (dev/bench.py) against the real fabricsync (release build) and a
# private NetBox: prints a Markdown table of server-side render times.
#
#   client-sdk/netbox-plugin/dev/bench.sh      (BENCH_ROUNDS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/../../.."
cargo build --release -p fabricsync
export FABRICSYNC_BIN=$PWD/target/release/fabricsync
tests/sdk-fixture.sh client-sdk/netbox-plugin/dev/netbox.sh \
  netbox shell --no-startup --command "import runpy; runpy.run_path('client-sdk/netbox-plugin/dev/bench.py')"
