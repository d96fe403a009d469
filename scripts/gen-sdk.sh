#!/usr/bin/env bash
# Regenerates the client SDKs in client-sdk/ from proto/ with buf and local plugins only
# (no remote plugins, no network except to install a missing pinned plugin once):
#
#   scripts/gen-sdk.sh            # both SDKs
#   scripts/gen-sdk.sh go|python  # one of them
#
# The generated code is committed; scripts/check-sdk-fresh.sh fails when it is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

targets=("$@")
[ $# -gt 0 ] || targets=(go python)
for t in "${targets[@]}"; do
  case $t in go | python) ;; *) echo "usage: $0 [go|python]..." >&2; exit 2 ;; esac
done
wants() { [[ " ${targets[*]} " == *" $1 "* ]]; }

buf=$root/.tools/venv/bin/buf
[ -x "$buf" ] || scripts/setup.sh --test
[ -x "$buf" ] || { echo "gen-sdk: $buf missing after scripts/setup.sh --test" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Go: protoc-gen-go and protoc-gen-go-grpc from the Go module proxy, pinned, in .tools/bin
# (client-sdk/go/buf.gen.yaml refers to them there). Bump a version here and rerun to update.
# ---------------------------------------------------------------------------------------------
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

# install_go_plugin <binary> <package> <version>: installs unless that version is in place.
install_go_plugin() {
  local bin=$root/.tools/bin/$1 pkg=$2 version=$3
  # protoc-gen-go prints "protoc-gen-go v1.36.12", protoc-gen-go-grpc "protoc-gen-go-grpc 1.6.2".
  local have
  have=$("$bin" --version 2>/dev/null | awk '{print $2}') || true
  [ "${have#v}" != "${version#v}" ] || return 0
  command -v go >/dev/null || { echo "gen-sdk: go not found; it is needed to install $1" >&2; exit 1; }
  echo "gen-sdk: installing $1 $version into .tools/bin" >&2
  GOBIN=$root/.tools/bin go install "$pkg@$version"
}

if wants go; then
  install_go_plugin protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
  install_go_plugin protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
  "$buf" generate --template client-sdk/go/buf.gen.yaml
  echo "gen-sdk: client-sdk/go/fabricsyncv1 generated" >&2
fi

# ---------------------------------------------------------------------------------------------
# Python
# ---------------------------------------------------------------------------------------------
# grpcio-tools and mypy-protobuf from PyPI, pinned (client-sdk/python/tools/requirements-gen.txt),
# in .tools/sdk-venv (client-sdk/python/buf.gen.yaml runs them from there, with
# client-sdk/python/tools/protoc-gen-grpcio as the plugin around grpcio-tools' protoc).
if wants python; then
  client-sdk/python/gen-tools.sh
  "$buf" generate --template client-sdk/python/buf.gen.yaml
  echo "gen-sdk: client-sdk/python/gen generated" >&2
fi
