#!/usr/bin/env bash
# Installs the Python SDK's pinned code generators (tools/requirements-gen.txt: grpcio-tools,
# mypy-protobuf) into .tools/sdk-venv, where client-sdk/python/buf.gen.yaml runs them from.
# With --test, also what client-sdk/python/test.sh needs (tools/requirements-test.txt).
# Quick when nothing changed: a stamp in the venv lists the hashes of the files installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.tools/sdk-venv
stamp=$venv/.installed-requirements
files=(client-sdk/python/tools/requirements-gen.txt)
[ "${1:-}" != "--test" ] || files+=(client-sdk/python/tools/requirements-test.txt)

[ -x $venv/bin/python ] || python3 -m venv $venv
missing=()
for f in "${files[@]}"; do
  grep -qx "$(sha256sum <"$f" | cut -d' ' -f1)" "$stamp" 2>/dev/null || missing+=("$f")
done
[ ${#missing[@]} -gt 0 ] || exit 0
echo "gen-tools: installing ${missing[*]} into $venv" >&2
$venv/bin/pip install -q --disable-pip-version-check "${missing[@]/#/-r}"
for f in "${missing[@]}"; do sha256sum <"$f" | cut -d' ' -f1 >>"$stamp"; done
