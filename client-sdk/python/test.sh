#!/usr/bin/env bash
# Checks the Python SDK: installs it (editable) with the test tools into .tools/sdk-venv,
# type-checks the package, the generated stubs and the examples with mypy --strict, then runs
# pytest against a real server, Kubernetes API server and Git repository (tests/sdk-fixture.sh).
# Needs target/debug/fabricsync and .tools/bin/kubeharness (see tests/sdk-fixture.sh).
#
#   client-sdk/python/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=$PWD/.tools/sdk-venv

client-sdk/python/gen-tools.sh --test
# Editable, so the tests and mypy see this checkout's src/ and gen/.
$venv/bin/pip install -q --disable-pip-version-check -e client-sdk/python

echo "== mypy --strict (client-sdk/python: src, gen, examples)"
(cd client-sdk/python && "$venv/bin/mypy" --strict src gen examples)

echo "== pytest client-sdk/python/tests (tests/sdk-fixture.sh)"
tests/sdk-fixture.sh "$venv/bin/pytest" -p no:cacheprovider client-sdk/python/tests "$@"
echo "== pytest client-sdk/python/tests/test_tls.py (FABRICSYNC_FIXTURE_TLS=1 tests/sdk-fixture.sh: TLS and mTLS)"
FABRICSYNC_FIXTURE_TLS=1 tests/sdk-fixture.sh "$venv/bin/pytest" -p no:cacheprovider client-sdk/python/tests/test_tls.py "$@"
