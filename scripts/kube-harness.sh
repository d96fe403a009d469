#!/usr/bin/env bash
# Builds tests/kube-harness (kube-apiserver + embedded etcd + kubectl from the official
# Kubernetes Go modules) into .tools/bin/kubeharness; rebuilt only when its sources change.
set -euo pipefail
cd "$(dirname "$0")/.."
src=tests/kube-harness
out=.tools/bin/kubeharness
stamp=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go "$0" | sha256sum | cut -c1-16)
if [ -x "$out" ] && [ "$(cat "$out.stamp" 2>/dev/null)" = "$stamp" ]; then exit 0; fi
command -v go >/dev/null || { echo "kube-harness: the Go toolchain is needed to build kube-apiserver" >&2; exit 1; }
version=$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$src/go.mod")
minor=$(echo "$version" | cut -d. -f2)
echo "== building kube-apiserver $version (tests/kube-harness; first time takes minutes)"
pkg=k8s.io/component-base/version
flags="-X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
flags="$flags -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
mkdir -p .tools/bin
(cd "$src" && go build -trimpath -ldflags "-s -w $flags" -o "../../$out" .)
echo "$stamp" > "$out.stamp"
