#!/usr/bin/env bash
# The NetBox plugin's tests: `netbox test netbox_fabricsync.tests` (every page and form, the
# permissions, the error banners) and the browser test (headless Chromium against `netbox
# runserver`), against a real NetBox 4.7 with its own PostgreSQL and Redis (dev/netbox.sh) and
# the real fabricsync, Git repository and kube-apiserver of tests/sdk-fixture.sh. Installs what
# it needs (apt: redis-server, chromium, chromium-driver; pip: .tools/netbox-venv).
# Screenshots: target/netbox-screenshots/. Needs target/debug/fabricsync and .tools/bin/kubeharness.
#
#   client-sdk/netbox-plugin/test.sh [test labels...]   (default: netbox_fabricsync.tests)
set -euo pipefail
cd "$(dirname "$0")/../.."
labels=("$@")
[ ${#labels[@]} -gt 0 ] || labels=(netbox_fabricsync.tests)
export NETBOX_BROWSER=1 NETBOX_SCREENSHOTS=$PWD/target/netbox-screenshots
rm -rf "$NETBOX_SCREENSHOTS"
tests/sdk-fixture.sh client-sdk/netbox-plugin/dev/netbox.sh bash -c '
  set -e
  echo "== netbox test ${*}"
  netbox test --noinput --parallel 1 "$@"
  echo "== browser test (client-sdk/netbox-plugin/browser)"
  python client-sdk/netbox-plugin/browser/test_browser.py -v
' netbox-plugin-tests "${labels[@]}"
