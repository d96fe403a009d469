#!/usr/bin/env bash
# The Go SDK's checks: go vet, then the tests and the example program against a real server,
# Kubernetes API server and Git repository started once by tests/sdk-fixture.sh. Needs
# target/debug/fabricsync (cargo build -p fabricsync) and .tools/bin/kubeharness
# (scripts/kube-harness.sh). Does not regenerate: scripts/check-sdk-fresh.sh does.
# Arguments go to `go test`, e.g. client-sdk/go/test.sh -v -run TestAgainstServer.
set -euo pipefail
sdk=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$sdk/../.." && pwd)
cd "$sdk"

go vet ./...
# One fixture for everything; -count=1: the results depend on the fixture, never cache them.
"$root/tests/sdk-fixture.sh" bash -c 'go test -count=1 "$@" ./... && go run ./examples/sync' go-test "$@"
# Dial over TLS and mTLS: a second fixture whose server serves TLS and verifies client certificates.
FABRICSYNC_FIXTURE_TLS=1 "$root/tests/sdk-fixture.sh" go test -count=1 -run '^TestTLS' "$@" ./fabricsync
