#!/usr/bin/env bash
# Tests the Helm chart in helm/fabricsync:
#   1. helm (pinned, from the Go module proxy) into .tools/bin, once;
#   2. helm lint, helm template of two variants (generated key, 2 replicas; existing key
#      Secret, 3 replicas, CRDs ConfigMap, PDB), and negative cases: no database Secret, values
#      the schema rejects;
#   3. on a real kube-apiserver (tests/sdk-fixture.sh): a server-side dry run of each variant,
#      a real install/upgrade/uninstall (the generated key survives both, the Secret is kept),
#      and one more fabricsync process started with the installed ConfigMap and key Secret
#      against the fixture's PostgreSQL, checked with the gRPC health service.
# Needs go, and for step 3 target/debug/fabricsync, .tools/bin/kubeharness and grpcurl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

HELM_VERSION=v4.3.1 # the newest helm.sh/helm/v4 on proxy.golang.org when written
helm=$root/.tools/bin/helm
chart=$root/helm/fabricsync
ns=fabricsync

installed=$( [ -x "$helm" ] && go version -m "$helm" 2>/dev/null | awk '$1 == "mod" {print $3}' || true)
if [ "$installed" != "$HELM_VERSION" ]; then
  echo "== installing helm $HELM_VERSION (go install; a few minutes the first time)"
  GOBIN=$root/.tools/bin go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi

work=$(mktemp -d /tmp/fabricsync-helm.XXXXXX)
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_fail <description> <pattern> <command...>: the command must fail and print the pattern.
expect_fail() {
  local what=$1 pattern=$2
  shift 2
  if "$@" >"$work/out" 2>&1; then fail "$what: succeeded"; fi
  grep -q -- "$pattern" "$work/out" || { cat "$work/out" >&2; fail "$what: no \"$pattern\" in the error"; }
  echo "ok: $what"
}

echo "== helm lint"
"$helm" lint --strict "$chart" -f "$chart/ci/default-values.yaml"
"$helm" lint --strict "$chart" -f "$chart/ci/existing-key-values.yaml"

echo "== helm template"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" >"$work/default.yaml"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/existing-key-values.yaml" >"$work/existing-key.yaml"
grep -q '^  replicas: 2$' "$work/default.yaml" || fail "default: replicas is not 2"
grep -q '^kind: Secret$' "$work/default.yaml" || fail "default: no generated key Secret"
grep -q 'helm.sh/resource-policy: keep' "$work/default.yaml" || fail "default: key Secret not kept"
grep -q '^  replicas: 3$' "$work/existing-key.yaml" || fail "existing-key: replicas is not 3"
! grep -q '^kind: Secret$' "$work/existing-key.yaml" || fail "existing-key: a Secret was generated"
grep -q 'secretName: fabricsync-keys$' "$work/existing-key.yaml" || fail "existing-key: key Secret not mounted"
grep -q '^kind: PodDisruptionBudget$' "$work/existing-key.yaml" || fail "existing-key: no PodDisruptionBudget"
for f in "$work/default.yaml" "$work/existing-key.yaml"; do
  grep -q 'FABRICSYNC_LISTEN: "0.0.0.0:50051"' "$f" || fail "$f: not listening on 0.0.0.0"
  grep -q 'readOnlyRootFilesystem: true' "$f" || fail "$f: root filesystem writable"
done
# The generated key is a valid key file line: "<id> <base64 of 32 bytes>".
line=$(sed -n 's/^  keys: //p' "$work/default.yaml" | base64 -d)
[ "$(echo "$line" | awk '{print $2}' | base64 -d | wc -c)" = 32 ] || fail "generated key is not 32 bytes: $line"
echo "ok: both variants render"

echo "== negative cases"
expect_fail "no database Secret" "database.existingSecret is required" \
  "$helm" template fs "$chart" -n "$ns"
expect_fail "replicaCount: \"three\"" "replicaCount" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set-json 'replicaCount="three"'
expect_fail "unknown key (typo replica)" "additional properties 'replica'" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set replica=3
expect_fail "logFormat: xml" "logFormat" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set config.logFormat=xml
expect_fail "extraEnv redefining FABRICSYNC_LISTEN" "set by the chart" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set config.extraEnv.FABRICSYNC_LISTEN=127.0.0.1:1
# helm lint renders `required` leniently (a warning, exit 0); the message must still show.
"$helm" lint "$chart" >"$work/out" 2>&1 || true
grep -q "database.existingSecret is required" "$work/out" || fail "helm lint without a database Secret does not warn"
echo "ok: helm lint without a database Secret warns"

echo "== on a real kube-apiserver (tests/sdk-fixture.sh)"
cat >"$work/cluster.sh" <<'EOF'
set -euo pipefail
kubectl=$FABRICSYNC_KUBECTL
grpcurl=$(command -v grpcurl || echo "$ROOT/.tools/bin/grpcurl")
fail() { echo "FAIL: $*" >&2; exit 1; }

$kubectl create namespace "$NS" >/dev/null
for variant in default existing-key; do
  $kubectl apply --server-side --dry-run=server -f "$WORK/$variant.yaml" >"$WORK/$variant.applied" \
    || fail "$variant: rejected by the API server"
  echo "ok: server-side dry run accepts the $variant variant ($(wc -l <"$WORK/$variant.applied") objects)"
done

# A real release: the generated key must survive an upgrade (lookup) and an uninstall (keep).
cat >"$WORK/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: fixture, cluster: {server: "$FABRICSYNC_KUBE_URL", certificate-authority: "$FABRICSYNC_KUBE_CA_FILE"}}]
users: [{name: admin, user: {token: "$FABRICSYNC_KUBE_TOKEN"}}]
contexts: [{name: fixture, context: {cluster: fixture, user: admin, namespace: "$NS"}}]
current-context: fixture
KUBECONFIG
chmod 600 "$WORK/kubeconfig"
helm() { "$HELM" --kubeconfig "$WORK/kubeconfig" -n "$NS" "$@"; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
helm install fs "$CHART" -f "$CHART/ci/default-values.yaml" --set containerPort="$port" >"$WORK/notes"
grep -q "grpcurl -plaintext localhost:50051 list" "$WORK/notes" || fail "NOTES has no grpcurl command"
key=$($kubectl -n "$NS" get secret fs-fabricsync-encryption -o jsonpath='{.data.keys}')
helm upgrade fs "$CHART" -f "$CHART/ci/default-values.yaml" --set containerPort="$port" --set replicaCount=3 >/dev/null
[ "$($kubectl -n "$NS" get deployment fs-fabricsync -o jsonpath='{.spec.replicas}')" = 3 ] || fail "upgrade: replicas not 3"
[ "$($kubectl -n "$NS" get secret fs-fabricsync-encryption -o jsonpath='{.data.keys}')" = "$key" ] \
  || fail "upgrade replaced the generated encryption key"
echo "ok: install, upgrade keeps the generated key"

# One more replica as the pod would run it: the ConfigMap's environment, the Secret's key file,
# DATABASE_URL of the fixture's PostgreSQL (its server's embedded one, shared like a real one).
pg=$(dirname "$FABRICSYNC_SERVER_LOG")/server/postgres
[ -f "$pg/password" ] && [ -f "$pg/port" ] || fail "the fixture's PostgreSQL is not at $pg"
env_args=()
while IFS= read -r kv; do env_args+=("$kv"); done < <($kubectl -n "$NS" get configmap fs-fabricsync \
  -o go-template='{{range $k, $v := .data}}{{$k}}={{$v}}{{"\n"}}{{end}}')
mkdir -p "$WORK/pod/data" "$WORK/pod/keys" "$WORK/pod/tmp"
echo "$key" | base64 -d >"$WORK/pod/keys/encryption.keys"
chmod 400 "$WORK/pod/keys/encryption.keys"
env_args=("${env_args[@]/#FABRICSYNC_DATA_DIR=*/FABRICSYNC_DATA_DIR=$WORK/pod/data}")
env_args=("${env_args[@]/#FABRICSYNC_KEY_FILE=*/FABRICSYNC_KEY_FILE=$WORK/pod/keys/encryption.keys}")
env -i PATH="$PATH" TMPDIR="$WORK/pod/tmp" "${env_args[@]}" \
  DATABASE_URL="postgres://fabricsync:$(cat "$pg/password")@127.0.0.1:$(cat "$pg/port")/fabricsync" \
  "$BIN" serve >"$WORK/pod/log" 2>&1 &
pid=$!
status=""
for _ in $(seq 1 300); do
  status=$("$grpcurl" -plaintext "127.0.0.1:$port" grpc.health.v1.Health/Check 2>/dev/null | grep -o SERVING || true)
  [ "$status" = SERVING ] && break
  kill -0 $pid 2>/dev/null || { cat "$WORK/pod/log" >&2; fail "the replica exited"; }
  sleep 0.2
done
[ "$status" = SERVING ] || { cat "$WORK/pod/log" >&2; fail "the replica is not SERVING"; }
if command -v ss >/dev/null; then
  ss -ltn | grep -q "0.0.0.0:$port " || fail "the replica does not listen on 0.0.0.0:$port"
fi
head -c 1 "$WORK/pod/log" | grep -q '{' || fail "log is not JSON"
kill -TERM $pid
wait $pid || fail "the replica did not exit cleanly on SIGTERM"
written=$(cd "$WORK/pod/data" && find . -mindepth 1 | sort | tr '\n' ' ')
echo "ok: a replica with the chart's settings serves on 0.0.0.0:$port (data dir holds: ${written:-nothing})"

helm uninstall fs >/dev/null
$kubectl -n "$NS" get deployment fs-fabricsync >/dev/null 2>&1 && fail "uninstall left the Deployment"
[ "$($kubectl -n "$NS" get secret fs-fabricsync-encryption -o jsonpath='{.data.keys}')" = "$key" ] \
  || fail "uninstall removed the generated encryption key"
echo "ok: uninstall keeps the generated key Secret"
EOF
ROOT=$root WORK=$work NS=$ns CHART=$chart HELM=$helm BIN=${FABRICSYNC_BIN:-$root/target/debug/fabricsync} \
  tests/sdk-fixture.sh bash "$work/cluster.sh"
echo "== helm chart: all passed"
