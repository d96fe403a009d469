#!/usr/bin/env bash
# Real parts for the SDK, grpcurl and chart tests, on loopback: a Kubernetes control plane
# (kubeharness, Hedgehog CRDs installed), a local Git repository holding a sample fabric, and a
# `fabricsync serve` process with its embedded PostgreSQL. Runs the given command with them,
# then stops them all.
#
#   tests/sdk-fixture.sh <command> [args...]
#
# The command sees:
#   FABRICSYNC_ADDR          host:port of the gRPC server (plaintext; TLS with FABRICSYNC_FIXTURE_TLS=1)
#   FABRICSYNC_GIT_URL       file:// URL of the Git repository (branch main)
#   FABRICSYNC_GIT_DIR       its work tree (commit to it to change the fabric)
#   FABRICSYNC_GITOPS_PATH   the fabric's directory inside it (fabric)
#   FABRICSYNC_KUBE_URL      https URL of the kube-apiserver
#   FABRICSYNC_KUBE_CA_FILE  its CA certificate (PEM)
#   FABRICSYNC_KUBE_TOKEN    a cluster-admin bearer token
#   FABRICSYNC_KUBECTL       a kubectl (a script) already pointed at that server as that admin
#   FABRICSYNC_SERVER_LOG    the server's log file
#   FABRICSYNC_TOKEN         the server's admin API token (the one its first start wrote)
#   FABRICSYNC_VIEWER_TOKEN, FABRICSYNC_OPERATOR_TOKEN   tokens of those roles (`fabricsync token create`)
# With FABRICSYNC_FIXTURE_TLS=1 the server serves TLS and verifies client certificates
# (--tls-cert, --tls-key, --client-ca; certificates made with openssl), and it also exports:
#   FABRICSYNC_TLS=1
#   FABRICSYNC_CA_FILE       the CA of the server's and the client's certificates (PEM)
#   FABRICSYNC_CLIENT_CERT   a client certificate (CN=sdk-client,O=fabricsync-tests) that CA issued
#   FABRICSYNC_CLIENT_KEY    its private key
# Needs target/debug/fabricsync (cargo build -p fabricsync) and .tools/bin/kubeharness
# (scripts/kube-harness.sh); FABRICSYNC_BIN overrides the first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || { echo "usage: $0 <command> [args...]" >&2; exit 2; }

bin=${FABRICSYNC_BIN:-$root/target/debug/fabricsync}
harness=$root/.tools/bin/kubeharness
[ -x "$bin" ] || { echo "sdk-fixture: $bin missing: cargo build -p fabricsync" >&2; exit 1; }
[ -x "$harness" ] || { echo "sdk-fixture: $harness missing: scripts/kube-harness.sh" >&2; exit 1; }

dir=$(mktemp -d /tmp/fabricsync-fixture.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
  # SIGTERM lets the server stop its embedded PostgreSQL; the control plane's graceful stop
  # waits out its watches (a minute), and its state is thrown away anyway: SIGKILL.
  [ ${#pids[@]} -lt 2 ] || kill "${pids[1]}" 2>/dev/null || true
  kill -KILL "${pids[0]}" 2>/dev/null || true
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Kubernetes control plane.
admin=admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
controller=controller-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
printf '%s,admin,1,"system:masters"\n%s,controller,2,"system:masters"\n' "$admin" "$controller" >"$dir/tokens.csv"
kport=$(free_port)
"$harness" serve --dir="$dir/kube" --port="$kport" --token-file="$dir/tokens.csv" \
  --controller-token="$controller" >"$dir/apiserver.log" 2>&1 &
pids+=($!)
cat >"$dir/kubectl" <<EOF
#!/bin/sh
exec "$harness" kubectl --server=https://127.0.0.1:$kport --certificate-authority="$dir/kube/ca.crt" --token="$admin" "\$@"
EOF
chmod +x "$dir/kubectl"
for _ in $(seq 1 360); do
  [ -f "$dir/kube/ca.crt" ] && "$dir/kubectl" get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.25
done
"$dir/kubectl" get --raw /readyz >/dev/null || { echo "sdk-fixture: kube-apiserver not ready" >&2; cat "$dir/apiserver.log" >&2; exit 1; }
"$dir/kubectl" apply --server-side -f "$root/core/crds" >/dev/null
"$dir/kubectl" wait --for=condition=Established --timeout=60s crd --all >/dev/null

# A Git repository with the demo-gitops sample fabric in fabric/.
git=$dir/git
mkdir -p "$git/fabric"
cp "$root"/server/tests/data/samples/demo-gitops/*.yaml "$git/fabric/"
git -C "$git" init -q -b main
git -C "$git" add .
git -C "$git" -c user.name=fixture -c user.email=fixture@example.com commit -q -m "demo fabric"

# TLS: a CA, a server certificate for localhost/127.0.0.1, a client certificate.
tls_args=()
if [ "${FABRICSYNC_FIXTURE_TLS:-}" = 1 ]; then
  pki=$dir/pki
  mkdir -m 700 "$pki"
  ossl() { openssl "$@" 2>"$pki/openssl.err" || { cat "$pki/openssl.err" >&2; exit 1; }; }
  ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/ca.key"
  ossl req -x509 -new -key "$pki/ca.key" -out "$pki/ca.crt" -days 2 -subj "/CN=fabricsync fixture CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
  issue() { # <name> <subject> <extensions>
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$1.key"
    ossl req -new -key "$pki/$1.key" -out "$pki/$1.csr" -subj "$2"
    printf 'basicConstraints=CA:FALSE\n%b\n' "$3" >"$pki/$1.ext"
    ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 -extfile "$pki/$1.ext" -out "$pki/$1.crt"
  }
  issue server /CN=localhost 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'
  issue client /O=fabricsync-tests/CN=sdk-client 'subjectAltName=DNS:sdk-client.example.com\nextendedKeyUsage=clientAuth'
  tls_args=(--tls-cert "$pki/server.crt" --tls-key "$pki/server.key" --client-ca "$pki/ca.crt")
  export FABRICSYNC_TLS=1 FABRICSYNC_CA_FILE=$pki/ca.crt FABRICSYNC_CLIENT_CERT=$pki/client.crt FABRICSYNC_CLIENT_KEY=$pki/client.key
fi

# The server, with its embedded PostgreSQL in the fixture's directory.
gport=$(free_port)
"$bin" serve --listen "127.0.0.1:$gport" --metrics-listen off --data-dir "$dir/server" --log-format json "${tls_args[@]}" >"$dir/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  (exec 3<>"/dev/tcp/127.0.0.1/$gport") 2>/dev/null && break
  kill -0 "${pids[1]}" 2>/dev/null || { echo "sdk-fixture: server exited" >&2; cat "$dir/server.log" >&2; exit 1; }
  sleep 0.1
done

export FABRICSYNC_ADDR=127.0.0.1:$gport
export FABRICSYNC_GIT_URL=file://$git FABRICSYNC_GIT_DIR=$git FABRICSYNC_GITOPS_PATH=fabric
export FABRICSYNC_KUBE_URL=https://127.0.0.1:$kport FABRICSYNC_KUBE_CA_FILE=$dir/kube/ca.crt
export FABRICSYNC_KUBE_TOKEN=$admin FABRICSYNC_KUBECTL=$dir/kubectl FABRICSYNC_SERVER_LOG=$dir/server.log
export FABRICSYNC_TOKEN=$(cat "$dir/server/admin-token")
# The command line reaches the server's embedded PostgreSQL through the same data directory.
token() { "$bin" --data-dir "$dir/server" --log warn token create --name "$1" --role "$1"; }
FABRICSYNC_VIEWER_TOKEN=$(token viewer) FABRICSYNC_OPERATOR_TOKEN=$(token operator)
export FABRICSYNC_VIEWER_TOKEN FABRICSYNC_OPERATOR_TOKEN
status=0
"$@" || status=$?
if [ $status -ne 0 ]; then
  # The log goes with the fixture's directory: show what the server warned about.
  echo "sdk-fixture: the command failed; the server's warnings and errors (last 40):" >&2
  grep -E '"level":"(WARN|ERROR)"' "$dir/server.log" | tail -40 >&2 || true
fi
exit $status
