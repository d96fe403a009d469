#!/usr/bin/env bash
# Tests the Helm chart in helm/fabricsync:
#   1. helm (pinned, from the Go module proxy) into .tools/bin, once;
#   2. helm lint, helm template of three variants (generated key, TLS certificate and admin
#      token, 2 replicas; existing key, TLS and token Secrets with mTLS, certificate identities,
#      a NetworkPolicy with selectors, 3 replicas, CRDs ConfigMap, PDB; plaintext behind a mesh),
#      the metrics port and a ServiceMonitor (rendered only: the test API server has no
#      Prometheus Operator CRDs), and negative cases: no database Secret, values the schema or
#      the chart rejects;
#   3. on a real kube-apiserver (tests/sdk-fixture.sh): a server-side dry run of each variant,
#      a real install/upgrade/uninstall (the generated key, certificate and token survive the
#      upgrade; key and token Secrets are kept), and one more fabricsync process started with
#      the installed ConfigMap, key, certificate and token Secrets against the fixture's
#      PostgreSQL, checked with the gRPC health service over TLS and on the health port, and
#      scraped on its metrics port.
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
"$helm" lint --strict "$chart" -f "$chart/ci/insecure-plaintext-values.yaml"

echo "== helm template"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" >"$work/default.yaml"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/existing-key-values.yaml" >"$work/existing-key.yaml"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/insecure-plaintext-values.yaml" >"$work/insecure-plaintext.yaml"
grep -q '^  replicas: 2$' "$work/default.yaml" || fail "default: replicas is not 2"
grep -q '^kind: Secret$' "$work/default.yaml" || fail "default: no generated key Secret"
grep -q 'helm.sh/resource-policy: keep' "$work/default.yaml" || fail "default: key Secret not kept"
grep -q '^  replicas: 3$' "$work/existing-key.yaml" || fail "existing-key: replicas is not 3"
! grep -q '^kind: Secret$' "$work/existing-key.yaml" || fail "existing-key: a Secret was generated"
grep -q 'secretName: fabricsync-keys$' "$work/existing-key.yaml" || fail "existing-key: key Secret not mounted"
grep -q '^kind: PodDisruptionBudget$' "$work/existing-key.yaml" || fail "existing-key: no PodDisruptionBudget"
grep -q 'FABRICSYNC_WEBHOOK_LISTEN: "0.0.0.0:9443"' "$work/existing-key.yaml" || fail "existing-key: webhooks not listening"
grep -q 'targetPort: webhooks$' "$work/existing-key.yaml" || fail "existing-key: no webhook port on the Service"
! grep -q 'FABRICSYNC_WEBHOOK_LISTEN' "$work/default.yaml" || fail "default: webhooks on without webhooks.enabled"
for f in "$work/default.yaml" "$work/existing-key.yaml" "$work/insecure-plaintext.yaml"; do
  grep -q 'FABRICSYNC_LISTEN: "0.0.0.0:50051"' "$f" || fail "$f: not listening on 0.0.0.0"
  grep -q 'readOnlyRootFilesystem: true' "$f" || fail "$f: root filesystem writable"
  grep -q 'FABRICSYNC_HEALTH_LISTEN: "0.0.0.0:50052"' "$f" || fail "$f: no health port"
  [ "$(grep -A1 -E '^          (startup|liveness|readiness)Probe:' "$f" | grep -c '^            grpc:')" = 3 ] || fail "$f: not three gRPC probes"
  [ "$(grep -A2 -E '^          (startup|liveness|readiness)Probe:' "$f" | grep -c 'port: 50052$')" = 3 ] || fail "$f: probes not on the health port"
  grep -q 'name: FABRICSYNC_BOOTSTRAP_TOKEN$' "$f" || fail "$f: no bootstrap token"
done
# TLS by default, from a generated self-signed certificate, no plaintext.
grep -q 'FABRICSYNC_TLS_CERT: /etc/fabricsync/tls/tls.crt' "$work/default.yaml" || fail "default: no TLS"
grep -q '^type: kubernetes.io/tls$' "$work/default.yaml" || fail "default: no generated TLS Secret"
! grep -q 'FABRICSYNC_INSECURE_PLAINTEXT\|FABRICSYNC_CLIENT_CA' "$work/default.yaml" || fail "default: plaintext or mTLS"
grep -q 'secretName: fs-fabricsync-tls$' "$work/default.yaml" || fail "default: TLS Secret not mounted"
grep -B3 -A3 'secretName: fs-fabricsync-tls$' "$work/default.yaml" | grep -q subPath && fail "default: TLS Secret mounted by subPath (no renewals)"
crt=$(awk '/^type: kubernetes.io\/tls$/{t=1} t && /^  tls.crt: /{print $2; exit}' "$work/default.yaml")
tlskey=$(awk '/^type: kubernetes.io\/tls$/{t=1} t && /^  tls.key: /{print $2; exit}' "$work/default.yaml")
echo "$crt" | base64 -d >"$work/gen.crt"
echo "$tlskey" | base64 -d >"$work/gen.key"
sans=$(openssl x509 -in "$work/gen.crt" -noout -ext subjectAltName)
for name in DNS:fs-fabricsync.fabricsync.svc, DNS:fs-fabricsync.fabricsync.svc.cluster.local DNS:localhost "IP Address:127.0.0.1"; do
  grep -q "$name" <<<"$sans" || fail "generated certificate lacks $name: $sans"
done
[ "$(openssl x509 -in "$work/gen.crt" -noout -pubkey | openssl sha256)" = "$(openssl pkey -in "$work/gen.key" -pubout | openssl sha256)" ] \
  || fail "generated TLS key does not match its certificate"
token=$(awk '/name: fs-fabricsync-admin-token$/{t=1} t && /^  token: /{print $2; exit}' "$work/default.yaml" | base64 -d)
[[ $token =~ ^fsk_[A-Za-z0-9]{12}_[A-Za-z0-9]{48}$ ]] || fail "generated bootstrap token has the wrong shape: ${token:0:4}..."
grep -q '^kind: NetworkPolicy$' "$work/default.yaml" || fail "default: no NetworkPolicy"
! grep -q -- '- Egress' "$work/default.yaml" || fail "default: egress restricted"
# Existing Secrets, mTLS, identities, NetworkPolicy selectors.
grep -q 'secretName: fabricsync-tls$' "$work/existing-key.yaml" || fail "existing-key: TLS Secret not mounted"
grep -q 'FABRICSYNC_CLIENT_CA: /etc/fabricsync/client-ca/ca.crt' "$work/existing-key.yaml" || fail "existing-key: no client CA"
grep -q 'FABRICSYNC_CLIENT_CERT_IDENTITIES: /etc/fabricsync/cert-identities/identities.yaml' "$work/existing-key.yaml" || fail "existing-key: no identities"
grep -A8 'identities.yaml: |' "$work/existing-key.yaml" | grep -q 'subject: CN=netbox,O=example' || fail "existing-key: identities not rendered"
grep -A3 'name: FABRICSYNC_BOOTSTRAP_TOKEN$' "$work/existing-key.yaml" | grep -q 'name: fabricsync-admin$' || fail "existing-key: token Secret not used"
grep -q 'kubernetes.io/metadata.name: netbox' "$work/existing-key.yaml" || fail "existing-key: NetworkPolicy has no selector"
grep -q -- '- Egress' "$work/existing-key.yaml" || fail "existing-key: egress rules not applied"
# Plaintext only when asked, and then without any TLS part.
grep -q 'FABRICSYNC_INSECURE_PLAINTEXT: "true"' "$work/insecure-plaintext.yaml" || fail "insecure-plaintext: flag not set"
! grep -q 'FABRICSYNC_TLS_CERT\|kubernetes.io/tls\|^kind: NetworkPolicy$' "$work/insecure-plaintext.yaml" || fail "insecure-plaintext: TLS parts or NetworkPolicy rendered"
# The generated key is a valid key file line: "<id> <base64 of 32 bytes>".
line=$(sed -n 's/^  keys: //p' "$work/default.yaml" | base64 -d)
[ "$(echo "$line" | awk '{print $2}' | base64 -d | wc -c)" = 32 ] || fail "generated key is not 32 bytes: $line"
echo "ok: the three variants render"

# Metrics: on by default on their own port (pod, Service, NetworkPolicy), no ServiceMonitor
# unless asked; a ServiceMonitor renders with its labels and interval (render-only: the
# Prometheus Operator's CRD is not installed on the test API server).
for f in "$work/default.yaml" "$work/existing-key.yaml"; do
  grep -q 'FABRICSYNC_METRICS_LISTEN: "0.0.0.0:9464"' "$f" || fail "$f: metrics not listening on 0.0.0.0:9464"
  grep -B1 -A2 -- '- name: metrics$' "$f" | grep -q 'containerPort: 9464$' || fail "$f: no metrics container port"
  grep -A3 -- '- name: metrics$' "$f" | grep -q 'targetPort: metrics$' || fail "$f: no metrics port on the Service"
  ! grep -q '^kind: ServiceMonitor$' "$f" || fail "$f: a ServiceMonitor without metrics.serviceMonitor.enabled"
done
grep -A2 '# Prometheus, from networkPolicy.metricsFrom' "$work/default.yaml" | grep -q 'port: metrics$' \
  || fail "default: the NetworkPolicy does not admit the metrics port"
# Traces: off unless an endpoint is given, then the endpoint and the ratio.
! grep -q 'FABRICSYNC_OTLP_ENDPOINT' "$work/default.yaml" || fail "default: traces on without an endpoint"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" \
  --set traces.otlpEndpoint=http://otel-collector.observability:4317 --set-json traces.sampleRatio=0.1 >"$work/traces.yaml"
grep -q 'FABRICSYNC_OTLP_ENDPOINT: "http://otel-collector.observability:4317"' "$work/traces.yaml" \
  || fail "traces: no FABRICSYNC_OTLP_ENDPOINT"
grep -q 'FABRICSYNC_TRACE_SAMPLE_RATIO: "0.1"' "$work/traces.yaml" || fail "traces: no FABRICSYNC_TRACE_SAMPLE_RATIO"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set metrics.serviceMonitor.enabled=true \
  --set metrics.serviceMonitor.labels.release=kube-prometheus --set metrics.serviceMonitor.interval=15s \
  --set metrics.port=9100 --set-json 'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]' \
  >"$work/servicemonitor.yaml"
"$helm" lint --strict "$chart" -f "$chart/ci/default-values.yaml" --set metrics.serviceMonitor.enabled=true >/dev/null \
  || fail "helm lint with a ServiceMonitor"
awk '/^kind: ServiceMonitor$/{p=1} p && /^---/{exit} p' "$work/servicemonitor.yaml" >"$work/sm.yaml"
[ -s "$work/sm.yaml" ] || fail "servicemonitor: no ServiceMonitor rendered"
grep -B1 '^kind: ServiceMonitor$' "$work/servicemonitor.yaml" | grep -q '^apiVersion: monitoring.coreos.com/v1$' \
  || fail "servicemonitor: not monitoring.coreos.com/v1"
for want in '^  name: fs-fabricsync$' '^  namespace: fabricsync$' '^    release: kube-prometheus$' \
  '^      app.kubernetes.io/name: fabricsync$' '^      app.kubernetes.io/instance: fs$' '^      - fabricsync$' \
  '^    - port: metrics$' '^      path: /metrics$' '^      scheme: http$' '^      interval: 15s$' '^      scrapeTimeout: 10s$'; do
  grep -q -- "$want" "$work/sm.yaml" || { cat "$work/sm.yaml" >&2; fail "servicemonitor: no line $want"; }
done
grep -q 'FABRICSYNC_METRICS_LISTEN: "0.0.0.0:9100"' "$work/servicemonitor.yaml" || fail "servicemonitor: metrics.port not used"
grep -A8 '# Prometheus, from networkPolicy.metricsFrom' "$work/servicemonitor.yaml" | grep -q 'kubernetes.io/metadata.name: monitoring' \
  || fail "servicemonitor: networkPolicy.metricsFrom not applied"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set metrics.enabled=false >"$work/no-metrics.yaml"
grep -q 'FABRICSYNC_METRICS_LISTEN: "off"' "$work/no-metrics.yaml" || fail "no-metrics: metrics not turned off"
! grep -q -- '- name: metrics$\|port: metrics$' "$work/no-metrics.yaml" || fail "no-metrics: a metrics port rendered"
"$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set service.type=LoadBalancer \
  --set-json 'networkPolicy.ingressFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"netbox"}}}]' >"$work/lb.yaml"
grep -A12 '^  name: fs-fabricsync-metrics$' "$work/lb.yaml" | grep -q '^  type: ClusterIP$' \
  || fail "lb: the metrics Service is not ClusterIP under service.type=LoadBalancer"
grep -A8 '# Prometheus, from networkPolicy.metricsFrom' "$work/lb.yaml" | grep -q 'kubernetes.io/metadata.name: netbox' \
  || fail "lb: the metrics port is not limited to ingressFrom's sources"
echo "ok: metrics port, NetworkPolicy rule and ServiceMonitor render"

echo "== negative cases"
expect_fail "no database Secret" "database.existingSecret is required" \
  "$helm" template fs "$chart" -n "$ns"
expect_fail "replicaCount: \"three\"" "replicaCount" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set-json 'replicaCount="three"'
expect_fail "unknown key (typo replica)" "additional properties 'replica'" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set replica=3
expect_fail "logFormat: xml" "logFormat" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set config.logFormat=xml
expect_fail "ServiceMonitor without metrics" "metrics.serviceMonitor.enabled needs metrics.enabled" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set metrics.enabled=false --set metrics.serviceMonitor.enabled=true
expect_fail "metrics.serviceMonitor.interval: soon" "interval" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set metrics.serviceMonitor.interval=soon
expect_fail "extraEnv redefining FABRICSYNC_METRICS_LISTEN" "set by the chart" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set config.extraEnv.FABRICSYNC_METRICS_LISTEN=off
expect_fail "extraEnv redefining FABRICSYNC_LISTEN" "set by the chart" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set config.extraEnv.FABRICSYNC_LISTEN=127.0.0.1:1
expect_fail "insecurePlaintext with a TLS Secret" "insecurePlaintext: true turns TLS off" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/insecure-plaintext-values.yaml" --set tls.existingSecret=x
expect_fail "identities without a client CA" "tls.clientCertIdentities needs tls.clientCA.enabled" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set-json 'tls.clientCertIdentities=[{"subject":"CN=a","role":"viewer"}]'
expect_fail "client CA with a generated certificate" "tls.clientCA.existingSecret is required" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set tls.clientCA.enabled=true
expect_fail "identity role root" "role" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/existing-key-values.yaml" --set-json 'tls.clientCertIdentities=[{"subject":"CN=a","role":"root"}]'
expect_fail "identity with subject and san" "clientCertIdentities" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/existing-key-values.yaml" --set-json 'tls.clientCertIdentities=[{"subject":"CN=a","san":"b","role":"viewer"}]'
expect_fail "healthPort = containerPort" "healthPort must differ" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set healthPort=50051
expect_fail "extraEnv redefining FABRICSYNC_INSECURE_PLAINTEXT" "set by the chart" \
  "$helm" template fs "$chart" -n "$ns" -f "$chart/ci/default-values.yaml" --set-string config.extraEnv.FABRICSYNC_INSECURE_PLAINTEXT=true
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
for variant in default existing-key insecure-plaintext; do
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
hport=$(free_port)
mport=$(free_port)
ports=(--set containerPort="$port" --set healthPort="$hport" --set metrics.port="$mport")
helm install fs "$CHART" -f "$CHART/ci/default-values.yaml" "${ports[@]}" >"$WORK/notes"
grep -q "grpcurl -cacert fabricsync-ca.crt -servername fs-fabricsync.$NS.svc -H \"authorization: Bearer \$TOKEN\" localhost:50051 list" "$WORK/notes" \
  || { cat "$WORK/notes" >&2; fail "NOTES has no grpcurl command with TLS and the token"; }
secret() { $kubectl -n "$NS" get secret "$1" -o jsonpath="{.data.$2}"; }
key=$(secret fs-fabricsync-encryption keys)
crt=$(secret fs-fabricsync-tls 'tls\.crt')
token=$(secret fs-fabricsync-admin-token token)
helm upgrade fs "$CHART" -f "$CHART/ci/default-values.yaml" "${ports[@]}" --set replicaCount=3 >/dev/null
[ "$($kubectl -n "$NS" get deployment fs-fabricsync -o jsonpath='{.spec.replicas}')" = 3 ] || fail "upgrade: replicas not 3"
[ "$(secret fs-fabricsync-encryption keys)" = "$key" ] || fail "upgrade replaced the generated encryption key"
[ "$(secret fs-fabricsync-tls 'tls\.crt')" = "$crt" ] || fail "upgrade replaced the generated TLS certificate"
[ "$(secret fs-fabricsync-admin-token token)" = "$token" ] || fail "upgrade replaced the generated admin token"
echo "ok: install, upgrade keeps the generated key, certificate and admin token"

# One more replica as the pod would run it: the ConfigMap's environment, the Secret's key file,
# a database of its own on the fixture's PostgreSQL (the fixture server's database holds
# secrets sealed with another key, which this replica rightly refuses to start with).
pg=$(dirname "$FABRICSYNC_SERVER_LOG")/server/postgres
[ -f "$pg/password" ] && [ -f "$pg/port" ] || fail "the fixture's PostgreSQL is not at $pg"
pg_url="postgres://fabricsync:$(cat "$pg/password")@127.0.0.1:$(cat "$pg/port")"
psql=$(ls /usr/lib/postgresql/*/bin/psql | head -1)
"$psql" -q "$pg_url/postgres" -c "CREATE DATABASE chart_replica" >/dev/null
env_args=()
while IFS= read -r kv; do env_args+=("$kv"); done < <($kubectl -n "$NS" get configmap fs-fabricsync \
  -o go-template='{{range $k, $v := .data}}{{$k}}={{$v}}{{"\n"}}{{end}}')
mkdir -p "$WORK/pod/data" "$WORK/pod/keys" "$WORK/pod/tmp" "$WORK/pod/tls"
echo "$key" | base64 -d >"$WORK/pod/keys/encryption.keys"
for f in tls.crt tls.key ca.crt; do secret fs-fabricsync-tls "${f/./\\.}" | base64 -d >"$WORK/pod/tls/$f"; done
chmod 400 "$WORK/pod/keys/encryption.keys" "$WORK/pod/tls/tls.key"
env_args=("${env_args[@]/#FABRICSYNC_DATA_DIR=*/FABRICSYNC_DATA_DIR=$WORK/pod/data}")
env_args=("${env_args[@]/#FABRICSYNC_KEY_FILE=*/FABRICSYNC_KEY_FILE=$WORK/pod/keys/encryption.keys}")
env_args=("${env_args[@]/#FABRICSYNC_TLS_CERT=*/FABRICSYNC_TLS_CERT=$WORK/pod/tls/tls.crt}")
env_args=("${env_args[@]/#FABRICSYNC_TLS_KEY=*/FABRICSYNC_TLS_KEY=$WORK/pod/tls/tls.key}")
env -i PATH="$PATH" TMPDIR="$WORK/pod/tmp" "${env_args[@]}" FABRICSYNC_BOOTSTRAP_TOKEN="$(echo "$token" | base64 -d)" \
  DATABASE_URL="$pg_url/chart_replica" \
  "$BIN" serve >"$WORK/pod/log" 2>&1 &
pid=$!
status=""
for _ in $(seq 1 300); do
  status=$("$grpcurl" -cacert "$WORK/pod/tls/ca.crt" -servername "fs-fabricsync.$NS.svc" -H "authorization: Bearer $(echo "$token" | base64 -d)" \
    "127.0.0.1:$port" grpc.health.v1.Health/Check 2>/dev/null | grep -o SERVING || true)
  [ "$status" = SERVING ] && break
  kill -0 $pid 2>/dev/null || { cat "$WORK/pod/log" >&2; fail "the replica exited"; }
  sleep 0.2
done
[ "$status" = SERVING ] || { cat "$WORK/pod/log" >&2; fail "the replica is not SERVING"; }
if command -v ss >/dev/null; then
  ss -ltn | grep -q "0.0.0.0:$port " || fail "the replica does not listen on 0.0.0.0:$port"
fi
# The kubelet's probes: plaintext, on the health port; the gRPC port speaks only TLS.
"$grpcurl" -plaintext "127.0.0.1:$hport" grpc.health.v1.Health/Check | grep -q SERVING || fail "the health port is not SERVING"
! "$grpcurl" -plaintext -max-time 5 "127.0.0.1:$port" grpc.health.v1.Health/Check >/dev/null 2>&1 || fail "the gRPC port answered plaintext"
echo "ok: the replica serves TLS with the chart's certificate on $port, plaintext health on $hport"
# Prometheus' view: the metrics port of the chart, plain HTTP, the text format.
python3 - "$mport" >"$WORK/pod/metrics" <<'SCRAPE' || fail "the replica serves no metrics on $mport"
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10) as r:
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    sys.stdout.write(r.read().decode())
SCRAPE
grep -q '^fabricsync_grpc_server_handled_total{method="grpc.health.v1.Health/Check",type="unary",code="OK"} ' "$WORK/pod/metrics" \
  || { cat "$WORK/pod/metrics" >&2; fail "the replica's metrics do not count its health checks"; }
grep -q '^fabricsync_db_pool_max_connections ' "$WORK/pod/metrics" || fail "the replica's metrics have no pool gauges"
echo "ok: the replica serves Prometheus metrics on $mport"
head -c 1 "$WORK/pod/log" | grep -q '{' || fail "log is not JSON"
kill -TERM $pid
wait $pid || fail "the replica did not exit cleanly on SIGTERM"
written=$(cd "$WORK/pod/data" && find . -mindepth 1 | sort | tr '\n' ' ')
echo "ok: a replica with the chart's settings serves on 0.0.0.0:$port (data dir holds: ${written:-nothing})"

helm uninstall fs >/dev/null
$kubectl -n "$NS" get deployment fs-fabricsync >/dev/null 2>&1 && fail "uninstall left the Deployment"
[ "$(secret fs-fabricsync-encryption keys)" = "$key" ] || fail "uninstall removed the generated encryption key"
[ "$(secret fs-fabricsync-admin-token token)" = "$token" ] || fail "uninstall removed the generated admin token"
echo "ok: uninstall keeps the generated key and admin token Secrets"
EOF
ROOT=$root WORK=$work NS=$ns CHART=$chart HELM=$helm BIN=${FABRICSYNC_BIN:-$root/target/debug/fabricsync} \
  tests/sdk-fixture.sh bash "$work/cluster.sh"
echo "== helm chart: all passed"
